"""The toy world's clips: synthetic clips in the canonical layout, with per-frame state captions.

Audio tells *when* something happens, not *where*: in the synthetic world a dog starts
anywhere and hops left or right at random, and a mapper that only hears the bark cannot know
either. So the toy world draws every clip in the synthetic world's canonical layout (the dog
starts on the left and hops right, the ball starts on the left, every bolt starts from the top
centre): a frame's state -- before or after the event -- then fixes what the frame shows, and
text, or audio tokens, can ask for it frame by frame. (Mirroring random clips, our first
design, fixed only the direction: the per-frame state then said little about the frame, and
the mapper learnt the class but not the timing; see ``RESULTS.md``.)

Captions describe each frame's visible state: the class name before the first event and the
class name plus a state word after it (``"dog"`` / ``"dog jumps"``, ``"thunder"`` /
``"thunder lightning"``, ``"volleyball"`` / ``"volleyball bounces"``). The word toggles with
every further event (state parity), so a caption change between adjacent frames always marks
an event. Clips are 1 s at 8 fps and 32x32 (the tiny profile), which holds exactly one event.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avlib.config import load_config
from avlib.data.synthetic import CLASSES, clip_seed, events_so_far, synth_clip
from avlib.errors import ConfigError
from avlib.named_weights import CAVP_FILE, T2V_SUBDIR

STATE_WORDS = {"dog": "jumps", "thunder": "lightning", "volleyball": "bounces"}
# Other wordings of each frame state, for `avlib toyworld build --wordings N`: the caption
# first, then what the frame shows in other words. Every added word is one token of the tiny
# tokenizer (tested: some of its listed words, e.g. "grass", "rain", "dark", still split into
# pieces, and so does "volleyball" of the captions themselves, as "volley" + "ball").
CAPTION_WORDINGS = {
    "dog": ("dog", "a dog", "the dog on the left", "a dog on the field"),
    "dog jumps": ("dog jumps", "a dog jumps right", "the dog jumps", "the dog on the right"),
    "thunder": ("thunder", "a storm at night", "the night sky", "storm"),
    "thunder lightning": ("thunder lightning", "a flash of lightning", "lightning in the sky", "storm with lightning"),
    "volleyball": ("volleyball", "a ball on the court", "the ball on the left", "sports court"),
    "volleyball bounces": ("volleyball bounces", "a ball bounces", "the ball on the right", "ball bounces right"),
}
MAX_WORDINGS = min(len(w) for w in CAPTION_WORDINGS.values())
SECONDS, FPS, SIZE = 1.0, 8.0, 32
LAYOUT = "canonical"  # avlib.data.synthetic's layout of every toy clip
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


def reword(captions: list[list[str]], num_wordings: int, generator: torch.Generator) -> list[list[str]]:
    """B clips' F captions, each frame's replaced by one of the first ``num_wordings`` wordings
    of its state (:data:`CAPTION_WORDINGS`), drawn uniformly per frame: (B, F) draws."""
    choice = torch.randint(num_wordings, (len(captions), len(captions[0])), generator=generator)   # (B, F)
    return [[CAPTION_WORDINGS[caption][k] for caption, k in zip(clip, row)]
            for clip, row in zip(captions, choice.tolist())]


def toy_clip(label: str, index: int, seed: int = 0, spec: ToySpec = ToySpec()) -> dict:
    """Clip ``index`` of ``label``: the dict :func:`avlib.train.train` takes, plus captions.

    ``frames`` (F, 3, H, W) float in [-1, 1], ``waveform`` (samples,) 16 kHz, ``clip_id``,
    ``label``, ``captions`` (F strings) and ``event_frames``.
    """
    clip = synth_clip(label, clip_seed(seed, label, index), seconds=spec.seconds, fps=spec.fps,
                      size=spec.size, layout=LAYOUT)
    video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 127.5 - 1   # (F, 3, H, W)
    event_frames = np.round(clip.video_events_s * spec.fps).astype(int)
    return {"frames": video, "waveform": torch.from_numpy(clip.wave), "clip_id": f"toy_{label}_{index}",
            "label": label, "captions": frame_captions(label, spec.num_frames, event_frames),
            "event_frames": event_frames}


def rgb_frames(clip: dict) -> np.ndarray:
    """A toy clip's frames as (F, H, W, 3) in [0, 1], the layout videos are written in."""
    return clip["frames"].permute(0, 2, 3, 1).numpy() / 2 + 0.5


def toy_clips(classes=CLASSES, per_class: int = 32, split: str = "train", seed: int = 0,
              spec: ToySpec = ToySpec()) -> list[dict]:
    """``per_class`` clips of each class, interleaved by class; ``split`` "test" gives
    held-out clips (other seeds)."""
    offset = TEST_OFFSET if split == "test" else 0
    return [toy_clip(label, offset + i, seed, spec)
            for i in range(per_class) for label in classes]


def toyworld_config(weights: Path, overrides: dict | None = None, classes=CLASSES):
    """The tiny profile of the report's experiment for ``classes`` (one class: that class's
    experiment; several: multiclass) on the toy world's stand-ins."""
    if (not isinstance(classes, (list, tuple)) or not classes or not all(c in CLASSES for c in classes)
            or len(set(classes)) < len(classes)):
        raise ConfigError(f"classes={classes!r}: toy world classes must be among {', '.join(CLASSES)}, "
                          "a list of one or more, each once")
    classes = list(classes)
    return load_config(classes[0] if len(classes) == 1 else "multiclass", "tiny", {
        "data.classes": classes, "model.pretrained": str(weights / T2V_SUBDIR),
        "encoder.name": "cavp", "encoder.checkpoint": str(weights / CAVP_FILE),
        **(overrides or {})})
