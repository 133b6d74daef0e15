"""FVD: the I3D layout and loaders, a Frechet distance that cannot go wrong, caching, CLI."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from avlib.cli import main
from avlib.errors import AvlibError, CheckpointError
from avlib.media import write_video
from avlib.metrics import MetricWarning, i3d
from avlib.metrics.fvd import (FeatureCache, Preprocessing, compute_fvd, frechet_distance,
                               fvd_from_features, fvd_with_ci, tiny_backbone)


def scipy_fvd(real: np.ndarray, fake: np.ndarray) -> float:
    """The textbook formula, fine when both covariances are full rank."""
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def write_clips(folder, value: int, count: int, frames: int = 8, size: int = 32):
    for i in range(count):
        write_video(folder / f"clip{i}.mp4", np.full((frames, size, size, 3), value, np.uint8), fps=8)
    return sorted(folder.glob("*.mp4"))


# --- the network ---------------------------------------------------------------------------

def test_layout_matches_the_public_checkpoint(fixtures_dir):
    manifest = json.loads((fixtures_dir / "i3d_400_state_dict_shapes.json").read_text())["shapes"]
    shapes = {k: list(v.shape) for k, v in i3d.InceptionI3d(400).state_dict().items()}
    assert shapes == manifest


def test_loads_a_state_dict_without_num_batches_tracked(fixtures_dir, synth_weights, tmp_path):
    state = synth_weights.synth_from_manifest(fixtures_dir / "i3d_400_state_dict_shapes.json")
    public = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(public, path)
    model = i3d.load_i3d(path)
    assert isinstance(model, i3d.InceptionI3d) and not model.training
    torch.testing.assert_close(model.Mixed_5c.b1b.conv3d.weight, state["Mixed_5c.b1b.conv3d.weight"])
    assert model.Conv3d_1a_7x7.bn.eps == 1e-5
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 9, 224, 224))  # the smallest official input
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()


def test_rejects_wrong_checkpoints(tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"logits.conv3d.weight": torch.zeros(400, 1024, 1, 1, 1)}, wrong)
    with pytest.raises(CheckpointError, match="InceptionI3d layout"):
        i3d.load_i3d(wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        i3d.load_i3d(junk)
    with pytest.raises(CheckpointError, match="not found"):
        i3d.fetch_weights(tmp_path / "absent.pt", tmp_path)


class FakeStyleGanDetector(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature, checks how it is called."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        assert not rescale and not resize and return_features
        return x.mean(dim=(2, 3, 4))


def test_loads_a_torchscript_detector(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(FakeStyleGanDetector()), path)
    model = i3d.load_i3d(path)
    assert isinstance(model, i3d.TorchScriptI3d)
    out = model(torch.ones(2, 3, 4, 8, 8))
    torch.testing.assert_close(out, torch.ones(2, 3))


def test_same_padding_is_tensorflows():
    # size 9, kernel 3, stride 2 -> 1 + 1; size 8 -> 0 + 1 (extra pixel at the end)
    assert i3d.same_padding((9,), (3,), (2,)) == [1, 1]
    assert i3d.same_padding((8,), (3,), (2,)) == [0, 1]
    assert i3d.same_padding((4, 6, 6), (1, 1, 1), (1, 1, 1)) == [0] * 6


# --- preprocessing -------------------------------------------------------------------------

def test_preprocessing_resizes_crops_and_scales():
    video = np.zeros((20, 48, 64, 3), np.uint8)
    video[..., 0] = 255
    x, padded = Preprocessing(frames=16, resolution=32)(video)
    assert x.shape == (3, 16, 32, 32) and not padded
    assert x[0].min() == 1.0 and x[1].max() == -1.0  # red channel at 1, green at -1
    x, padded = Preprocessing(frames=16, resolution=32, resize="squash")(video[:5])
    assert x.shape == (3, 16, 32, 32) and padded
    assert Preprocessing().describe()["resize_detail"].startswith("short side")


# --- the distance ----------------------------------------------------------------------------

def test_equals_the_scipy_formula_where_well_defined():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 12))
    fake = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
    assert frechet_distance(real, fake) == pytest.approx(scipy_fvd(real, fake), rel=1e-9)


def test_identical_sets_give_zero():
    features = np.random.default_rng(1).normal(size=(50, 20)) * 10
    assert abs(frechet_distance(features, features)) < 1e-9
    assert frechet_distance(features, features) >= 0.0


def test_fewer_samples_than_dimensions_is_finite_non_negative_and_warned():
    rng = np.random.default_rng(2)
    for _ in range(20):  # near-identical rank-deficient sets: where naive sqrtm goes wrong
        real = rng.normal(size=(10, 400))
        fake = real + 1e-6 * rng.normal(size=real.shape)
        with pytest.warns(MetricWarning, match="rank-deficient"):
            value = fvd_from_features(real, fake)
        assert np.isfinite(value) and value >= 0.0


def test_too_few_videos_is_a_user_error():
    with pytest.raises(AvlibError, match="at least 2 real"):
        fvd_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


def test_bootstrap_interval_is_seeded_and_holds_the_estimate():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 8)), rng.normal(size=(30, 8)) + 0.5
    first, again = fvd_with_ci(real, fake, seed=7), fvd_with_ci(real, fake, seed=7)
    assert first == again
    low, high = first["ci95"]
    assert 0.0 <= low < first["fvd"] < high
    assert first["n_real"] == 40 and first["n_fake"] == 30 and "bootstrap" in first["ci_method"]


# --- end to end on files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def black_and_white(tmp_path_factory):
    root = tmp_path_factory.mktemp("fvd_clips")
    (root / "black").mkdir()
    (root / "black2").mkdir()
    (root / "white").mkdir()
    return {name: write_clips(root / name, value, 4)
            for name, value in (("black", 0), ("black2", 0), ("white", 255))}


def test_zeros_vs_ones_on_a_tiny_i3d_is_positive_and_cached(black_and_white, tmp_path, monkeypatch):
    backbone, cache = tiny_backbone(), FeatureCache(tmp_path / "cache")
    with pytest.warns(MetricWarning, match="4 real and 4 generated"):
        different = compute_fvd(black_and_white["black"], black_and_white["white"], backbone,
                                cache, n_resamples=50, progress=False)
        same = compute_fvd(black_and_white["black"], black_and_white["black2"], backbone,
                           cache, n_resamples=50, progress=False)
    assert np.isfinite(different["fvd"]) and different["fvd"] > 0.0
    assert same["fvd"] < 1e-6 * different["fvd"]
    assert "TINY RANDOM" in different["backbone"]["name"] and different["warnings"]
    assert different["preprocessing"]["frames"] == 8
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 12

    def no_decoding(*args, **kwargs):
        raise AssertionError("cached features should not decode the video again")

    monkeypatch.setattr("avlib.media.read_video", no_decoding)
    with pytest.warns(MetricWarning):
        again = compute_fvd(black_and_white["black"], black_and_white["white"], backbone, cache,
                            n_resamples=50, progress=False)
    assert again["fvd"] == different["fvd"]


@pytest.mark.filterwarnings("ignore::avlib.metrics.MetricWarning")
def test_cli_writes_the_documented_json(black_and_white, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fvd.json"
    real, fake = black_and_white["black"][0].parent, black_and_white["white"][0].parent
    code = main(["metrics", "fvd", "--real", str(real), "--fake", str(fake), "--i3d", "tiny",
                 "--frames", "8", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"fvd", "n_real", "n_fake", "backbone", "preprocessing", "ci95"} <= set(data)
    assert data["n_real"] == data["n_fake"] == 4 and data["fvd"] > 0
    assert data["preprocessing"]["resolution"] == 32


def test_cli_without_weights_says_how_to_get_them(black_and_white, tmp_path, capsys):
    real = black_and_white["black"][0].parent
    code = main(["metrics", "fvd", "--real", str(real), "--fake", str(real), "--json",
                 str(tmp_path / "x.json")])
    assert code == 2
    assert "--i3d" in capsys.readouterr().err
