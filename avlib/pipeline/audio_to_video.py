"""``AudioToVideoPipeline``: audio (and optionally text) in, video frames out.

A ``diffusers.DiffusionPipeline`` whose registered components are the frozen text-to-video
model (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``), the frozen
``audio_encoder`` and the trained ``mapper`` that turns audio features into per-frame
pseudo-word tokens (both :mod:`avlib.pipeline.components`). ``.to()``,
``enable_model_cpu_offload()``, ``set_progress_bar_config()``, ``components`` and
``from_pretrained`` / ``save_pretrained`` are diffusers' own. Without an audio encoder and
mapper it is a plain text-to-video pipeline on the same code path, numerically equal to
``TextToVideoSDPipeline``.

**Settings.** The pipeline owns what it generates with, :class:`avlib.config.GenerationSettings`
(frames, fps, size, steps, guidance, scheduler, negative prompt, seed, audio window), whose
defaults are ``InferenceConfig``'s: ``pipe.settings`` reads them, ``pipe.set_settings(...)``
changes them (and switches the scheduler then, never during a call), ``save_pretrained``
records them in ``model_index.json`` and loading restores them, so ``pipe(audio)`` on a
trained run makes that run's videos. Keyword arguments of a call override them for that call.

**Loading.** ``AudioToVideoPipeline.from_pretrained(folder)``, or diffusers' own
``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``: a saved folder holds
``pipeline_audio_to_video.py``, two lines importing this class, and ``model_index.json``
names it, as the hub's custom pipelines do. :meth:`AudioToVideoPipeline.from_run` loads a run
folder's pipeline the way its config says (the one loader of the CLI, sampling, the explorer
and the toy world).

**Saved folders.** ``save_pretrained(folder)`` writes diffusers' layout (``model_index.json``,
one subfolder per saved component) and a model card (``README.md``: settings, sources, and
the run's config, data and metrics when the folder is a run's ``pipeline/``). The frozen
networks -- UNet, VAE, text encoder and the audio encoder -- are *referenced* by default, not
copied: ``model_index.json`` lists them as ``[null, null]`` and records where they come from
(``t2v_source``: a hub id, "tiny", "toyworld" or a local folder; ``encoder_config``: the
``encoder`` config section, whose ``checkpoint`` is a hub file or a path). zeroscope's weights
are gigabytes and every run would copy them (a pipeline built without a ``t2v_source`` copies
them: there is nothing to reference). A pipeline built without them loads them from those
sources (the hub cache, offline once cached), so a saved folder reloads alone.
``save_pretrained(folder, copy_frozen=True)`` copies every component instead (a folder that
needs nothing else); a fine-tuned UNet is always copied (``save_unet=True``). The tokenizer
and scheduler are small and always copied. Folders written before this layout
(``pipeline.json`` + ``mapper/``), or before pipelines saved their settings, still load: their
settings come from the run's config next to them, else the defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from diffusers import DiffusionPipeline, UNet3DConditionModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from avlib.config import AUDIO_WINDOWS, GenerationSettings, InferenceConfig, check_frame_size
from avlib.data.window import AudioFrameWindow
from avlib.errors import CheckpointError, ConfigError
from avlib.io import read_json, write_json
from avlib.pipeline.components import AudioEncoderModel, MapperModel
from avlib.pipeline.conditioning import encode_frame_prompts, encode_text, enable_frame_conditioning
from avlib.pipeline.long_video import long_video_frames, stream_frames_of
from avlib.pipeline.model_card import MODEL_INDEX, write_model_card
from avlib.pipeline.t2v import DTYPES, T2VComponents, load_t2v, vae_scale
from avlib.run import Run

LEGACY_RECIPE = "pipeline.json"   # what run folders held before the diffusers layout
# The frozen networks of the text-to-video model: referenced by t2v_source unless copied.
FROZEN_T2V = ("unet", "vae", "text_encoder")
# inference.scheduler names -> diffusers classes (built from the model's scheduler config)
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "dpm-multistep": "DPMSolverMultistepScheduler"}
# The custom-pipeline file a saved folder names in model_index.json (the hub's convention):
# diffusers imports the class through it.
CODE_MODULE = "pipeline_audio_to_video"
CODE_TEXT = ('"""AudioToVideoPipeline\'s code is the avlib package\'s; this file lets diffusers load '
             'the folder."""\nfrom avlib.pipeline.audio_to_video import AudioToVideoPipeline  # noqa: F401\n')


