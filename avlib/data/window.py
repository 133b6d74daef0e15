"""One audio-to-frames protocol for training, sampling and generation.

An example is a window of ``num_frames`` frames at ``fps`` and the audio under them: the same
``num_frames / fps`` seconds (``data.clip_seconds`` in training, ``inference.audio_seconds``
at inference; config validation keeps them equal). Training draws a new start per step:
the frozen features of the whole clip (audio vectors, VAE latents) are computed once and
cached, and each step crops an aligned window out of them. The crop starts on a frame and on
the audio encoder's time grid (CAVP: 250 ms; BEATs: 160 ms steps of 8 vectors, rounded to the
nearest step), so frame ``f`` always meets the audio of its own time. Near the window's edges
the cropped vectors saw some audio outside it (the encoder's receptive field), which the
encoder run on the window alone at inference does not: the cost of caching.

``report_padded`` reproduces the report repository instead (``train_cavp.py``): the window's
audio zero-padded to 10 s before CAVP, so 40 vectors are regrouped into the 24 frames and
most frames see padding. It cannot be cropped from a cached clip, so its audio is encoded at
every step. It is a quirk to reproduce, not a default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avlib.config import REPORT_PADDED_SECONDS, DataConfig, InferenceConfig
from avlib.media import SAMPLE_RATE


@dataclass(frozen=True)
class AudioFrameWindow:
    num_frames: int
    fps: float
    mode: str = "aligned"             # avlib.config.AUDIO_WINDOWS
    sample_rate: int = SAMPLE_RATE

    @classmethod
    def for_training(cls, data: DataConfig) -> AudioFrameWindow:
        return cls(data.num_frames, data.fps, data.audio_window)

    @classmethod
    def for_inference(cls, inference: InferenceConfig, mode: str = "aligned") -> AudioFrameWindow:
        return cls(inference.num_frames, inference.fps, mode)

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def samples(self) -> int:
        return round(self.seconds * self.sample_rate)

    def cut(self, wave: np.ndarray | torch.Tensor, start_s: float = 0.0) -> torch.Tensor:
        """The window's audio from ``start_s``: ``(samples,)``, zero-filled past the end."""
        wave = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        start = round(start_s * self.sample_rate)
        piece = wave[start:start + self.samples]
        return torch.nn.functional.pad(piece, (0, self.samples - piece.shape[0]))

    def encoder_input(self, window_wave: torch.Tensor) -> torch.Tensor:
        """What the audio encoder hears for a window: the window itself, or in
        ``report_padded`` mode the window zero-padded to 10 s (``(..., samples)``)."""
        if self.mode != "report_padded":
            return window_wave
        target = round(REPORT_PADDED_SECONDS * self.sample_rate)
        return torch.nn.functional.pad(window_wave, (0, max(0, target - window_wave.shape[-1])))

    def frame_grid(self, encoder) -> int:
        """Frames per encoder time step when that is a whole number (CAVP at 12 fps: 3),
        else 1: starts on this grid meet the audio vectors exactly."""
        frames_per_step = self.fps * encoder.vectors_per_step / encoder.frame_rate
        return round(frames_per_step) if abs(frames_per_step - round(frames_per_step)) < 1e-6 else 1

    def draw_start(self, total_frames: int, seed: int, epoch: int, index: int, grid: int = 1) -> int:
        """A start frame in ``[0, total_frames - num_frames]`` on multiples of ``grid``,
        fixed by (seed, epoch, index)."""
        choices = (total_frames - self.num_frames) // grid + 1
        if choices <= 1:
            return 0
        key = np.random.SeedSequence([seed, epoch, index]).generate_state(2)
        generator = torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))
        return grid * int(torch.randint(0, choices, (), generator=generator))

    def crop_vectors(self, vectors: torch.Tensor, start_frame: int, encoder) -> torch.Tensor:
        """The audio vectors ``(T', D)`` of a whole clip -> the window's ``(n, D)``, starting
        at frame ``start_frame``'s time on the encoder's step grid."""
        group = encoder.vectors_per_step
        steps_per_second = encoder.frame_rate / group
        count = encoder.num_vectors(self.samples)
        first = round(start_frame / self.fps * steps_per_second) * group
        first = max(0, min(first, (vectors.shape[0] - count) // group * group))
        return vectors[first:first + count]

