"""CLIPSIM: the frame-averaged cosine, a tiny CLIP end to end, model id and scale recorded."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avlib.cli import main
from avlib.errors import CheckpointError
from avlib.media import write_video
from avlib.metrics.clipsim import ClipScorer, clipsim_videos, frame_averaged_cosine, summarize


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer.tiny(seed=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clipsim")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(folder / f"v{i}.mp4", rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8), fps=8)
    return sorted(folder.glob("*.mp4"))


def test_identical_embeddings_score_one():
    text = torch.randn(16)
    frames = text.repeat(5, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0], [7.0]])  # any positive scale
    assert frame_averaged_cosine(frames, text) == pytest.approx(1.0, abs=1e-12)
    assert frame_averaged_cosine(-frames, text) == pytest.approx(-1.0, abs=1e-12)


def test_average_is_over_frames():
    text = torch.tensor([1.0, 0.0])
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1 and 0
    assert frame_averaged_cosine(frames, text) == pytest.approx(0.5)


def test_scores_videos_in_range_and_records_the_model(scorer, videos):
    scores = clipsim_videos(videos, ["a dog barking"] * len(videos), scorer, progress=False)
    assert len(scores) == 3 and all(-1.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) == 3  # different frames, different scores
    summary = summarize(videos, ["a dog barking"] * 3, scores, scorer)
    assert summary["model"] == scorer.model_id and "TINY RANDOM CLIP" in summary["model"]
    assert "0-1" in summary["scale"]
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(np.mean(scores))
    assert set(summary["videos"]) == {"v0", "v1", "v2"}


def test_the_text_matters(scorer, videos):
    dog = scorer.score_video(videos[0], "a dog barking")
    thunder = scorer.score_video(videos[0], "thunder and lightning")
    assert dog != thunder


def test_unloadable_model_is_a_user_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot load CLIP model .*hub id available offline"):
        ClipScorer.from_pretrained(str(tmp_path))  # a folder without a CLIP in it


def test_cli_writes_model_and_scale(videos, tmp_path):
    out = tmp_path / "clip.json"
    code = main(["metrics", "clipsim", "--videos", str(videos[0].parent), "--text", "a dog",
                 "--model", "tiny", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"model", "scale", "mean", "ci95", "n", "videos"} <= set(data)
    assert data["n"] == 3 and data["ci95"][0] <= data["mean"] <= data["ci95"][1]
    assert data["videos"]["v1"]["text"] == "a dog"
