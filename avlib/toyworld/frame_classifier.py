"""A small CNN that names the class of a frame: the judge of "did the video show the right thing".

Trained on the toy world's real frames (seconds on a CPU); a video's class is the argmax of
its frames' mean log-probabilities.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from avlib.cache import cache_key
from avlib.data.synthetic import CLASSES
from avlib.io import atomic_path, cache_dir
from avlib.toyworld.data import toy_clips


class FrameClassifier(nn.Module):
    """Frames (N, 3, H, W) in [-1, 1] -> logits (N, num_classes)."""

    def __init__(self, classes: tuple[str, ...], width: int = 16):
        super().__init__()
        self.classes = tuple(classes)
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, len(classes)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)

    @torch.no_grad()
    def classify_video(self, frames: np.ndarray) -> str:
        """Frames (F, H, W, 3) in [0, 1] (or uint8) -> the class name."""
        frames = np.asarray(frames, dtype=np.float32)
        frames = frames / 255.0 if frames.max() > 1.0 else frames
        x = torch.from_numpy(frames).permute(0, 3, 1, 2) * 2 - 1               # (F, 3, H, W)
        return self.classes[int(F.log_softmax(self(x), dim=-1).mean(0).argmax())]


def train_frame_classifier(clips: list[dict], classes: tuple[str, ...], steps: int = 150,
                           batch_size: int = 64, seed: int = 0, progress: bool = True) -> FrameClassifier:
    """Fit on every frame of ``clips`` (dicts with ``frames`` (F, 3, H, W) and ``label``)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FrameClassifier(classes)
    frames = torch.cat([c["frames"] for c in clips])                           # (N*F, 3, H, W)
    labels = torch.tensor([classes.index(c["label"]) for c in clips]).repeat_interleave(clips[0]["frames"].shape[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in tqdm(range(steps), desc="frame classifier", disable=not progress):
        index = torch.randint(len(frames), (batch_size,), generator=generator)
        # Light pixel noise so generated (slightly noisy) frames are judged by content.
        x = frames[index] + 0.1 * torch.randn(frames[index].shape, generator=generator)
        loss = F.cross_entropy(model(x), labels[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model.eval().requires_grad_(False)


JUDGE_CLIPS_PER_CLASS = 32


@lru_cache(maxsize=1)
def toy_class_judge(seed: int = 0) -> FrameClassifier:
    """The frame classifier trained on the toy world's training clips of all three classes: what
    names the class a tiny-profile video shows (notebook 05's Figure 2). Seeded; trained once
    (seconds) and kept in avlib's cache folder, so the notebooks of one ``make demo`` share it."""
    key = cache_key("frame_classifier", content="", weights="", dtype="float32",
                    settings={"seed": seed, "classes": list(CLASSES), "clips_per_class": JUDGE_CLIPS_PER_CLASS})
    path = cache_dir() / "toyworld" / f"frame_classifier_{key[:16]}.safetensors"
    if path.is_file():
        model = FrameClassifier(tuple(CLASSES))
        model.load_state_dict(load_file(path))
        return model.eval().requires_grad_(False)
    model = train_frame_classifier(toy_clips(per_class=JUDGE_CLIPS_PER_CLASS, seed=seed), tuple(CLASSES), seed=seed, progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(model.state_dict(), str(tmp))
    return model
