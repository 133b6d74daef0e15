"""``AudioToVideoPipeline``: audio (and optionally text) in, video frames out.

A ``diffusers.DiffusionPipeline`` whose registered components are the frozen text-to-video
model (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``), the frozen
``audio_encoder`` and the trained ``mapper`` that turns audio features into per-frame
pseudo-word tokens (both :mod:`avlib.pipeline.components`). ``.to()``,
``enable_model_cpu_offload()``, ``set_progress_bar_config()``, ``components`` and
``from_pretrained`` / ``save_pretrained`` are diffusers' own. Without an audio encoder and
mapper it is a plain text-to-video pipeline on the same code path, numerically equal to
``TextToVideoSDPipeline``.

**Saved folders.** ``save_pretrained(folder)`` writes diffusers' layout (``model_index.json``,
one subfolder per saved component). The frozen networks -- UNet, VAE, text encoder and the
audio encoder -- are *referenced* by default, not copied: ``model_index.json`` lists them as
``[null, null]`` and records where they come from (``t2v_source``: a hub id, "tiny",
"toyworld" or a local folder; ``encoder_config``: the ``encoder`` config section, whose
``checkpoint`` is a hub file or a path). zeroscope's weights are gigabytes and every run
would copy them (a pipeline built without a ``t2v_source`` copies them: there is nothing to
reference). ``from_pretrained(folder)`` loads the referenced parts from those sources
(the hub cache, offline once cached) and everything else from the folder, so a saved folder
reloads alone. ``save_pretrained(folder, copy_frozen=True)`` copies every component instead
(a folder that needs nothing else); a fine-tuned UNet is always copied
(``save_unet=True``). The tokenizer and scheduler are small and always copied. Folders
written before this layout (``pipeline.json`` + ``mapper/``) still load.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from avlib.errors import CheckpointError, ConfigError
from avlib.io import read_json
from avlib.pipeline.components import AudioEncoderModel, MapperModel
from avlib.pipeline.conditioning import encode_frame_prompts, encode_text, enable_frame_conditioning
from avlib.pipeline.t2v import DTYPES, T2VComponents, load_t2v, vae_scale

LEGACY_RECIPE = "pipeline.json"   # what run folders held before the diffusers layout
MODEL_INDEX = "model_index.json"
# The frozen networks of the text-to-video model: referenced by t2v_source unless copied.
FROZEN_T2V = ("unet", "vae", "text_encoder")
# inference.scheduler names -> diffusers classes (built from the model's scheduler config)
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "dpm-multistep": "DPMSolverMultistepScheduler"}
# Defaults of the generation arguments when no inference settings are given (zeroscope's).
DEFAULTS = dict(num_inference_steps=25, guidance_scale=25.0, num_frames=24, height=320, width=576,
                fps=None, negative_prompt="")


@dataclass
class AudioToVideoPipelineOutput(BaseOutput):
    """What :class:`AudioToVideoPipeline` returns.

    ``frames`` (B, F, H, W, 3) in [0, 1]; ``fps`` the frame rate they are shown at (from the
    inference settings; ``None`` when not given); ``audio`` (B, samples) at 16 kHz: the
    window the frames were made from, for muxing (``None`` without audio); ``conditioning``:
    what conditioned the frames (``source``: audio | frame_tokens | prompt_embeds | text,
    the prompt, and every generation setting), for the sidecar of a written video.
    """

    frames: np.ndarray
    fps: float | None = None
    audio: np.ndarray | None = None
    conditioning: dict | None = None

    def save(self, path: str | Path, index: int = 0, crf: int = 18) -> Path:
        """Write video ``index`` as an mp4 at ``fps``, its audio window muxed in."""
        from avlib.media import write_video

        if self.fps is None:
            raise ConfigError("this output has no fps: generate with inference settings "
                              "(settings=config.inference) or pass fps=")
        audio = None if self.audio is None else self.audio[index]
        return write_video(path, self.frames[index], self.fps, audio=audio, crf=crf)


class AudioToVideoPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->mapper->text_encoder->unet->vae"
    _optional_components = ["audio_encoder", "mapper"]

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler,
                 audio_encoder: torch.nn.Module | None = None, mapper: torch.nn.Module | None = None,
                 t2v_source: str = "", encoder_config: dict | None = None):
        super().__init__()
        if isinstance(audio_encoder, AudioEncoderModel) and not encoder_config:
            encoder_config = audio_encoder.encoder_config
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, audio_encoder=AudioEncoderModel.wrap(audio_encoder),
                              mapper=MapperModel.wrap(mapper))
        self.register_to_config(t2v_source=t2v_source, encoder_config=dict(encoder_config or {}))
        self.vae_slicing = False
        enable_frame_conditioning(unet, tokenizer.model_max_length)

    # -- assembly -------------------------------------------------------------------------
    @classmethod
    def from_t2v(cls, t2v: T2VComponents, audio_encoder=None, mapper=None, encoder_config=None):
        return cls(t2v.unet, t2v.vae, t2v.text_encoder, t2v.tokenizer, t2v.scheduler,
                   audio_encoder, mapper, t2v_source=t2v.source, encoder_config=encoder_config)

    @property
    def t2v_source(self) -> str:
        return self.config.t2v_source

    def save_pretrained(self, save_directory: str | Path, copy_frozen: bool = False,
                        save_unet: bool = False, **kwargs) -> Path:
        """diffusers' ``save_pretrained``, with the frozen networks referenced by their
        sources unless ``copy_frozen`` or no source is known (see the module docstring);
        ``save_unet``: the UNet was fine-tuned, so it is copied."""
        referenced = [] if copy_frozen else self._referenced_components(save_unet)
        recorded = {name: self.config[name] for name in referenced}
        # diffusers skips an optional component recorded as (None, None): present the
        # referenced ones so for the duration, and restore them after.
        self._optional_components = [*type(self)._optional_components, *referenced]
        self.register_to_config(**{name: (None, None) for name in referenced})
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_to_config(**recorded)
            del self._optional_components
        return Path(save_directory)

    def _referenced_components(self, save_unet: bool) -> list[str]:
        """What a save may leave to its recorded source: nothing without a t2v_source."""
        if not self.config.t2v_source:
            return []
        referenced = [name for name in FROZEN_T2V if not (name == "unet" and save_unet)]
        if self.audio_encoder is not None and self.config.encoder_config:
            referenced.append("audio_encoder")
        return referenced

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, device: str | None = None,
                        dtype: torch.dtype | str | None = None, **kwargs) -> "AudioToVideoPipeline":
        """diffusers' ``from_pretrained`` after loading the parts the folder references
        (``t2v_source=`` overrides the recorded text-to-video source; components passed as
        keyword arguments are used as given). ``device``: where to put the pipeline;
        ``dtype`` (a torch dtype or its name) applies to the frozen networks off the CPU: on
        a CPU everything is float32 (:func:`avlib.pipeline.t2v.load_t2v`)."""
        folder = Path(pretrained_model_name_or_path)
        dtype_name = _dtype_name(dtype)
        if folder.is_dir() and not (folder / MODEL_INDEX).is_file():
            if not (folder / LEGACY_RECIPE).is_file():
                raise CheckpointError(f"{folder} holds no {MODEL_INDEX} (nor an older run's {LEGACY_RECIPE}): "
                                      "pass a run's pipeline/ folder written by `avlib train` "
                                      "(or AudioToVideoPipeline.save_pretrained)")
            return cls._from_legacy_folder(folder, device or "cpu", dtype_name, **kwargs)
        try:  # a local folder, or a hub repository (through the cache)
            index = cls.load_config(str(folder), **_hub_options(kwargs))
        except Exception as exc:  # diffusers raises OSError, EnvironmentError, ValueError...
            raise CheckpointError(f"no pipeline at {folder}: not a folder holding {MODEL_INDEX}, nor a hub "
                                  f"repository in the cache or reachable ({type(exc).__name__}); pass a run's "
                                  "pipeline/ folder") from exc
        source = kwargs.get("t2v_source") or index.get("t2v_source")
        absent = [name for name in FROZEN_T2V if index.get(name, [None])[0] is None and name not in kwargs]
        if absent:
            if not source:
                raise CheckpointError(f"{folder} references its {', '.join(absent)} but records no "
                                      "t2v_source: pass them, or t2v_source=")
            t2v = load_t2v(source, dtype=dtype_name, device=device or "cpu")
            kwargs.update({name: getattr(t2v, name) for name in absent})
        if index.get("audio_encoder", [None])[0] is None and "audio_encoder" not in kwargs \
                and index.get("encoder_config") and (index.get("mapper") or [None])[0] is not None:
            kwargs["audio_encoder"] = AudioEncoderModel.build(index["encoder_config"])
        # Frozen parts in the model's dtype (float32 on a CPU); the mapper and audio encoder
        # stay float32, as they were trained and as their inputs come.
        frozen_dtype = DTYPES[dtype_name] if device not in (None, "cpu") else torch.float32
        dtypes = {"default": frozen_dtype, "audio_encoder": torch.float32, "mapper": torch.float32}
        pipeline = super().from_pretrained(str(folder), dtype=dtypes, **kwargs)
        pipeline._frozen_in_eval_mode()
        return pipeline.to(device) if device else pipeline

    @classmethod
    def _from_legacy_folder(cls, folder: Path, device: str, dtype: str, **components) -> "AudioToVideoPipeline":
        """A ``pipeline/`` written before the diffusers layout: ``pipeline.json`` naming the
        t2v source and encoder config, ``mapper/``, and ``unet/`` if it was fine-tuned."""
        from diffusers import UNet3DConditionModel

        recipe = read_json(folder / LEGACY_RECIPE, "pipeline recipe")
        source = components.pop("t2v_source", None) or recipe["t2v"]
        missing = [name for name in (*FROZEN_T2V, "tokenizer", "scheduler") if name not in components]
        if missing:
            t2v = load_t2v(source, dtype=dtype, device=device)
            components.update({name: getattr(t2v, name) for name in missing})
        if recipe.get("unet"):  # a fine-tuned UNet replaces the frozen one
            frozen = components["unet"]
            components["unet"] = (UNet3DConditionModel.from_pretrained(folder / recipe["unet"])
                                  .requires_grad_(False).eval().to(frozen.device, frozen.dtype))
        if recipe.get("has_mapper"):
            components.setdefault("audio_encoder", AudioEncoderModel.build(recipe["encoder"]).to(device))
            components.setdefault("mapper", MapperModel.from_pretrained(folder / "mapper").eval().to(device))
        return cls(**components, t2v_source=source, encoder_config=recipe["encoder"])

    def _frozen_in_eval_mode(self) -> None:
        for name in ("unet", "vae", "text_encoder", "audio_encoder", "mapper"):
            module = getattr(self, name, None)
            if module is not None:
                module.requires_grad_(False).eval()

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

    # -- conditioning -----------------------------------------------------------------------
    def encode_conditioning(self, waveform: torch.Tensor | None, prompt: str | None, num_frames: int,
                            batch: int, frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """The conditional context, the one path of training and inference: (B, F*77, D) from
        audio (B, samples) through the encoder and mapper, or from given mapper tokens
        (B, F, L, D), placed into ``prompt``; (B, 77, D) for the prompt alone.

        Not under ``no_grad``: training passes its mapper's tokens and backpropagates."""
        if frame_tokens is None and waveform is not None and self.mapper is not None:
            if self.mapper.num_frames != num_frames:
                raise ConfigError(f"this mapper makes tokens for {self.mapper.num_frames} frames; generate "
                                  f"{self.mapper.num_frames} frames (got num_frames={num_frames})")
            features = self.audio_encoder(waveform.to(self._execution_device))   # (B, T, D_audio)
            frame_tokens = self.mapper(features).frame_tokens                  # (B, F, L, D)
        if frame_tokens is None:
            return encode_text(self.text_encoder, self.tokenizer, [prompt or ""] * batch)
        tokens = frame_tokens.to(self.text_encoder.device, self.text_encoder.dtype)
        return encode_frame_prompts(self.text_encoder, self.tokenizer, prompt, tokens)

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, audio: np.ndarray | torch.Tensor | None = None, prompt: str | None = None,
                 settings=None, *, audio_window: str = "aligned",
                 frame_tokens: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 fps: float | None = None, negative_prompt: str | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "np",
                 return_dict: bool = True) -> AudioToVideoPipelineOutput | tuple:
        """Generate videos.

        Conditioning, the first given of: precomputed ``prompt_embeds`` (B, F*77, D) per-frame
        or (B, 77, D) contexts; ``frame_tokens`` (B, F, L, D) from a mapper (``avlib tokens``);
        16 kHz ``audio`` (samples,) or (B, samples) through the encoder and mapper; each placed
        into ``prompt`` where it applies. With none of them, the prompt alone.

        ``settings``: an experiment's inference settings (``avlib.config.InferenceConfig``) for
        size, frames, fps, steps, guidance, scheduler and negative prompt; the audio is then cut
        to their window (``num_frames / fps`` seconds from its start, zero-filled if shorter,
        the window the mapper was trained on, :mod:`avlib.data.window`; ``audio_window``: the
        run's ``data.audio_window``). Arguments given explicitly win over ``settings``.

        ``output_type``: "np" frames (B, F, H, W, 3) in [0, 1], or "latent". ``generator``: one for
        the batch, or one per video (diffusers' convention), so a video's noise does not depend on the batch.
        """
        from avlib.data.window import AudioFrameWindow

        given = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                     num_frames=num_frames, height=height, width=width, fps=fps, negative_prompt=negative_prompt)
        chosen = {name: value if value is not None else getattr(settings, name, DEFAULTS[name])
                  for name, value in given.items()}
        if settings is not None:
            self.set_scheduler(settings.scheduler)
        waveform = None
        if audio is not None:
            waveform = torch.as_tensor(np.asarray(audio, dtype=np.float32))
            waveform = waveform[None] if waveform.ndim == 1 else waveform    # (B, samples)
        heard, encoder_input = waveform, waveform
        if waveform is not None and settings is not None:
            window = AudioFrameWindow.for_inference(settings, audio_window)
            heard = torch.stack([window.cut(w) for w in waveform])            # (B, window samples)
            encoder_input = window.encoder_input(heard)

        source, context = self._conditional_context(encoder_input, prompt, frame_tokens, prompt_embeds,
                                                    chosen["num_frames"])
        batch = context.shape[0]
        do_guidance = chosen["guidance_scale"] > 1.0
        if do_guidance:
            # The unconditional branch: the empty (or negative) prompt, the same for every frame.
            uncond = (negative_prompt_embeds if negative_prompt_embeds is not None
                      else encode_text(self.text_encoder, self.tokenizer, [chosen["negative_prompt"]] * batch))
            uncond = uncond.to(context).repeat(1, context.shape[1] // uncond.shape[1], 1)
            context = torch.cat([uncond, context])
        device = self._execution_device
        context = context.to(device, self.unet.dtype)

        scale = vae_scale(self.vae.config.block_out_channels)
        shape = (batch, self.unet.config.in_channels, chosen["num_frames"],
                 chosen["height"] // scale, chosen["width"] // scale)
        latents = randn_tensor(shape, generator=generator, dtype=torch.float32).to(device, self.unet.dtype)
        self.scheduler.set_timesteps(chosen["num_inference_steps"], device=device)
        latents = latents * self.scheduler.init_noise_sigma
        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            for t in self.scheduler.timesteps:
                model_input = torch.cat([latents] * 2) if do_guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                noise = self.unet(model_input, t, encoder_hidden_states=context).sample
                if do_guidance:
                    noise_uncond, noise_cond = noise.chunk(2)
                    noise = noise_uncond + chosen["guidance_scale"] * (noise_cond - noise_uncond)
                latents = self.scheduler.step(noise, t, latents).prev_sample
                bar.update()
        frames = latents if output_type == "latent" else self.decode_latents(latents)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        record = {"source": source, "prompt": prompt, "audio_window": audio_window if heard is not None else None,
                  "scheduler": type(self.scheduler).__name__, **chosen}
        return AudioToVideoPipelineOutput(frames=frames, fps=chosen["fps"],
                                          audio=None if heard is None else heard.numpy(), conditioning=record)

    def generate_long(self, audio: np.ndarray, prompt: str | None = None, settings=None,
                      **options) -> AudioToVideoPipelineOutput:
        """A video as long as ``audio`` (samples,), windows denoised together
        (:func:`avlib.pipeline.long_video.long_video_output`; ``long_mode``, ``audio_window``, ``seed``)."""
        from avlib.pipeline.long_video import long_video_output

        return long_video_output(self, audio, prompt, settings, **options)

    def stream(self, audio_chunks, prompt: str | None = None, settings=None, **options):
        """Frames (H, W, 3) in order as audio chunks arrive: the frames of :meth:`generate_long`
        (:func:`avlib.pipeline.long_video.stream`; ``on_audio`` sees each window's audio)."""
        from avlib.pipeline.long_video import stream

        return stream(self, audio_chunks, prompt, settings, **options)

    def _conditional_context(self, waveform, prompt, frame_tokens, prompt_embeds,
                             num_frames: int) -> tuple[str, torch.Tensor]:
        """Which conditioning applies, and its context (B, F*77, D) or (B, 77, D)."""
        if prompt_embeds is not None:
            if prompt_embeds.ndim != 3:
                raise ConfigError(f"prompt_embeds must be (batch, tokens, dim) contexts, got shape "
                                  f"{tuple(prompt_embeds.shape)}")
            return "prompt_embeds", prompt_embeds
        if frame_tokens is not None:
            return "frame_tokens", self.encode_conditioning(None, prompt, num_frames, frame_tokens.shape[0], frame_tokens)
        if waveform is not None and self.mapper is not None:
            return "audio", self.encode_conditioning(waveform, prompt, num_frames, waveform.shape[0])
        batch = 1 if waveform is None else waveform.shape[0]
        return "text", self.encode_conditioning(None, prompt, num_frames, batch)

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(B, C, F, h, w) latents -> (B, F, H, W, 3) frames in [0, 1]."""
        batch, channels, frames, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, h, w)  # (B*F, C, h, w)
        flat = flat.to(self.vae.dtype) / self.vae.config.scaling_factor
        chunk = 1 if self.vae_slicing else flat.shape[0]
        images = torch.cat([self.vae.decode(part).sample for part in flat.split(chunk)])  # (B*F, 3, H, W)
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        images = images.reshape(batch, frames, *images.shape[1:]).permute(0, 1, 3, 4, 2)
        return images.cpu().numpy()


def _dtype_name(dtype: torch.dtype | str | None) -> str:
    if dtype is None:
        return "float32"
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype '{dtype}' is not one of: {', '.join(DTYPES)}")
        return dtype
    return {value: name for name, value in DTYPES.items()}[dtype]


def _hub_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in ("cache_dir", "revision", "token", "local_files_only") if key in kwargs}