@dataclass
class AudioToVideoPipelineOutput(BaseOutput):
    """What :class:`AudioToVideoPipeline` returns.

    ``frames`` (B, F, H, W, 3) in [0, 1]; ``fps`` the frame rate they are shown at; ``audio``
    (B, samples) at 16 kHz: the window the frames were made from, for muxing (``None``
    without audio); ``conditioning``: what conditioned the frames (``source``: audio |
    frame_tokens | prompt_embeds | text, the prompt, and every generation setting), for the
    sidecar of a written video.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    conditioning: dict | None = None

    def save(self, path: str | Path, index: int = 0, crf: int | None = None) -> Path:
        """Write video ``index`` as an mp4 at ``fps``, its audio window muxed in, at x264
        ``crf`` (None: :data:`avlib.media.DEFAULT_CRF`)."""
        from avlib.media import DEFAULT_CRF, write_video  # media pulls in ffmpeg plumbing only writers need

        audio = None if self.audio is None else self.audio[index]
        return write_video(path, self.frames[index], self.fps, audio=audio, crf=DEFAULT_CRF if crf is None else crf)


class AudioToVideoPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "audio_encoder->mapper->text_encoder->unet->vae"
    # The frozen networks may be absent from a saved folder (referenced by their source) and
    # are then loaded from it; audio encoder and mapper are absent from a text-to-video pipeline.
    _optional_components = [*FROZEN_T2V, "audio_encoder", "mapper"]

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler,
                 audio_encoder: torch.nn.Module | None = None, mapper: torch.nn.Module | None = None,
                 t2v_source: str = "", encoder_config: dict | None = None, settings: dict | None = None):
        super().__init__()
        if isinstance(audio_encoder, AudioEncoderModel) and not encoder_config:
            encoder_config = audio_encoder.encoder_config
        frozen = _with_referenced_t2v(dict(unet=unet, vae=vae, text_encoder=text_encoder), t2v_source)
        if audio_encoder is None and mapper is not None and encoder_config:
            audio_encoder = AudioEncoderModel.build(encoder_config)   # referenced by its config
        self.register_modules(**frozen, tokenizer=tokenizer, scheduler=scheduler,
                              audio_encoder=AudioEncoderModel.wrap(audio_encoder), mapper=MapperModel.wrap(mapper))
        self.register_to_config(t2v_source=t2v_source, encoder_config=dict(encoder_config or {}))
        self.vae_slicing = False
        enable_frame_conditioning(self.unet, tokenizer.model_max_length)
        self.set_settings(settings or GenerationSettings())

    # -- assembly -------------------------------------------------------------------------
    @classmethod
    def from_t2v(cls, t2v: T2VComponents, audio_encoder=None, mapper=None, encoder_config=None,
                 settings: InferenceConfig | None = None):
        """The pipeline over loaded text-to-video parts (referenced by their source when
        saved), with an audio encoder and mapper if given, generating with ``settings``
        (``InferenceConfig`` or ``GenerationSettings``; default: ``InferenceConfig``'s)."""
        return cls(t2v.unet, t2v.vae, t2v.text_encoder, t2v.tokenizer, t2v.scheduler, audio_encoder, mapper,
                   t2v_source=t2v.source, encoder_config=encoder_config,
                   settings=dataclasses.asdict(settings) if settings is not None else None)

    @property
    def t2v_source(self) -> str:
        return self.config.t2v_source

    # -- settings -------------------------------------------------------------------------
    @property
    def settings(self) -> GenerationSettings:
        """What ``pipe(...)`` generates with unless a call says otherwise."""
        return GenerationSettings(**self.config.settings)

    def set_settings(self, settings: InferenceConfig | Mapping[str, Any] | None = None,
                     **changes: Any) -> GenerationSettings:
        """Generate with ``settings`` (``GenerationSettings``, ``InferenceConfig`` or a dict;
        what it does not name keeps its current value) and ``changes`` on top, from now on
        and in the saved folder; the scheduler switches here when ``scheduler`` changes."""
        given = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings or {})
        current = self.settings if "settings" in self.config else GenerationSettings()
        chosen = _replaced(current, {**given, **changes})
        self.set_scheduler(chosen.scheduler)
        self.register_to_config(settings=dataclasses.asdict(chosen))
        return chosen

    def call_settings(self, **overrides: Any) -> GenerationSettings:
        """``settings`` with one call's ``overrides`` (``None`` values are not given). The
        scheduler is not among them: switching it belongs to :meth:`set_settings`."""
        if overrides.get("scheduler") is not None:
            raise ConfigError("the scheduler is the pipeline's setting, not a call's: "
                              "pipe.set_settings(scheduler=...) first")
        return _replaced(self.settings, {k: v for k, v in overrides.items() if v is not None})

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

    # -- saving and loading -----------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, copy_frozen: bool = False,
                        save_unet: bool = False, **kwargs) -> Path:
        """diffusers' ``save_pretrained``, with the frozen networks referenced by their
        sources unless ``copy_frozen`` or no source is known (see the module docstring);
        ``save_unet``: the UNet was fine-tuned, so it is copied. Adds the code file diffusers
        loads the class through, and the model card."""
        referenced = [] if copy_frozen else self._referenced_components(save_unet)
        recorded = {name: self.config[name] for name in referenced}
        # diffusers skips an optional component recorded as (None, None): record the
        # referenced ones so for the duration, and restore them after.
        self.register_to_config(**{name: (None, None) for name in referenced})
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.register_to_config(**recorded)
        folder = Path(save_directory)
        index = read_json(folder / MODEL_INDEX, "pipeline index")
        write_json(folder / MODEL_INDEX, {**index, "_class_name": [CODE_MODULE, type(self).__name__]})
        (folder / f"{CODE_MODULE}.py").write_text(CODE_TEXT)
        write_model_card(folder)
        return folder

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
        """diffusers' ``from_pretrained`` (``t2v_source=`` overrides the recorded text-to-video
        source; components passed as keyword arguments are used as given). ``device``: where
        to put the pipeline; ``dtype`` (a torch dtype or its name) applies to the frozen
        networks off the CPU: on a CPU everything is float32, and the mapper and audio encoder
        stay float32 everywhere, as they were trained and as their inputs come."""
        folder = Path(pretrained_model_name_or_path)
        frozen_dtype = DTYPES[_dtype_name(dtype)] if device not in (None, "cpu") else torch.float32
        if folder.is_dir() and not (folder / MODEL_INDEX).is_file():
            pipeline, index = cls._from_legacy_folder(folder, **kwargs), {}
        else:
            index = _read_index(cls, folder, kwargs)
            if (folder / f"{CODE_MODULE}.py").is_file() and (folder / f"{CODE_MODULE}.py").read_text() == CODE_TEXT:
                kwargs.setdefault("trust_remote_code", True)   # the folder's code is our own import line
            dtypes = {"default": frozen_dtype, "audio_encoder": torch.float32, "mapper": torch.float32}
            pipeline = super().from_pretrained(str(folder), dtype=dtypes, **kwargs)
        if "settings" not in index:  # saved before pipelines kept their settings
            pipeline.set_settings(_run_settings(folder))
        for name in FROZEN_T2V:     # those loaded from their source come in float32
            if getattr(pipeline, name).dtype != frozen_dtype:
                getattr(pipeline, name).to(frozen_dtype)
        pipeline._frozen_in_eval_mode()
        return pipeline.to(device) if device else pipeline

    @classmethod
    def from_run(cls, run_dir: str | Path, overrides=None, device: str | None = None) -> "AudioToVideoPipeline":
        """The trained pipeline of the run folder ``run_dir``, as the run's config says: its
        text-to-video source, device (or ``device``), dtype, VAE slicing and generation
        settings, with ``overrides`` (``["inference.guidance_scale=15"]``) on top."""
        run = Run(run_dir)
        config = run.read_config(overrides)
        pipeline = cls.from_pretrained(run.pipeline_dir, t2v_source=config.model.pretrained,
                                       device=device or config.model.device, dtype=config.model.dtype)
        pipeline.set_settings(GenerationSettings.of(config))
        pipeline.enable_vae_slicing(config.model.vae_slicing)
        return pipeline

    @classmethod
    def _from_legacy_folder(cls, folder: Path, **components) -> "AudioToVideoPipeline":
        """A ``pipeline/`` written before the diffusers layout: ``pipeline.json`` naming the
        t2v source and encoder config, ``mapper/``, and ``unet/`` if it was fine-tuned."""
        if not (folder / LEGACY_RECIPE).is_file():
            raise CheckpointError(f"{folder} holds no {MODEL_INDEX} (nor an older run's {LEGACY_RECIPE}): "
                                  "pass a run's pipeline/ folder written by `avlib train` "
                                  "(or AudioToVideoPipeline.save_pretrained)")
        recipe = read_json(folder / LEGACY_RECIPE, "pipeline recipe")
        source = components.pop("t2v_source", None) or recipe["t2v"]
        components = {name: part for name, part in components.items()
                      if name in (*FROZEN_T2V, "tokenizer", "scheduler", "audio_encoder", "mapper")}
        if recipe.get("unet"):  # a fine-tuned UNet replaces the frozen one
            components.setdefault("unet", UNet3DConditionModel.from_pretrained(folder / recipe["unet"]))
        if recipe.get("has_mapper"):
            components.setdefault("audio_encoder", AudioEncoderModel.build(recipe["encoder"]))
            components.setdefault("mapper", MapperModel.from_pretrained(folder / "mapper"))
        if "tokenizer" not in components or "scheduler" not in components:
            t2v = load_t2v(source)
            components = {"tokenizer": t2v.tokenizer, "scheduler": t2v.scheduler,
                          **{name: getattr(t2v, name) for name in FROZEN_T2V}, **components}
        return cls(**components, t2v_source=source, encoder_config=recipe["encoder"])

    def _frozen_in_eval_mode(self) -> None:
        for name in ("unet", "vae", "text_encoder", "audio_encoder", "mapper"):
            module = getattr(self, name, None)
            if module is not None:
                module.requires_grad_(False).eval()

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, audio: np.ndarray | torch.Tensor | None = None, prompt: str | None = None, *,
                 frame_tokens: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, output_type: str = "np",
                 return_dict: bool = True, **overrides: Any) -> AudioToVideoPipelineOutput | tuple:
        """Generate videos with :attr:`settings`; ``overrides`` (``num_frames=``, ``height=``,
        ``width=``, ``fps=``, ``num_inference_steps=``, ``guidance_scale=``,
        ``negative_prompt=``, ``seed=``, ``audio_window=``) change them for this call.

        Conditioning, the first given of: precomputed ``prompt_embeds`` (B, F*77, D) per-frame
        or (B, 77, D) contexts; ``frame_tokens`` (B, F, L, D) from a mapper (``avlib tokens``);
        16 kHz ``audio`` (samples,) or (B, samples) through the encoder and mapper; each placed
        into ``prompt`` where it applies. With none of them, the prompt alone. The audio is cut
        to the settings' window (``num_frames / fps`` seconds from its start, zero-filled if
        shorter: the window the mapper was trained on, :mod:`avlib.data.window`).

        ``output_type``: "np" frames (B, F, H, W, 3) in [0, 1], or "latent". ``generator``: one
        for the batch, or one per video (diffusers' convention), so a video's noise does not
        depend on the batch; without one, the settings' ``seed`` seeds the batch.
        """
        settings = self.call_settings(**overrides)
        # 1. Check inputs
        waveform = self.check_inputs(audio, prompt_embeds, settings)
        # 2. Encode the conditioning: the audio window, through encoder and mapper, into the prompt
        source, context, heard = self.encode_inputs(waveform, prompt, frame_tokens, prompt_embeds,
                                                    negative_prompt_embeds, settings)
        # 3. Prepare timesteps and the initial noise
        self.scheduler.set_timesteps(settings.num_inference_steps, device=self._execution_device)
        batch = context.shape[0] // 2 if _guided(settings.guidance_scale) else context.shape[0]
        latents = self.prepare_latents(batch, settings, generator if generator is not None else _seeded(settings))
        # 4. Denoise
        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            for t in self.scheduler.timesteps:
                latents = self.denoise_step(latents, t, context, settings.guidance_scale)
                bar.update()
        # 5. Decode
        frames = latents if output_type == "latent" else self.decode_latents(latents)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return AudioToVideoPipelineOutput(frames=frames, fps=settings.fps,
                                          audio=None if heard is None else heard.numpy(),
                                          conditioning=self._record(source, prompt, heard, settings))

    def check_inputs(self, audio, prompt_embeds: torch.Tensor | None,
                     settings: GenerationSettings) -> torch.Tensor | None:
        """Step 1: sizes the VAE can make and contexts of the right rank; the audio as
        (B, samples) float32 (``None`` without audio)."""
        factor = vae_scale(self.vae.config.block_out_channels)
        check_frame_size([(f"height={settings.height}", settings.height),
                          (f"width={settings.width}", settings.width)], factor)
        if prompt_embeds is not None and prompt_embeds.ndim != 3:
            raise ConfigError(f"prompt_embeds must be (batch, tokens, dim) contexts, got shape "
                              f"{tuple(prompt_embeds.shape)}")
        if audio is None:
            return None
        waveform = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        return waveform[None] if waveform.ndim == 1 else waveform                # (B, samples)

    def encode_inputs(self, waveform: torch.Tensor | None, prompt: str | None, frame_tokens, prompt_embeds,
                      negative_prompt_embeds, settings: GenerationSettings):
        """Step 2: (source, context, heard). ``context`` (B, F*77, D) or (B, 77, D) on the
        UNet's device, with the unconditional branch (the negative prompt, the same for every
        frame) stacked first when guided: (2B, ...); ``heard`` (B, window samples): the audio
        window the frames are made from."""
        heard = encoder_input = None
        if waveform is not None:
            window = AudioFrameWindow.for_inference(settings, settings.audio_window)
            heard = torch.stack([window.cut(w) for w in waveform])               # (B, window samples)
            encoder_input = window.encoder_input(heard)
        source, context = self._conditional_context(encoder_input, prompt, frame_tokens, prompt_embeds,
                                                    settings.num_frames)
        if _guided(settings.guidance_scale):
            uncond = (negative_prompt_embeds if negative_prompt_embeds is not None else encode_text(
                self.text_encoder, self.tokenizer, [settings.negative_prompt] * context.shape[0]))
            uncond = uncond.to(context).repeat(1, context.shape[1] // uncond.shape[1], 1)
            context = torch.cat([uncond, context])
        return source, context.to(self._execution_device, self.unet.dtype), heard

    def _conditional_context(self, waveform, prompt, frame_tokens, prompt_embeds,
                             num_frames: int) -> tuple[str, torch.Tensor]:
        """Which conditioning applies, and its context (B, F*77, D) or (B, 77, D)."""
        if prompt_embeds is not None:
            return "prompt_embeds", prompt_embeds
        if frame_tokens is not None:
            return "frame_tokens", self.encode_conditioning(None, prompt, num_frames, frame_tokens.shape[0],
                                                            frame_tokens)
        if waveform is not None and self.mapper is not None:
            return "audio", self.encode_conditioning(waveform, prompt, num_frames, waveform.shape[0])
        batch = 1 if waveform is None else waveform.shape[0]
        return "text", self.encode_conditioning(None, prompt, num_frames, batch)

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

    def prepare_latents(self, batch: int, settings: GenerationSettings,
                        generator: torch.Generator | list[torch.Generator] | None) -> torch.Tensor:
        """Step 3: the initial noise (B, C, F, h, w), drawn in float32 on the CPU (the same
        videos on every device), at the scale the scheduler starts from."""
        scale = vae_scale(self.vae.config.block_out_channels)
        shape = (batch, self.unet.config.in_channels, settings.num_frames,
                 settings.height // scale, settings.width // scale)
        latents = randn_tensor(shape, generator=generator, dtype=torch.float32)
        return latents.to(self._execution_device, self.unet.dtype) * self.scheduler.init_noise_sigma

    def denoise_step(self, latents: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                     guidance_scale: float) -> torch.Tensor:
        """Step 4, once: the UNet's noise prediction at timestep ``t`` (guided: both branches
        in one batch, ``context`` as :meth:`encode_inputs` stacks them) and the scheduler's
        step to the next, less noisy latents (B, C, F, h, w)."""
        guided = _guided(guidance_scale)
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        noise = self.unet(model_input, t, encoder_hidden_states=context).sample
        if guided:
            noise_uncond, noise_cond = noise.chunk(2)
            noise = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
        return self.scheduler.step(noise, t, latents).prev_sample

    # -- videos as long as their audio (avlib.pipeline.long_video) ---------------------------
    def generate_long(self, audio: np.ndarray, prompt: str | None = None, *, long_mode: str = "diagonal",
                      seed: int | None = None, **overrides: Any) -> AudioToVideoPipelineOutput:
        """A video as long as ``audio`` (samples,) with :attr:`settings` (``overrides`` as in
        ``__call__``), its windows denoised together (``long_mode`` "diagonal") or apart
        ("independent"); ``seed`` defaults to the settings' seed."""
        settings = self.call_settings(**overrides)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames, record = long_video_frames(self, audio, prompt, settings, long_mode, seed)  # (N, H, W, 3)
        return AudioToVideoPipelineOutput(frames=frames[None], fps=settings.fps, audio=audio[None],
                                          conditioning=record)

    def stream(self, audio_chunks, prompt: str | None = None, *, long_mode: str = "diagonal",
               seed: int | None = None, on_audio=None, **overrides: Any) -> Iterator[np.ndarray]:
        """Frames (H, W, 3) in order as audio chunks arrive (an iterable, or a callable that
        returns ``None`` at the end): the frames :meth:`generate_long` makes of the same audio;
        ``on_audio`` sees each window's audio as it is taken."""
        return stream_frames_of(self, audio_chunks, prompt, self.call_settings(**overrides), long_mode, seed,
                                on_audio)

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Step 5: (B, C, F, h, w) latents -> (B, F, H, W, 3) frames in [0, 1]."""
        batch, channels, frames, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, h, w)  # (B*F, C, h, w)
        flat = flat.to(self.vae.dtype) / self.vae.config.scaling_factor
        chunk = 1 if self.vae_slicing else flat.shape[0]
        images = torch.cat([self.vae.decode(part).sample for part in flat.split(chunk)])  # (B*F, 3, H, W)
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        images = images.reshape(batch, frames, *images.shape[1:]).permute(0, 1, 3, 4, 2)
        return images.cpu().numpy()

    def _record(self, source: str, prompt: str | None, heard, settings: GenerationSettings) -> dict:
        """What conditioned a call's videos, and the settings it ran with."""
        return {"source": source, "prompt": prompt,
                "audio_window": settings.audio_window if heard is not None else None,
                "scheduler": type(self.scheduler).__name__,
                **{name: getattr(settings, name) for name in (
                    "num_inference_steps", "guidance_scale", "num_frames", "height", "width", "fps",
                    "negative_prompt")}}


def _guided(guidance_scale: float) -> bool:
    """Classifier-free guidance runs only above 1 (at 1 it would be the conditional branch)."""
    return guidance_scale > 1.0


def _seeded(settings: GenerationSettings) -> torch.Generator | None:
    return torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None


def _replaced(settings: GenerationSettings, changes: Mapping[str, Any]) -> GenerationSettings:
    """``settings`` with ``changes``, failing with one line on a name or audio window that does not exist."""
    names = [field.name for field in dataclasses.fields(GenerationSettings)]
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise ConfigError(f"unknown generation setting(s) {', '.join(unknown)} (valid: {', '.join(names)})")
    chosen = dataclasses.replace(settings, **changes)
    if chosen.audio_window not in AUDIO_WINDOWS:
        raise ConfigError(f"audio_window='{chosen.audio_window}' is not one of: {', '.join(AUDIO_WINDOWS)}")
    return chosen


def _with_referenced_t2v(parts: dict[str, Any], source: str) -> dict[str, Any]:
    """``parts`` with the absent frozen networks loaded from ``source`` (float32, on the CPU)."""
    absent = [name for name, part in parts.items() if part is None]
    if not absent:
        return parts
    if not source:
        raise CheckpointError(f"the pipeline references its {', '.join(absent)} but records no "
                              "t2v_source: pass them, or t2v_source=")
    t2v = load_t2v(source)
    return {**parts, **{name: getattr(t2v, name) for name in absent}}


def _read_index(cls, folder: Path, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``model_index.json`` of a local folder or a hub repository, or one clear error."""
    try:
        return cls.load_config(str(folder), **_hub_options(kwargs))
    except Exception as exc:  # diffusers raises OSError, EnvironmentError, ValueError...
        raise CheckpointError(f"no pipeline at {folder}: not a folder holding {MODEL_INDEX}, nor a hub "
                              f"repository in the cache or reachable ({type(exc).__name__}); pass a run's "
                              "pipeline/ folder") from exc


def _run_settings(folder: Path) -> GenerationSettings | None:
    """The settings of the run whose ``pipeline/`` ``folder`` is (None when it is not one)."""
    run = Run(folder.parent)
    return GenerationSettings.of(run.read_config()) if run.config_file.is_file() else None


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
