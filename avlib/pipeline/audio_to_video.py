"""``AudioToVideoPipeline``: audio (and optionally text) in, video frames out.

Components are passed in, diffusers-style: a frozen audio encoder, a trained mapper that
turns audio features into per-frame pseudo-word tokens, and the frozen text-to-video model
(UNet3D, VAE, CLIP text encoder, tokenizer, scheduler). Without an audio encoder and mapper
it is a plain text-to-video pipeline on the same code path.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from avlib.errors import ConfigError
from avlib.io import read_json, write_json
from avlib.pipeline.conditioning import (
    enable_frame_conditioning, encode_frame_prompts, encode_text,
)
from avlib.pipeline.t2v import T2VComponents, load_t2v, vae_scale

PIPELINE_FILE = "pipeline.json"
# inference.scheduler names -> diffusers classes (built from the model's scheduler config)
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "dpm-multistep": "DPMSolverMultistepScheduler"}


@dataclass
class GeneratedVideo:
    """What :meth:`AudioToVideoPipeline.generate` returns."""

    frames: np.ndarray               # (B, F, H, W, 3) in [0, 1]
    fps: float
    audio: np.ndarray | None         # (B, samples) 16 kHz: the window the frames show, for muxing


class AudioToVideoPipeline:
    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler,
                 audio_encoder: torch.nn.Module | None = None, mapper: torch.nn.Module | None = None,
                 t2v_source: str = "", encoder_config: dict | None = None):
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.tokenizer, self.scheduler = tokenizer, scheduler
        self.audio_encoder, self.mapper = audio_encoder, mapper
        self.t2v_source, self.encoder_config = t2v_source, encoder_config or {}
        self.vae_slicing = False
        self._offload_device: torch.device | None = None
        enable_frame_conditioning(unet, tokenizer.model_max_length)

    # -- assembly -------------------------------------------------------------------------
    @classmethod
    def from_t2v(cls, t2v: T2VComponents, audio_encoder=None, mapper=None, encoder_config=None):
        return cls(t2v.unet, t2v.vae, t2v.text_encoder, t2v.tokenizer, t2v.scheduler,
                   audio_encoder, mapper, t2v_source=t2v.source, encoder_config=encoder_config)

    def save_pretrained(self, directory: str | Path, save_unet: bool = False) -> Path:
        """Write the trained parts (mapper; the UNet if it was fine-tuned) and the recipe for
        the frozen parts, which are reloaded from their source instead of copied."""
        from avlib.mapper import save_mapper

        directory = Path(directory)
        if self.mapper is not None:
            save_mapper(self.mapper, directory / "mapper")
        if save_unet:
            self.unet.save_pretrained(directory / "unet")
        write_json(directory / PIPELINE_FILE, {
            "t2v": self.t2v_source, "encoder": self.encoder_config,
            "has_mapper": self.mapper is not None, "unet": "unet" if save_unet else None,
        })
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, t2v: T2VComponents | None = None,
                        device: str = "cpu", dtype: str = "float32") -> "AudioToVideoPipeline":
        """Rebuild a saved pipeline; the frozen model is reloaded from its recorded source."""
        from avlib.audio import build_audio_encoder
        from avlib.config import EncoderConfig
        from avlib.errors import CheckpointError
        from avlib.mapper import load_mapper

        directory = Path(directory)
        recipe_file = directory / PIPELINE_FILE
        if not recipe_file.is_file():
            raise CheckpointError(f"{directory} holds no {PIPELINE_FILE}: pass a run folder written "
                                  "by `avlib train` (or AudioToVideoPipeline.save_pretrained)")
        recipe = read_json(recipe_file, "pipeline recipe")
        t2v = t2v or load_t2v(recipe["t2v"], dtype=dtype, device=device)
        if recipe.get("unet"):  # a fine-tuned UNet replaces the frozen one
            from diffusers import UNet3DConditionModel

            unet = UNet3DConditionModel.from_pretrained(directory / recipe["unet"])
            t2v = dataclasses.replace(t2v, unet=unet.requires_grad_(False).eval().to(t2v.unet.device, t2v.unet.dtype))
        encoder = mapper = None
        if recipe.get("has_mapper"):
            encoder = build_audio_encoder(EncoderConfig(**recipe["encoder"])).eval().to(device)
            mapper = load_mapper(directory / "mapper").eval().to(device)
        return cls.from_t2v(t2v, encoder, mapper, encoder_config=recipe["encoder"])

    def set_scheduler(self, name: str) -> None:
        """Sample with ``name`` (``ddim`` | ``dpm-multistep``), built from the model's own
        scheduler config, as the report repo and TempoTokens switch to DPM-Solver++."""
        import diffusers

        if name not in SCHEDULER_CLASSES:
            raise ConfigError(f"scheduler '{name}' is not one of: {', '.join(SCHEDULER_CLASSES)}")
        cls = getattr(diffusers, SCHEDULER_CLASSES[name])
        if type(self.scheduler) is not cls:
            self.scheduler = cls.from_config(self.scheduler.config)

    def enable_vae_slicing(self, enabled: bool = True) -> None:
        """Decode one frame at a time (less peak memory at high resolution)."""
        self.vae_slicing = enabled

    def enable_model_cpu_offload(self, device: str = "cuda") -> None:
        """Keep models on the CPU and move each to ``device`` only while it runs."""
        self._offload_device = torch.device(device)
        for model in self._models():
            model.to("cpu")

    def _models(self) -> list[torch.nn.Module]:
        return [m for m in (self.audio_encoder, self.mapper, self.text_encoder, self.unet, self.vae)
                if m is not None]

    @property
    def device(self) -> torch.device:
        return self._offload_device or next(self.unet.parameters()).device

    def _on_device(self, model: torch.nn.Module) -> torch.nn.Module:
        if self._offload_device is not None:
            for other in self._models():
                if other is not model:
                    other.to("cpu")
            model.to(self._offload_device)
        return model

    # -- conditioning -----------------------------------------------------------------------
    def audio_tokens(self, waveform: torch.Tensor, num_frames: int):
        """Audio (B, samples) at 16 kHz -> mapper output with tokens (B, F, L, D)."""
        features = self._on_device(self.audio_encoder).encode(waveform.to(self.device))  # (B, T, D_audio)
        mapper = self._on_device(self.mapper)
        if mapper.num_frames != num_frames:
            raise ConfigError(f"this mapper makes tokens for {mapper.num_frames} frames; "
                              f"generate {mapper.num_frames} frames (got num_frames={num_frames})")
        return mapper(features)

    def encode_conditioning(self, waveform: torch.Tensor | None, prompt: str | None, num_frames: int,
                            batch: int, frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The conditional context: (B, F*77, D) with audio or given tokens, (B, 77, D) for text alone."""
        text_encoder = self._on_device(self.text_encoder)
        if frame_tokens is None and waveform is not None and self.mapper is not None:
            frame_tokens = self.audio_tokens(waveform, num_frames).frame_tokens
        if frame_tokens is None:
            return encode_text(text_encoder, self.tokenizer, [prompt or ""] * batch)
        tokens = frame_tokens.to(text_encoder.device, text_encoder.dtype)    # (B, F, L, D)
        return encode_frame_prompts(text_encoder, self.tokenizer, prompt, tokens)

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, audio: np.ndarray | torch.Tensor | None = None, prompt: str | None = None,
                 num_inference_steps: int = 25, guidance_scale: float = 25.0, num_frames: int = 24,
                 height: int = 320, width: int = 576,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 negative_prompt: str = "", frame_tokens: torch.Tensor | None = None,
                 progress: bool = True) -> np.ndarray:
        """Generate frames (B, F, H, W, 3) in [0, 1].

        Conditioning: 16 kHz ``audio`` (samples,) or (B, samples) through the encoder and mapper,
        or precomputed ``frame_tokens`` (B, F, L, D) (e.g. from ``avlib tokens``), placed into
        ``prompt``; with neither, the prompt alone (plain text-to-video). ``generator``: one for the
        batch, or one per video (diffusers' convention), so a video's noise does not depend on the batch.
        """
        waveform = None
        if audio is not None:
            waveform = torch.as_tensor(np.asarray(audio, dtype=np.float32))
            waveform = waveform[None] if waveform.ndim == 1 else waveform   # (B, samples)
        batch = (frame_tokens.shape[0] if frame_tokens is not None
                 else 1 if waveform is None else waveform.shape[0])
        context = self.encode_conditioning(waveform, prompt, num_frames, batch, frame_tokens)
        do_guidance = guidance_scale > 1.0
        if do_guidance:
            # The unconditional branch: the empty (or negative) prompt, the same for every frame.
            uncond = encode_text(self._on_device(self.text_encoder), self.tokenizer, [negative_prompt] * batch)
            uncond = uncond.repeat(1, context.shape[1] // uncond.shape[1], 1)
            context = torch.cat([uncond, context])
        unet = self._on_device(self.unet)
        context = context.to(unet.device, unet.dtype)

        scale = vae_scale(self.vae.config.block_out_channels)
        shape = (batch, unet.config.in_channels, num_frames, height // scale, width // scale)
        latents = randn_tensor(shape, generator=generator, dtype=torch.float32).to(unet.device, unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=unet.device)
        latents = latents * self.scheduler.init_noise_sigma
        for t in tqdm(self.scheduler.timesteps, desc="denoising", disable=not progress, leave=False):
            model_input = torch.cat([latents] * 2) if do_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise = unet(model_input, t, encoder_hidden_states=context).sample
            if do_guidance:
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = self.scheduler.step(noise, t, latents).prev_sample
        return self.decode_latents(latents)

    def generate(self, settings, audio: np.ndarray | torch.Tensor | None = None,
                 prompt: str | None = None, generator: torch.Generator | list[torch.Generator] | None = None,
                 audio_window: str = "aligned", progress: bool = True) -> GeneratedVideo:
        """Generate with an experiment's inference settings (``avlib.config.InferenceConfig``):
        size, frames, fps, steps, guidance, scheduler and negative prompt.

        ``audio`` (samples,) or (B, samples) at 16 kHz is cut to the settings' window
        (``num_frames / fps`` seconds from its start, zero-filled if shorter), the same window
        the mapper was trained on (:mod:`avlib.data.window`); ``audio_window`` is the run's
        ``data.audio_window``.
        """
        from avlib.data.window import AudioFrameWindow

        window = AudioFrameWindow.for_inference(settings, audio_window)
        heard = None
        if audio is not None:
            wave = torch.as_tensor(np.asarray(audio, dtype=np.float32))
            wave = wave[None] if wave.ndim == 1 else wave                     # (B, samples)
            heard = torch.stack([window.cut(w) for w in wave])                # (B, window samples)
        self.set_scheduler(settings.scheduler)
        conditioned = heard is not None and self.mapper is not None
        frames = self(window.encoder_input(heard) if conditioned else None, prompt=prompt,
                      num_inference_steps=settings.num_inference_steps,
                      guidance_scale=settings.guidance_scale, num_frames=settings.num_frames,
                      height=settings.height, width=settings.width, generator=generator,
                      negative_prompt=settings.negative_prompt, progress=progress)
        return GeneratedVideo(frames, settings.fps, None if heard is None else heard.numpy())

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(B, C, F, h, w) latents -> (B, F, H, W, 3) frames in [0, 1]."""
        vae = self._on_device(self.vae)
        batch, channels, frames, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, h, w)  # (B*F, C, h, w)
        flat = flat.to(vae.dtype) / vae.config.scaling_factor
        chunk = 1 if self.vae_slicing else flat.shape[0]
        images = torch.cat([vae.decode(part).sample for part in flat.split(chunk)])  # (B*F, 3, H, W)
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        images = images.reshape(batch, frames, *images.shape[1:]).permute(0, 1, 3, 4, 2)
        return images.cpu().numpy()
