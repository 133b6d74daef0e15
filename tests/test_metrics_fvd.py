"""FVD: the I3D layout and loaders, a Frechet distance that cannot go wrong, caching, CLI."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from avlib.cli import main
from avlib.errors import AvlibError, CheckpointError, ConfigError
from avlib.media import read_video, write_video
from avlib.metrics import MetricWarning, i3d
from avlib.metrics.fvd import (DEFAULT_PROTOCOL, PROTOCOLS, FeatureCache, Preprocessing,
                               compute_fvd, covariance_factor, frechet_distance, fvd_from_features,
                               fvd_with_ci, get_protocol, tiny_backbone)


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
    # the 8 black clips share their bytes, as do the 4 white ones: keys name content, not paths
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("cached features should not decode the video again")

    monkeypatch.setattr("avlib.media.read_video", no_decoding)
    with pytest.warns(MetricWarning):
        again = compute_fvd(black_and_white["black"], black_and_white["white"], backbone, cache,
                            n_resamples=50, progress=False)
    assert again["fvd"] == different["fvd"]


def test_a_videos_features_do_not_depend_on_what_else_was_cached(tmp_path):
    """Six videos at once (batches of 4 and 2); again with five cached, so the sixth is computed
    alone; and with one cached (batches of 4 and 1): the same features, bit for bit."""
    from avlib.metrics.fvd import extract_features

    rng = np.random.default_rng(4)
    videos = [write_video(tmp_path / f"v{i}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=8)
              for i in range(6)]
    backbone = tiny_backbone()
    cold, _ = extract_features(videos, backbone, None, progress=False)
    for cached in (videos[:5], videos[:1]):
        cache = FeatureCache(tmp_path / f"cache{len(cached)}")
        extract_features(cached, backbone, cache, progress=False)
        np.testing.assert_array_equal(extract_features(videos, backbone, cache, progress=False)[0], cold)


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


# --- protocols: each against the implementation it names -------------------------------------

def cdfvd_reference(real_videos: np.ndarray, fake_videos: np.ndarray, model, size: int) -> float:
    """cd-fvd 0.1.1 on uint8 (B, T, H, W, C) videos, its formulas copied from its source.

    The package itself imports torchvision at import time, which conflicts with our torch
    wheel, so these are its functions written out: ``third_party/i3d/utils.preprocess_i3d``,
    ``utils/metric_utils.FeatureStats`` (float32 features, float64 sums, covariance / N) and
    ``cdfvd.compute_fvd_from_stats`` (``scipy.linalg.sqrtm``, StyleGAN-V's formula).
    """
    def stats(videos):
        b, t, h, w, c = videos.shape
        frames = torch.FloatTensor(videos).flatten(end_dim=1).permute(0, 3, 1, 2).contiguous()
        resized = torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear",
                                                  align_corners=False)
        x = 2. * resized.view(b, t, c, size, size).transpose(1, 2).contiguous() / 255. - 1
        with torch.no_grad():
            features = np.asarray(model(x).numpy(), dtype=np.float32).astype(np.float64)
        mean = features.sum(axis=0) / len(features)
        return mean, (features.T @ features) / len(features) - np.outer(mean, mean)

    mu_fake, sigma_fake = stats(fake_videos)
    mu_real, sigma_real = stats(real_videos)
    s = scipy.linalg.sqrtm(np.dot(sigma_real, sigma_fake))
    return float(np.real(np.square(mu_real - mu_fake).sum() + np.trace(sigma_fake + sigma_real - s * 2)))


def tats_reference(real_videos: np.ndarray, fake_videos: np.ndarray, model, size: int) -> float:
    """VideoGPT / TATS on uint8 (B, T, H, W, C) videos, from TATS' ``tats/data.py`` and ``tats/fvd/fvd.py``.

    The loader (``preprocess`` at the short side's resolution: a centre crop) gives videos in
    [-0.5, 0.5], which the sampling script turns back into bytes (``(x + 0.5) * 255``,
    ``.byte()``); ``compute_fvd`` squashes them, takes I3D logits and ``frechet_distance``
    (float32, covariance / (N - 1), TF-GAN's SVD square roots).
    """
    def loader(video):  # data.py preprocess, resolution = short side
        x = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.
        t, c, h, w = x.shape
        resolution = min(h, w)
        scale = resolution / min(h, w)
        target = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
        x = torch.nn.functional.interpolate(x, size=target, mode="bilinear", align_corners=False)
        t, c, h, w = x.shape
        x = x[:, :, (h - resolution) // 2:(h - resolution) // 2 + resolution,
              (w - resolution) // 2:(w - resolution) // 2 + resolution]
        return x.permute(1, 0, 2, 3).contiguous() - 0.5  # (C, T, H, W)

    def logits(videos):
        batch = torch.stack([loader(v) for v in videos])
        as_bytes = ((batch + 0.5) * 255).permute(0, 2, 3, 4, 1).byte().numpy()
        b, t, h, w, c = as_bytes.shape
        frames = torch.FloatTensor(as_bytes).flatten(end_dim=1).permute(0, 3, 1, 2).contiguous()
        resized = torch.nn.functional.interpolate(frames, size=(size, size), mode="bilinear",
                                                  align_corners=False)
        x = 2. * resized.view(b, t, c, size, size).transpose(1, 2).contiguous() / 255. - 1
        with torch.no_grad():
            return model(x)

    def symmetric_sqrt(mat, eps=1e-10):
        u, s, v = torch.svd(mat)
        return u @ torch.diag(torch.where(s < eps, s, torch.sqrt(s))) @ v.t()

    def cov(m):
        m = m.t()
        centred = m - torch.mean(m, dim=1, keepdim=True)
        return 1.0 / (m.size(1) - 1) * centred.matmul(centred.t()).squeeze()

    x1, x2 = logits(real_videos), logits(fake_videos)
    sigma, sigma_w = cov(x1), cov(x2)
    root = symmetric_sqrt(sigma)
    trace_sqrt = torch.trace(symmetric_sqrt(root @ (sigma_w @ root)))
    return float(torch.trace(sigma + sigma_w) - 2.0 * trace_sqrt + torch.sum((x1.mean(0) - x2.mean(0)) ** 2))


@pytest.fixture(scope="module")
def landscape_sets(tmp_path_factory):
    """Two sets of 12 random landscape clips (8 frames, 24x40): the crop and squash rules differ."""
    root = tmp_path_factory.mktemp("fvd_protocols")
    rng = np.random.default_rng(5)
    sets = {}
    for name, brightness in (("real", 1.0), ("fake", 0.6)):
        (root / name).mkdir()
        for i in range(12):
            base = rng.integers(0, 256, (1, 24, 40, 3)) * brightness
            video = np.clip(base + rng.normal(0, 30, (8, 24, 40, 3)), 0, 255).astype(np.uint8)
            write_video(root / name / f"c{i}.mp4", video, fps=8)
        paths = sorted((root / name).glob("*.mp4"))
        sets[name] = (paths, np.stack([read_video(p)[0] for p in paths]))  # decoded (B, T, H, W, 3)
    return sets


@pytest.mark.filterwarnings("ignore::avlib.metrics.MetricWarning")
@pytest.mark.parametrize("protocol, reference", [("stylegan-v", cdfvd_reference),
                                                 ("videogpt", tats_reference)])
def test_protocol_reproduces_the_implementation_it_names(landscape_sets, protocol, reference):
    backbone = tiny_backbone(frames=8, protocol=protocol)
    (real_paths, real), (fake_paths, fake) = landscape_sets["real"], landscape_sets["fake"]
    ours = compute_fvd(real_paths, fake_paths, backbone, n_resamples=20, progress=False,
                       protocol=protocol)
    theirs = reference(real, fake, backbone.model.eval(), size=32)
    assert ours["fvd"] == pytest.approx(theirs, rel=1e-3)
    assert ours["protocol"]["name"] == protocol
    # The conventions matter at this size: the default protocol is measurably different.
    default = compute_fvd(real_paths, fake_paths, tiny_backbone(frames=8), n_resamples=20,
                          progress=False)
    assert abs(default["fvd"] - theirs) > 1e-2 * theirs


def test_biased_covariance_is_the_unbiased_one_scaled():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(30, 6)), rng.normal(size=(20, 6)) + 1.0
    _, unbiased = covariance_factor(real)
    _, biased = covariance_factor(real, biased=True)
    np.testing.assert_allclose(biased.T @ biased, unbiased.T @ unbiased * 29 / 30, rtol=1e-12)
    assert frechet_distance(real, fake, biased=True) != frechet_distance(real, fake)


def test_protocol_names_are_checked_and_the_cli_lists_them_all():
    from avlib.cli.metrics import FVD_PROTOCOLS

    assert FVD_PROTOCOLS == tuple(PROTOCOLS) and PROTOCOLS[DEFAULT_PROTOCOL].name == "avlib"
    with pytest.raises(ConfigError, match="stylegan-v"):
        get_protocol("tats")


@pytest.mark.filterwarnings("ignore::avlib.metrics.MetricWarning")
def test_cli_protocol_and_file_arguments(black_and_white, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fvd.json"
    real, fake = black_and_white["black"], black_and_white["white"]
    code = main(["metrics", "fvd", "--real", str(real[0].parent), "--fake", *map(str, fake[:3]),
                 "--protocol", "stylegan-v", "--i3d", "tiny", "--frames", "8", "--quiet",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["protocol"]["name"] == "stylegan-v" and "divided by N)" in data["protocol"]["covariance"]
    assert data["preprocessing"]["resize"] == "squash"
    assert data["n_real"] == 4 and data["n_fake"] == 3
