"""Videos as long as their audio, made whole or streamed, from one denoising loop.

The mapper turns one window of audio (``num_frames / fps`` seconds, the window it was trained
on) into the tokens of that window's ``F`` frames; a video of any length is a sequence of such
windows. Generating them apart (``mode="independent"``: each window denoised from its own
noise, the baseline) leaves a seam at every window boundary. ``mode="diagonal"`` (the default)
denoises the frames as a queue, as FIFO-Diffusion does (Kim et al., NeurIPS 2024): the UNet
always sees ``S * g`` consecutive frames (``S`` denoising steps, ``g = F // S`` frames per
noise level), the oldest ``g`` nearly clean and the newest ``g`` pure noise. Each UNet call
moves every frame down one noise level; the ``g`` frames that reach the bottom leave the
queue finished and ``g`` new noisy frames enter at the top. A frame is thus denoised beside
the frames before and after it whichever audio window they belong to: there are no window
boundaries in the denoising, so no seams, and each frame still carries the tokens of the audio
under it. Per video second this is ``fps / g`` UNet calls of ``S * g`` frames, the same work
as independent windows (``fps / F`` windows of ``S`` calls of ``F`` frames).

The noise levels of one call differ per frame: :func:`frame_timesteps` gives the UNet's
ResNet blocks a time embedding per frame (diffusers' UNet3D takes one timestep per video),
through forward pre-hooks, its public extension point. Each frame group steps with DDIM
(``eta = 0``, the model's own scheduler config): a per-group step needs a sampler without
history, so both modes sample with DDIM whatever the run's ``inference.scheduler``.

Frame ``i``'s starting noise comes from its own seeded generator (:func:`frame_noise`), and
the queue advances the same way whether windows arrive all at once or one by one: a stream
(:meth:`LongVideoSampler.add_window` as audio arrives) gives the very frames of the whole-audio
mode with the same seed. The queue holds at most ``S * g`` frames and one window's contexts,
so memory does not grow with the audio's length.
"""
from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from diffusers import DDIMScheduler

from avlib.config import LONG_MODES
from avlib.data.window import AudioFrameWindow
from avlib.errors import ConfigError, MediaError
from avlib.media import SAMPLE_RATE
from avlib.pipeline.conditioning import encode_text
from avlib.pipeline.t2v import vae_scale


def frame_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Frame ``index``'s starting noise ``shape`` (C, h, w), from its own generator: the same
    whatever else is generated around it."""
    key = np.random.SeedSequence([seed, index]).generate_state(2)
    generator = torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))
    return torch.randn(shape, generator=generator)


def frame_time_embedding(unet, timesteps: torch.Tensor) -> torch.Tensor:
    """The UNet's time embedding for each of ``timesteps`` (n,): (n, D)."""
    t_emb = unet.time_proj(timesteps).to(unet.dtype)
    return unet.time_embedding(t_emb)


