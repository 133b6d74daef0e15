"""The toy metric networks measure what their metrics claim, on the synthetic world's known answers
(:func:`avlib.toyworld.metric_nets.validity`, on held-out clips the networks never saw):

* toy CLIPSIM: a real clip is closer to its own class name than to any other;
* toy FVD: two sets of real clips of a class are close, a set of another class is far, and
  frozen clips (one frame repeated) are far from the moving originals.

The seeded random networks the tiny profile used before fail the CLIPSIM check.
"""
from __future__ import annotations

import pytest
import torch

from avlib.data.synthetic import CLASSES
from avlib.metrics.clipsim import ClipScorer
from avlib.metrics.fvd import tiny_backbone
from avlib.toyworld.metric_nets import (MetricNetsConfig, build_metric_nets, toy_backbone, toy_clip_scorer,
                                        validity)


@pytest.fixture(scope="module")
def toy():
    return validity(toy_clip_scorer(), toy_backbone())


def test_toy_clipsim_names_the_class_of_real_clips(toy):
    assert "TOY CLIP" in toy["clip"] and toy["n_per_set"] == 120
    assert toy["clipsim_class_accuracy"] >= 0.95
    assert toy["clipsim_own_class"] - toy["clipsim_other_class"] > 0.3


def test_random_clip_fails_the_check():
    random = validity(ClipScorer.tiny(0), tiny_backbone(), per_class=10)
    assert random["clipsim_class_accuracy"] < 0.7


@pytest.mark.parametrize("label", CLASSES)
def test_toy_fvd_separates_classes_and_motion(toy, label):
    assert "TOY I3D" in toy["video_network"]
    fvd = toy["fvd"][label]
    assert min(fvd["other_class"].values()) > 50 * fvd["same_class"]  # the random I3D: 19x for thunder
    assert fvd["frozen_vs_moving"] > 10 * fvd["same_class"]


def test_toy_clipsim_reads_written_videos(tmp_path):
    from avlib.media import write_video
    from avlib.toyworld.data import rgb_frames, toy_clips

    clip = toy_clips(("volleyball",), per_class=1, split="test", seed=3)[0]
    path = write_video(tmp_path / "v.mp4", rgb_frames(clip), 8.0)
    scorer = toy_clip_scorer()
    own = scorer.score_video(path, "volleyball")
    assert all(own > scorer.score_video(path, other) for other in ("dog", "thunder"))


def test_cli_loads_the_toy_networks_by_name(tmp_path):
    import json

    from avlib.cli import main
    from avlib.media import write_video
    from avlib.toyworld.data import rgb_frames, toy_clips

    for label in ("dog", "thunder"):
        for clip in toy_clips((label,), per_class=3, split="test", seed=5):
            write_video(tmp_path / label / f"{clip['clip_id']}.mp4", rgb_frames(clip), 8.0)
    scores = {}
    for text in ("dog", "thunder"):
        assert main(["metrics", "clipsim", "--videos", str(tmp_path / "dog"), "--text", text, "--model", "toy",
                     "--quiet", "--json", str(tmp_path / f"{text}.json")]) == 0
        scores[text] = json.loads((tmp_path / f"{text}.json").read_text())
    assert "TOY CLIP" in scores["dog"]["model"] and scores["dog"]["ci95"][0] > scores["thunder"]["ci95"][1]
    with pytest.warns(Warning, match="rank-deficient"):  # 3 videos, 16-d features
        assert main(["metrics", "fvd", "--real", str(tmp_path / "dog"), "--fake", str(tmp_path / "thunder"),
                     "--i3d", "toy", "--frames", "8", "--no-cache", "--quiet", "--json", str(tmp_path / "fvd.json")]) == 0
    assert "TOY I3D" in json.loads((tmp_path / "fvd.json").read_text())["backbone"]["name"]


def test_build_is_seeded_and_loads_by_name(tmp_path):
    cfg = MetricNetsConfig(clips_per_class=2, clip_steps=2, video_steps=2, batch_size=4, validity_per_class=2)
    first, second = (build_metric_nets(tmp_path / name, cfg, progress=False) for name in "ab")
    nets = [toy_backbone(folder=folder).model.state_dict() for folder in (first, second)]
    assert all(torch.equal(nets[0][k], nets[1][k]) for k in nets[0])
    scorers = [toy_clip_scorer(folder) for folder in (first, second)]
    assert torch.equal(scorers[0].text_embedding("dog"), scorers[1].text_embedding("dog"))
    assert not torch.allclose(scorers[0].text_embedding("dog"), toy_clip_scorer().text_embedding("dog"))
