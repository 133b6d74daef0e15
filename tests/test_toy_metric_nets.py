"""The toy metric networks measure what their metrics claim, on the synthetic world's known answers.

* toy CLIP: a held-out real clip is closer to its own class name than to any other (a random
  CLIP gets this at chance);
* toy FVD: two sets of real clips of a class are close, a set of another class is far, and
  frozen clips (one frame repeated) are far from the moving originals.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avlib.data.synthetic import CLASSES
from avlib.metrics.clipsim import frame_averaged_cosine
from avlib.metrics.fvd import frechet_distance
from avlib.toyworld.data import rgb_frames, toy_clips
from avlib.toyworld.metric_nets import (MetricNetsConfig, build_metric_nets, frozen, toy_backbone,
                                        toy_clip_scorer)


def uint8(clip: dict) -> np.ndarray:
    return (rgb_frames(clip) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def held_out():
    """Two disjoint held-out sets (other seeds than the networks' training clips), 40 per class."""
    return toy_clips(per_class=40, split="test", seed=11), toy_clips(per_class=40, split="test", seed=12)


def test_toy_clipsim_names_the_class_of_real_clips(held_out):
    scorer = toy_clip_scorer()
    assert "TOY CLIP" in scorer.describe()["model"]
    clips = held_out[0][:60]
    scores = np.array([[frame_averaged_cosine(scorer.image_embeddings(uint8(c)), scorer.text_embedding(k))
                        for k in CLASSES] for c in clips])
    labels = np.array([CLASSES.index(c["label"]) for c in clips])
    own = np.eye(len(CLASSES), dtype=bool)[labels]
    assert (scores.argmax(1) == labels).mean() >= 0.95
    assert scores[own].mean() - scores[~own].mean() > 0.3


def test_toy_clipsim_reads_written_videos(tmp_path):
    from avlib.media import write_video

    clip = toy_clips(("volleyball",), per_class=1, split="test", seed=3)[0]
    path = write_video(tmp_path / "v.mp4", rgb_frames(clip), 8.0)
    scorer = toy_clip_scorer()
    own = scorer.score_video(path, "volleyball")
    assert all(own > scorer.score_video(path, other) for other in ("dog", "thunder"))


def _features(backbone, clips, still: bool = False) -> np.ndarray:
    x = torch.stack([backbone.preprocessing(uint8(c))[0] for c in clips])   # (N, 3, T, R, R)
    if still:
        x = frozen(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return backbone.model(x).double().numpy()


def test_toy_fvd_separates_classes_and_motion(held_out):
    backbone = toy_backbone()
    assert "TOY I3D" in backbone.name
    (a, b), labels = held_out, np.array([c["label"] for c in held_out[0]])
    fa, fb, still = _features(backbone, a), _features(backbone, b), _features(backbone, a, still=True)
    for label in CLASSES:
        same = frechet_distance(fa[labels == label], fb[labels == label])
        others = [frechet_distance(fa[labels == label], fb[labels == k]) for k in CLASSES if k != label]
        frozen_vs_moving = frechet_distance(still[labels == label], fb[labels == label])
        assert min(others) > 100 * same, (label, same, others)
        assert frozen_vs_moving > 10 * same, (label, same, frozen_vs_moving)


def test_build_is_seeded_and_loads_by_name(tmp_path):
    cfg = MetricNetsConfig(clips_per_class=2, clip_steps=2, video_steps=2, batch_size=4)
    first, second = build_metric_nets(tmp_path / "a", cfg, False), build_metric_nets(tmp_path / "b", cfg, False)
    nets = [toy_backbone(folder=first).model, toy_backbone(folder=second).model]
    assert all(torch.equal(x, y) for x, y in zip(*(n.state_dict().values() for n in nets)))
    scorers = [toy_clip_scorer(first), toy_clip_scorer(second)]
    assert torch.equal(*(s.text_embedding("dog") for s in scorers))
    shipped = toy_clip_scorer().text_embedding("dog")
    assert not torch.allclose(scorers[0].text_embedding("dog"), shipped)  # 2 steps are not the shipped training
