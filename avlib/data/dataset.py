"""The clip loader: a torch ``Dataset`` of training examples cut from a dataset folder.

An example is a dict::

    frames    float32 [F, 3, H, W] in [-1, 1]   F frames at the configured fps and size
    waveform  float32 [clip_seconds * 16000]    16 kHz mono, starting with the first frame
    label     str                               the clip's class
    label_id  int                               its index in the configured classes
    prompt    str                               the text prompt ("" for audio only)
    clip_id   str
    start_s   float                             where in the clip the example starts

Frames are resized to cover H x W (aspect kept) and centre-cropped. Audio comes from
``{clip_id}.wav`` (the mp4's track if there is no wav) at any rate or channel count.
A clip shorter than an example is padded (last frame repeated, audio zero-filled) or
rejected with an error, per ``DataConfig.short_clips``.

Start offsets: ``start="zero"`` (evaluation) starts every example at 0 s; ``"random"``
draws it uniformly from a ``torch.Generator`` seeded by (seed, epoch, index), so the same
seed gives the same examples whatever the worker count or order; call :meth:`set_epoch`
for new draws each epoch, or never, for a fixed seeded evaluation set. ``"whole"`` (training)
gives the whole clip, at least one example long: training caches its frozen features once
and crops a random aligned window per step (:mod:`avlib.data.window`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from avlib.config import DataConfig
from avlib.data.curate import clip_files
from avlib.data.manifests import ClipRow, default_manifest, leaked_clips, read_manifest, select
from avlib.errors import ConfigError, MediaError
from avlib.media import SAMPLE_RATE, load_audio, read_video

START_MODES = ("zero", "random", "whole")


@dataclass(frozen=True)
class ClipSampler:
    """Cuts one example out of a decoded clip: frames at a rate and size, and the audio under them."""

    num_frames: int
    fps: float
    height: int
    width: int
    clip_seconds: float
    short_clips: str = "pad"            # pad | reject
    sample_rate: int = SAMPLE_RATE

    @classmethod
    def from_config(cls, data: DataConfig) -> ClipSampler:
        return cls(data.num_frames, data.fps, data.height, data.width, data.clip_seconds, data.short_clips)

    @property
    def span_s(self) -> float:
        """Seconds an example covers: the frames' span or the audio's, whichever is longer."""
        return max(self.num_frames / self.fps, self.clip_seconds)

    def latest_start(self, duration_s: float) -> float:
        return max(0.0, duration_s - self.span_s)

    def check_length(self, duration_s: float, name: str) -> None:
        """Raise for a clip too short for one example, unless short clips are padded."""
        half_frame = 0.5 / self.fps         # container durations round to frames
        if self.short_clips == "reject" and duration_s < self.span_s - half_frame:
            raise MediaError(
                f"clip {name} lasts {duration_s:.2f} s, shorter than the {self.span_s:g} s an "
                "example needs (set data.short_clips=pad, or use fewer frames or seconds)")

    def frames(self, video: np.ndarray, video_fps: float, start_s: float,
               count: int | None = None) -> torch.Tensor:
        """(N, H, W, 3) uint8 at ``video_fps`` -> [count or num_frames, 3, height, width] in [-1, 1]."""
        times = start_s + np.arange(count or self.num_frames) / self.fps
        # The frame on screen at time t; past the end, the last frame (padding).
        index = np.minimum(np.floor(times * video_fps + 1e-6).astype(int), len(video) - 1)
        picked = np.stack([self._cover(video[i]) for i in index])            # (F, H, W, 3)
        frames = torch.from_numpy(picked).permute(0, 3, 1, 2).float()        # (F, 3, H, W)
        return frames / 127.5 - 1.0

    def _cover(self, frame: np.ndarray) -> np.ndarray:
        """Resize so the frame covers height x width, keeping its aspect, then centre-crop."""
        h, w = frame.shape[:2]
        scale = max(self.height / h, self.width / w)
        size = (max(self.width, round(w * scale)), max(self.height, round(h * scale)))
        resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (size[1] - self.height) // 2, (size[0] - self.width) // 2
        return resized[top:top + self.height, left:left + self.width]

    def audio(self, wave: np.ndarray, start_s: float, seconds: float | None = None) -> torch.Tensor:
        """Mono ``wave`` at ``sample_rate`` -> [(seconds or clip_seconds) * sample_rate],
        zero-padded at the end."""
        start = round(start_s * self.sample_rate)
        length = round((seconds or self.clip_seconds) * self.sample_rate)
        out = np.zeros(length, dtype=np.float32)
        piece = wave[start:start + length]
        out[:len(piece)] = piece
        return torch.from_numpy(out)


class ClipDataset(Dataset):
    """Examples from the clips of ``rows`` in folder ``root`` (see the module docstring)."""

    def __init__(self, rows: Sequence[ClipRow], root: str | Path, classes: Sequence[str],
                 sampler: ClipSampler, *, prompt: str | None = None, start: str = "zero", seed: int = 0):
        if start not in START_MODES:
            raise ConfigError(f"start '{start}' is not one of: {', '.join(START_MODES)}")
        unknown = sorted({row.label for row in rows} - set(classes))
        if unknown:
            raise ConfigError(f"clips of class {', '.join(map(repr, unknown))} are not in classes "
                              f"{list(classes)} (add them to data.classes)")
        self.rows, self.root, self.classes = list(rows), Path(root), list(classes)
        self.sampler, self.prompt, self.start, self.seed = sampler, prompt or "", start, seed
        self.epoch = 0

    @classmethod
    def from_config(cls, data: DataConfig, split: str, *, prompt: str | None = None,
                    start: str = "zero", seed: int = 0) -> ClipDataset:
        """The ``split`` (train | test) of the configured dataset, keeping the clips on disk.

        The manifest is ``data.manifest``, else the dataset's shipped one (``synth``:
        ``{data.root}/manifest.csv``). Clips missing from ``data.root`` are left out with a
        warning (VGGSound is never complete); none at all is an error.
        """
        if data.root is None:
            raise ConfigError("data.root is not set: point it at a folder of clips (made by "
                              "`avlib data curate --out DIR` or `avlib data synth --out DIR`)")
        root = Path(data.root)
        if data.manifest:
            manifest = Path(data.manifest)
        elif data.dataset == "synth":
            manifest = root / "manifest.csv"
        else:
            manifest = default_manifest(data.dataset)
        every_row = read_manifest(manifest)
        if data.split == "repo" and leaked_clips(every_row):
            warnings.warn(f"{manifest.name}: {len(leaked_clips(every_row))} clips are in both train "
                          "and test (as in the report repository); data.split=report avoids that",
                          stacklevel=2)
        rows = select(every_row, split, data.split, data.classes, data.split_seed)
        present = [row for row in rows if clip_files(root, row.clip_id)[0].is_file()]
        if not present:
            raise MediaError(f"none of the {len(rows)} {split} clips of {manifest.name} are in {root} "
                             f"(run `avlib data status --manifest {manifest} --root {root}`)")
        if len(present) < len(rows):
            warnings.warn(f"{len(rows) - len(present)} of {len(rows)} {split} clips of "
                          f"{manifest.name} are missing from {root}; using the other {len(present)}",
                          stacklevel=2)
        return cls(present, root, data.classes, ClipSampler.from_config(data),
                   prompt=prompt, start=start, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        """Random starts are drawn afresh for each epoch (same seed and epoch, same draws)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        mp4, wav = clip_files(self.root, row.clip_id)
        video, video_fps = read_video(mp4)                                    # (N, h, w, 3) uint8
        wave = load_audio(wav if wav.is_file() else mp4, self.sampler.sample_rate)
        duration = len(video) / video_fps
        self.sampler.check_length(duration, mp4.name)
        start_s = self._start(index, duration, video_fps)
        count = None
        if self.start == "whole":  # every frame of the clip, and the audio under them
            count = max(self.sampler.num_frames, math.floor(duration * self.sampler.fps + 1e-6))
        return {
            "frames": self.sampler.frames(video, video_fps, start_s, count),
            "waveform": self.sampler.audio(wave, start_s, count and count / self.sampler.fps),
            "label": row.label,
            "label_id": self.classes.index(row.label),
            "prompt": self.prompt,
            "clip_id": row.clip_id,
            "start_s": start_s,
        }

    def _start(self, index: int, duration_s: float, video_fps: float) -> float:
        latest = self.sampler.latest_start(duration_s)
        if self.start != "random" or latest == 0.0:
            return 0.0
        key = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        generator = torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))
        start = torch.rand((), generator=generator).item() * latest
        # On the video's frame grid: the first frame then begins exactly where the audio does.
        return math.floor(start * video_fps) / video_fps