@contextlib.contextmanager
def frame_timesteps(unet, embedding: torch.Tensor) -> Iterator[None]:
    """Inside, every ResNet block of ``unet`` receives ``embedding`` (B*F, D), row ``b*F + f``
    frame ``f``'s time embedding, instead of the video's one timestep repeated per frame."""
    from diffusers.models.resnet import ResnetBlock2D

    def replace_temb(module, args, kwargs):
        if "temb" in kwargs:
            return args, {**kwargs, "temb": embedding}
        return (args[0], embedding, *args[2:]), kwargs

    handles = [module.register_forward_pre_hook(replace_temb, with_kwargs=True)
               for module in unet.modules() if isinstance(module, ResnetBlock2D)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_long_mode(mode: str) -> None:
    """Refuse a long mode that is not one of :data:`avlib.config.LONG_MODES`."""
    if mode not in LONG_MODES:
        raise ConfigError(f"long mode '{mode}' is not one of: {', '.join(LONG_MODES)}")


@dataclass
class FrameGroup:
    """Consecutive frames at one noise level: ``latents`` (C, g, h, w), ``context`` (g, 77, D)."""
    first: int                 # index of its first frame in the video
    latents: torch.Tensor
    context: torch.Tensor
    level: int = 0             # denoising steps taken


@dataclass(frozen=True)
class LongVideoSettings:
    """What a long video is generated with: the mapper's window (``num_frames`` at ``fps``),
    the denoising and the frame size, from an experiment's inference settings."""
    num_frames: int
    fps: float
    steps: int
    guidance_scale: float
    height: int
    width: int
    negative_prompt: str = ""
    seed: int = 0
    mode: str = "diagonal"
    audio_window: str = "aligned"

    @classmethod
    def from_settings(cls, settings, mode: str = "diagonal", seed: int | None = None) -> "LongVideoSettings":
        """From a pipeline's :class:`avlib.config.GenerationSettings` (``seed`` overrides theirs)."""
        check_long_mode(mode)
        seed = settings.seed if seed is None else seed
        return cls(settings.num_frames, settings.fps, settings.num_inference_steps, settings.guidance_scale,
                   settings.height, settings.width, settings.negative_prompt or "", seed or 0, mode,
                   settings.audio_window)

    @property
    def group(self) -> int:
        """Frames per noise level: ``F // S`` on the diagonal, the whole window otherwise."""
        return max(1, self.num_frames // self.steps) if self.mode == "diagonal" else self.num_frames

    @property
    def queue_frames(self) -> int:
        """Frames the UNet sees per call."""
        return self.steps * self.group if self.mode == "diagonal" else self.num_frames

    @property
    def window_samples(self) -> int:
        return round(self.num_frames / self.fps * SAMPLE_RATE)

    def frames_for(self, samples: int) -> int:
        """Frames of a video as long as ``samples`` of audio."""
        return max(1, round(samples / SAMPLE_RATE * self.fps))

    def record(self) -> dict:
        return {"long_mode": self.mode, "num_frames_per_window": self.num_frames, "fps": self.fps,
                "num_inference_steps": self.steps, "guidance_scale": self.guidance_scale,
                "height": self.height, "width": self.width, "frames_per_level": self.group,
                "queue_frames": self.queue_frames, "sampler": "ddim", "audio_window": self.audio_window}


SILENCE_PEAK = 1e-4   # an audio peak below this (float samples in [-1, 1]) carries nothing


class LongVideoSampler:
    """The frames of one long video, from its audio windows given in order.

    :meth:`add_window` encodes the next window's audio into its frames' contexts;
    :meth:`frames` then denoises what those allow and yields the finished frames (H, W, 3) in
    [0, 1], in order; ``frames(final=True)`` once the audio has ended finishes the rest.
    """

    def __init__(self, pipeline, settings: LongVideoSettings, prompt: str | None = None):
        self.pipeline, self.settings, self.prompt = pipeline, settings, prompt
        self.window = AudioFrameWindow(settings.num_frames, settings.fps, settings.audio_window)
        self.device, self.dtype = pipeline._execution_device, pipeline.unet.dtype
        self.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
        self.scheduler.set_timesteps(settings.steps, device=self.device)
        scale = vae_scale(pipeline.vae.config.block_out_channels)
        self.latent_shape = (pipeline.unet.config.in_channels, settings.height // scale, settings.width // scale)
        self.uncond = None                         # (1, 77, D): the unguided branch's context
        if settings.guidance_scale > 1.0:
            self.uncond = encode_text(pipeline.text_encoder, pipeline.tokenizer, [settings.negative_prompt])
            self.uncond = self.uncond.to(self.device, self.dtype)
        self.pending: deque[tuple[int, torch.Tensor]] = deque()   # (frame index, context (77, D))
        self.queue: deque[FrameGroup] = deque()                   # being denoised, oldest first
        self.frames_added = 0

    @property
    def audio_conditioned(self) -> bool:
        return self.pipeline.mapper is not None and self.pipeline.audio_encoder is not None

    def add_window(self, wave: np.ndarray | torch.Tensor, frames: int | None = None) -> None:
        """The next window's audio (up to ``window_samples``, zero-filled); ``frames``: how
        many of its frames the video keeps (fewer in a last, partial window)."""
        count = self.settings.num_frames if frames is None else frames
        contexts = self._window_contexts(wave)                  # (F, 77, D)
        for offset in range(count):
            self.pending.append((self.frames_added + offset, contexts[offset]))
        self.frames_added += count

    def _window_contexts(self, wave) -> torch.Tensor:
        """Each frame's context (F, 77, D) from the window's audio, through the encoder and
        mapper as trained; the prompt's alone for a pipeline without a mapper."""
        heard = self.window.encoder_input(self.window.cut(wave))[None]       # (1, samples)
        frames = self.settings.num_frames
        context = self.pipeline.encode_conditioning(heard if self.audio_conditioned else None,
                                                    self.prompt, frames, 1)  # (1, F*77, D) or (1, 77, D)
        context = context.to(self.device, self.dtype).reshape(-1, self.pipeline.tokenizer.model_max_length,
                                                              context.shape[-1])
        return context.expand(frames, -1, -1) if context.shape[0] == 1 else context

    def frames(self, final: bool = False) -> Iterator[np.ndarray]:
        """Denoise as far as the windows given allow; yield each finished frame (H, W, 3)."""
        while True:
            group = self._next_group(final)
            if group is None and not (final and self.queue):
                return
            if group is not None:
                self.queue.append(group)
            calls = 1 if self.settings.mode == "diagonal" else self.settings.steps
            for _ in range(calls):
                self._denoise_call()
            while self.queue and self.queue[0].level == self.settings.steps:
                done = self.queue.popleft()
                yield from self.pipeline.decode_latents(done.latents[None])[0]   # g x (H, W, 3)

    def _next_group(self, final: bool) -> FrameGroup | None:
        """The next ``g`` frames at full noise, once their contexts are in (fewer at the end)."""
        size = self.settings.group
        if len(self.pending) < size and not (final and self.pending):
            return None
        if self.settings.mode == "independent" and self.queue:
            return None                              # a window is finished before the next starts
        taken = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
        noise = torch.stack([frame_noise(self.settings.seed, index, self.latent_shape) for index, _ in taken],
                            dim=1)                                               # (C, g, h, w)
        context = torch.stack([context for _, context in taken])                 # (g, 77, D)
        return FrameGroup(taken[0][0], noise.to(self.device, self.dtype), context)

    def _denoise_call(self) -> None:
        """One UNet call over the queue, each frame at its group's noise level, and one DDIM
        step of each group."""
        unet, groups = self.pipeline.unet, list(self.queue)
        latents = torch.cat([g.latents for g in groups], dim=1)[None]            # (1, C, n, h, w)
        timesteps = torch.cat([self.scheduler.timesteps[g.level].repeat(g.latents.shape[1]) for g in groups])
        context = torch.cat([g.context for g in groups])                         # (n, 77, D)
        context = context.reshape(1, -1, context.shape[-1])                      # (1, n*77, D)
        model_input = latents
        if self.uncond is not None:
            model_input = torch.cat([latents, latents])                          # (2, C, n, h, w)
            context = torch.cat([self.uncond.repeat(1, len(timesteps), 1), context])
        embedding = frame_time_embedding(unet, timesteps).repeat(model_input.shape[0], 1)  # (B*n, D)
        with frame_timesteps(unet, embedding):
            noise = unet(model_input, timesteps[0], encoder_hidden_states=context).sample
        if self.uncond is not None:
            noise_uncond, noise_cond = noise.chunk(2)
            noise = noise_uncond + self.settings.guidance_scale * (noise_cond - noise_uncond)
        start = 0
        for group in groups:
            end = start + group.latents.shape[1]
            t = self.scheduler.timesteps[group.level]
            group.latents = self.scheduler.step(noise[:, :, start:end], t, latents[:, :, start:end]).prev_sample[0]
            group.level += 1
            start = end


def audio_windows(chunks: Iterable[np.ndarray], window_samples: int) -> Iterator[tuple[np.ndarray, int]]:
    """Audio chunks (any lengths) -> ``(window, samples so far)`` per full window of
    ``window_samples``, then the rest (possibly empty) once the chunks end."""
    buffer, held, received = [], 0, 0
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        buffer.append(chunk)
        held += chunk.size
        received += chunk.size
        while held >= window_samples:
            joined = np.concatenate(buffer)
            buffer, held = [joined[window_samples:]], held - window_samples
            yield joined[:window_samples], received - held
    yield (np.concatenate(buffer) if buffer else np.zeros(0, np.float32)), received


def called_until_none(read: Callable[[], np.ndarray | None]) -> Iterator[np.ndarray]:
    """What ``read()`` returns, call after call, until it returns ``None``."""
    while (chunk := read()) is not None:
        yield chunk


def stream_frames(pipeline, chunks: Iterable[np.ndarray] | Callable[[], np.ndarray | None],
                  settings: LongVideoSettings, prompt: str | None = None,
                  on_audio: Callable[[np.ndarray], None] | None = None) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) in [0, 1], in order, as 16 kHz audio ``chunks`` arrive (an iterable,
    or a callable returning the next chunk and ``None`` at the end). The video is as long as
    the audio, ``round(seconds * fps)`` frames. ``on_audio`` sees every window's audio as it
    is taken (to mux it beside the frames). Raises :class:`MediaError` for audio that ends
    empty or silent."""
    if callable(chunks):
        chunks = called_until_none(chunks)
    sampler = LongVideoSampler(pipeline, settings, prompt)
    peak = 0.0
    for window, received in audio_windows(chunks, settings.window_samples):
        peak = max(peak, float(np.abs(window).max(initial=0.0)))
        if on_audio is not None and window.size:
            on_audio(window)
        if window.size == settings.window_samples:
            sampler.add_window(window)
            yield from sampler.frames()
            continue
        if received == 0:
            raise MediaError("the audio ended before any sample arrived: give audio at least "
                             f"{1 / settings.fps:.3f} s long")
        if sampler.audio_conditioned:
            require_sound(peak)
        remaining = settings.frames_for(received) - sampler.frames_added
        if remaining > 0:
            sampler.add_window(window, frames=remaining)
        yield from sampler.frames(final=True)


def require_sound(peak: float) -> None:
    """Audio whose peak is below :data:`SILENCE_PEAK` gives a mapper nothing to hear."""
    if peak < SILENCE_PEAK:
        raise MediaError(f"the audio is silent (peak {peak:.1e}): the mapper has no sound to "
                         "turn into video; give audio with sound in it")


def generate_long(pipeline, audio: np.ndarray, settings: LongVideoSettings,
                  prompt: str | None = None) -> np.ndarray:
    """The frames (N, H, W, 3) of a video as long as ``audio`` (samples,) at 16 kHz: the
    stream of the whole audio at once, so both give the same frames."""
    frames = list(stream_frames(pipeline, [audio], settings, prompt))
    return np.stack(frames)


def require_audio_mapper(pipeline) -> None:
    """A stream turns audio into video through a mapper: refuse a pipeline without one."""
    if pipeline.mapper is None or pipeline.audio_encoder is None:
        raise ConfigError("this run's pipeline has no audio mapper, so its video cannot follow a stream "
                          "of audio: pass a run trained by `avlib train` (its folder holds pipeline/mapper)")


@torch.no_grad()
def long_video_frames(pipeline, audio: np.ndarray, prompt: str | None, settings, long_mode: str = "diagonal",
                      seed: int | None = None) -> tuple[np.ndarray, dict]:
    """The frames (N, H, W, 3) of one video as long as ``audio`` (samples,) with the pipeline's
    ``settings`` (:class:`avlib.config.GenerationSettings`), and what conditioned them."""
    plan = LongVideoSettings.from_settings(settings, long_mode, seed)
    source = "audio" if pipeline.mapper is not None and pipeline.audio_encoder is not None else "text"
    if source == "audio":
        require_sound(float(np.abs(audio).max(initial=0.0)))    # before any window is generated
    frames = generate_long(pipeline, audio, plan, prompt)                            # (N, H, W, 3)
    record = {"source": source, "prompt": prompt, "seed": plan.seed, "frames": len(frames),
              "scheduler": "DDIMScheduler", **plan.record()}
    return frames, record


@torch.no_grad()
def stream_frames_of(pipeline, audio_chunks, prompt: str | None, settings, long_mode: str = "diagonal",
                     seed: int | None = None, on_audio=None) -> Iterator[np.ndarray]:
    """:func:`stream_frames` with the pipeline's ``settings`` (a run with an audio mapper only)."""
    require_audio_mapper(pipeline)
    plan = LongVideoSettings.from_settings(settings, long_mode, seed)
    yield from stream_frames(pipeline, audio_chunks, plan, prompt, on_audio)
