"""The toy world's clips: synthetic clips, canonically mirrored, with per-frame state captions.

Audio tells *when* something happens, not *which way* it goes: a dog in the synthetic world
hops left or right at random, and a mapper that only hears the bark cannot know which. So the
toy world mirrors every clip (frames only; the sound is unchanged) so that its first event moves
the scene's centre of change rightwards. Then "what an event looks like" is fixed per class
(the dog hops right, the ball crosses to the right side, the bolt strikes right of the
centre) and text -- or audio tokens -- can ask for it frame by frame.

Captions describe each frame's visible state: the class name before the first event and the
class name plus a state word after it (``"dog"`` / ``"dog jumps"``, ``"thunder"`` /
``"thunder lightning"``, ``"volleyball"`` / ``"volleyball bounces"``). The word toggles with
every further event (state parity), so a caption change between adjacent frames always marks
an event. Clips are 1 s at 8 fps and 32x32 (the tiny profile), which holds exactly one event.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avlib.data.synthetic import CLASSES, clip_seed, events_so_far, synth_clip

STATE_WORDS = {"dog": "jumps", "thunder": "lightning", "volleyball": "bounces"}
SECONDS, FPS, SIZE = 1.0, 8.0, 32
TEST_OFFSET = 1_000_000  # held-out clips use indices from here on: never seen in training


@dataclass(frozen=True)
class ToySpec:
    """The toy world's clip format (the tiny profile's)."""

    seconds: float = SECONDS
    fps: float = FPS
    size: int = SIZE

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))


def frame_captions(label: str, num_frames: int, event_frames: np.ndarray) -> list[str]:
    """One caption per frame: ``label``, plus the state word while an odd number of events
    has happened."""
    states = events_so_far(num_frames, event_frames)
    return [f"{label} {STATE_WORDS[label]}" if s % 2 else label for s in states]


def class_backgrounds(spec: ToySpec = ToySpec(), seed: int = 0, n: int = 16) -> dict[str, np.ndarray]:
    """Per class, the per-pixel median frame over ``n`` clips (H, W, 3) in [0, 1]: the scene
    without its moving object (objects move between clips, the scenery does not)."""
    out = {}
    for label in CLASSES:
        frames = np.concatenate([synth_clip(label, clip_seed(seed + 7, label, i), seconds=spec.seconds,
                                            fps=spec.fps, size=spec.size).frames for i in range(n)])
        out[label] = np.median(frames, axis=0) / 255.0
    return out


def centre_of_change(frame: np.ndarray, background: np.ndarray) -> float:
    """Horizontal centroid (0..1) of where ``frame`` (H, W, 3) in [0, 1] differs from ``background``."""
    weight = np.abs(frame - background).sum(axis=(0, 2))          # (W,)
    columns = (np.arange(frame.shape[1]) + 0.5) / frame.shape[1]
    return float((weight * columns).sum() / max(weight.sum(), 1e-8))


def toy_clip(label: str, index: int, backgrounds: dict[str, np.ndarray], seed: int = 0,
             spec: ToySpec = ToySpec()) -> dict:
    """Clip ``index`` of ``label``: the dict :func:`avlib.train.train` takes, plus captions.

    ``frames`` (F, 3, H, W) float in [-1, 1] (mirrored as the module docstring says),
    ``waveform`` (samples,) 16 kHz, ``clip_id``, ``label``, ``captions`` (F strings),
    ``event_frames`` and ``mirrored``.
    """
    clip = synth_clip(label, clip_seed(seed, label, index), seconds=spec.seconds, fps=spec.fps,
                      size=spec.size)
    frames = clip.frames / 255.0                                   # (F, H, W, 3)
    event_frames = np.round(clip.video_events_s * spec.fps).astype(int)
    first = event_frames[0]
    background = backgrounds[label]
    mirrored = centre_of_change(frames[first], background) < centre_of_change(frames[first - 1], background)
    if mirrored:
        frames = frames[:, :, ::-1]
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() * 2 - 1
    return {"frames": video, "waveform": torch.from_numpy(clip.wave), "clip_id": f"toy_{label}_{index}",
            "label": label, "captions": frame_captions(label, spec.num_frames, event_frames),
            "event_frames": event_frames, "mirrored": bool(mirrored)}


def rgb_frames(clip: dict) -> np.ndarray:
    """A toy clip's frames as (F, H, W, 3) in [0, 1], the layout videos are written in."""
    return clip["frames"].permute(0, 2, 3, 1).numpy() / 2 + 0.5


def toy_clips(classes=CLASSES, per_class: int = 32, split: str = "train", seed: int = 0,
              spec: ToySpec = ToySpec()) -> list[dict]:
    """``per_class`` clips of each class, interleaved by class; ``split`` "test" gives
    held-out clips (other seeds)."""
    backgrounds = class_backgrounds(spec, seed)
    offset = TEST_OFFSET if split == "test" else 0
    return [toy_clip(label, offset + i, backgrounds, seed, spec)
            for i in range(per_class) for label in classes]
