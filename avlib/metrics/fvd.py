"""Frechet Video Distance: how far apart two sets of videos are in I3D feature space.

Each set's features are summarised by a Gaussian (mean, covariance) and::

    FVD = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r^1/2 S_f S_r^1/2)^1/2)

The trace term is the nuclear norm of a product of covariance factors (see
:func:`frechet_distance`): the same number as the usual ``scipy.linalg.sqrtm(S_r @ S_f)``
formula wherever that one is well defined, but with no matrix square root, no imaginary
part to drop and no way to go negative. (The report's -1.7e9 came from a Frechet distance
over ~100 samples of 400-d features.) With fewer videos than feature dimensions the
covariances are rank-deficient; the value stays defined, but it is biased upward and noisy, so a :class:`MetricWarning` says so.

Published FVDs differ by convention, so the conventions come in named protocols
(:data:`PROTOCOLS`), each a bundle of resize rule, frame selection, value range, covariance
and Frechet computation named after the implementation it reproduces:

- ``avlib`` (default): the first ``frames`` frames, short side resized to 224 (VideoGPT's
  loader rule) and centre-cropped, values in [-1, 1], unbiased covariance (divided by N - 1).
  The default because it is the most defensible measurement rather than a convention to
  match: cropping keeps the aspect ratio, so motion is not stretched differently for
  landscape and square videos, and N - 1 is the unbiased covariance estimate, which matters
  at the small N of these experiments; it is also what every earlier avlib result used.
- ``stylegan-v``: StyleGAN-V's ``compute_fvd`` and the ``cd-fvd`` package: frames squashed
  to 224x224 (aspect not kept), biased covariance (divided by N).
- ``videogpt``: VideoGPT / TATS: their loader's centre crop to a square (short side; they
  then resize to their training resolution, which generated videos already have), their
  FVD's squash to 224x224, unbiased covariance.

All protocols compute the Frechet distance exactly (see :func:`frechet_distance`); the
implementations named use ``scipy.linalg.sqrtm`` (StyleGAN-V, cd-fvd) or TF-GAN's float32
SVD square roots (VideoGPT, TATS), which give the same number up to their round-off
(measured within 2e-4 relative) wherever they are well defined. Bilinear interpolation
without antialiasing and values 2 x / 255 - 1 are common to all. Everything that can change
the number is recorded in the output. Features are cached per video file content
(:mod:`avlib.cache`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from avlib.errors import AvlibError, ConfigError
from avlib.cache import FeatureCache, cache_key, file_digest, weights_digest
from avlib.io import cache_dir
from avlib.media import iter_videos, probe
from avlib.metrics import FVD_RESIZE_MODES, MetricWarning, i3d
from avlib.metrics.stats import bootstrap_replicates, percentile_interval
from avlib.named_weights import METRIC_NETS_DIR, TOY_VIDEO_FILE

TOY_I3D_NAME = "TOY I3D (trained on the synthetic world; not Kinetics-400, not comparable to published FVD)"
N_RESAMPLES = 500  # a replicate is one min(N, D)-sized SVD: ~5 ms at N=100, ~0.1 s at N>=400


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded video becomes the network's (3, T, R, R) input in [-1, 1]."""

    frames: int = 16
    resolution: int = 224
    resize: str = "short-side"  # short-side: resize + centre crop | squash | crop-squash
    tats_bytes: bool = False    # TATS' truncating round trip through bytes (see __call__)

    def __post_init__(self):
        if self.resize not in FVD_RESIZE_MODES:
            raise ConfigError(f"unknown FVD resize mode '{self.resize}' "
                              f"(choose from: {', '.join(FVD_RESIZE_MODES)})")
        if self.frames < 1:
            raise ConfigError(f"FVD needs at least 1 frame per video, got {self.frames}")

    def describe(self) -> dict[str, Any]:
        resize = {"short-side": "short side to resolution (long side rounded up), centre crop",
                  "squash": "both sides to resolution (aspect not kept)",
                  "crop-squash": "centre square crop (short side), then to resolution"}[self.resize]
        return {**asdict(self), "frame_selection": "first frames; a shorter video repeats its last frame",
                "resize_detail": resize, "interpolation": "bilinear, align_corners=False, no antialias",
                "value_range": [-1, 1], "channels": "RGB"}

    def __call__(self, video: np.ndarray) -> tuple[torch.Tensor, bool]:
        """(F, H, W, 3) uint8 -> (3, T, R, R) float in [-1, 1], and whether frames were repeated."""
        padded = len(video) < self.frames
        if padded:
            video = np.concatenate([video, np.repeat(video[-1:], self.frames - len(video), 0)])
        x = torch.from_numpy(np.ascontiguousarray(video[: self.frames]))
        x = x.permute(0, 3, 1, 2).float() / 255.0               # (T, 3, H, W) in [0, 1]
        height, width = x.shape[-2:]
        if self.resize == "crop-squash":
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            x = x[..., top:top + side, left:left + side]          # (T, 3, S, S)
        if self.tats_bytes:
            # TATS' loader yields x - 0.5 and its sampling script makes bytes again with
            # ((x + 0.5) * 255).byte(), which truncates: 63 of the 256 levels drop by one.
            x = (((x - 0.5) + 0.5) * 255).to(torch.uint8).float() / 255.0
        if self.resize != "short-side":
            size = (self.resolution, self.resolution)
        else:
            # VideoGPT's exact rule, for parity: a square frame goes through the ceil too,
            # which for some sizes (e.g. 100 px) rounds up to 225 before the crop.
            scale = self.resolution / min(height, width)
            size = ((self.resolution, math.ceil(width * scale)) if height < width
                    else (math.ceil(height * scale), self.resolution))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        top = (x.shape[-2] - self.resolution) // 2
        left = (x.shape[-1] - self.resolution) // 2
        x = x[..., top:top + self.resolution, left:left + self.resolution]
        return ((x - 0.5) * 2.0).permute(1, 0, 2, 3).contiguous(), padded  # (3, T, R, R)


@dataclass(frozen=True)
class Protocol:
    """One implementation's FVD conventions (see the module docstring)."""

    name: str
    reproduces: str
    resize: str
    biased_covariance: bool  # divide by N (StyleGAN-V, cd-fvd) instead of N - 1
    tats_bytes: bool = False

    def preprocessing(self, frames: int, resolution: int, resize: str | None = None) -> Preprocessing:
        """This protocol's preprocessing; ``resize`` overrides its rule (recorded in outputs)."""
        return Preprocessing(frames, resolution, resize or self.resize, self.tats_bytes)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "reproduces": self.reproduces, "resize": self.resize,
                "covariance": "biased (divided by N)" if self.biased_covariance
                              else "unbiased (divided by N - 1)",
                "frechet": "exact (nuclear norm of covariance factors, no matrix square root)"}


PROTOCOLS = {
    "avlib": Protocol("avlib", "avlib's default: aspect-preserving crop, unbiased covariance",
                      "short-side", biased_covariance=False),
    "stylegan-v": Protocol("stylegan-v", "StyleGAN-V compute_fvd and the cd-fvd package",
                           "squash", biased_covariance=True),
    "videogpt": Protocol("videogpt", "VideoGPT / TATS compute_fvd on their loader's crops",
                         "crop-squash", biased_covariance=False, tats_bytes=True),
}
DEFAULT_PROTOCOL = "avlib"


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown FVD protocol '{name}' (choose from: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


@dataclass
class FeatureBackbone:
    """A video feature network with what identifies it (for outputs and cache keys)."""

    model: nn.Module
    name: str
    fingerprint: str
    preprocessing: Preprocessing

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, **i3d.describe(self.model)}


def pretrained_backbone(path_or_url: str | Path, frames: int = 16, protocol: str = DEFAULT_PROTOCOL,
                        resize: str | None = None) -> FeatureBackbone:
    """Kinetics-400 I3D from ``i3d_pretrained_400.pt`` or StyleGAN-V's ``i3d_torchscript.pt``."""
    path = i3d.fetch_weights(path_or_url, cache_dir())
    model = i3d.load_i3d(path)
    return FeatureBackbone(model, name=f"Kinetics-400 I3D ({path.name})",
                           fingerprint=file_digest(path),
                           preprocessing=get_protocol(protocol).preprocessing(frames, 224, resize))


def tiny_backbone(seed: int = 0, frames: int = 8, protocol: str = DEFAULT_PROTOCOL,
                  resize: str | None = None) -> FeatureBackbone:
    """A seeded random I3D at 32x32 for the tiny profile; its FVDs only compare tiny runs."""
    model = i3d.tiny_i3d(seed)
    return FeatureBackbone(model, name=f"TINY RANDOM I3D (seed {seed}; not Kinetics-400, "
                           "not comparable to published FVD)", fingerprint=weights_digest(model),
                           preprocessing=get_protocol(protocol).preprocessing(frames, 32, resize))



def toy_backbone(frames: int = 8, protocol: str = DEFAULT_PROTOCOL, resize: str | None = None,
                 folder: str | Path = METRIC_NETS_DIR) -> FeatureBackbone:
    """The toy world's trained TOY video network (``avlib toyworld metrics``), named TOY."""
    path = Path(folder) / TOY_VIDEO_FILE
    with safe_open(str(path), "pt") as handle:
        config = json.loads(handle.metadata()["config"])
    model = i3d.InceptionI3d(**config)
    model.load_state_dict(load_file(str(path)))
    return FeatureBackbone(model.eval(), name=TOY_I3D_NAME, fingerprint=weights_digest(model),
                           preprocessing=get_protocol(protocol).preprocessing(frames, 32, resize))

def feature_key(video: Path, backbone: FeatureBackbone) -> tuple[str, str]:
    """(cache key, content digest) of a video's features: its file's bytes, not its path."""
    content = file_digest(video)
    dtype = next(backbone.model.parameters()).dtype
    return cache_key("fvd", content=content, weights=backbone.fingerprint,
                     settings=asdict(backbone.preprocessing), dtype=str(dtype)), content


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.no_grad()
def extract_features(videos: Sequence[str | Path], backbone: FeatureBackbone,
                     cache: FeatureCache | None = None, batch_size: int = 4,
                     device: str | None = None, progress: bool = True) -> tuple[np.ndarray, int]:
    """Features (N, D) of the videos, in order, and how many videos had frames repeated."""
    device = device or default_device()
    model = backbone.model.to(device).eval()
    features: dict[int, np.ndarray] = {}
    padded = 0
    batch: list[tuple[int, Path, torch.Tensor]] = []

    def run_batch() -> None:
        inputs = torch.stack([x for _, _, x in batch]).to(device)   # (B, 3, T, R, R)
        if len(batch) == 1:
            # PyTorch's CPU convolutions take another path for a batch of one, whose last bits
            # differ; which videos are left uncached must not change any video's features.
            inputs = inputs.repeat(2, 1, 1, 1, 1)                    # (2, 3, T, R, R)
        outputs = model(inputs)[:len(batch)].double().cpu().numpy()  # (B, D)
        for (index, _, _), feature in zip(batch, outputs):
            features[index] = feature
            if cache is not None:
                cache.save(*keys[index], feature)
        batch.clear()

    keys = {index: feature_key(Path(video), backbone) for index, video in enumerate(videos)} if cache is not None else {}
    uncached = []
    for index, video in enumerate(map(Path, videos)):
        cached = cache.load(*keys[index]) if cache is not None else None
        if cached is None:
            uncached.append((index, video))
        else:
            features[index] = cached
    decoded = iter_videos([video for _, video in uncached])  # many files per ffmpeg process
    for (index, video), (frames, _) in zip(tqdm(uncached, desc="I3D features", unit="video",
                                                disable=not progress), decoded):
        x, was_padded = backbone.preprocessing(frames)
        padded += was_padded
        batch.append((index, video, x))
        if len(batch) == batch_size:
            run_batch()
    if batch:
        run_batch()
    return np.stack([features[i] for i in range(len(videos))]), padded


# --- the distance --------------------------------------------------------------------------

def covariance_factor(features: np.ndarray, biased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and a factor R (k, D), k = min(N, D), with R^T R = the covariance.

    The covariance is divided by N - 1 (unbiased), or by N when ``biased``.
    """
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    dof = len(features) if biased else len(features) - 1
    centred = (features - mean) / np.sqrt(dof)  # centred^T centred = covariance
    # Any R with R^T R = covariance will do; QR only pays off for tall (N > D) matrices.
    return mean, centred if len(centred) <= centred.shape[1] else np.linalg.qr(centred, mode="r")


def frechet_distance(real: np.ndarray, fake: np.ndarray, biased: bool = False) -> float:
    """Frechet distance between Gaussians fitted to features (N_real, D) and (N_fake, D).

    With S = R^T R for each set: tr(S) = |R|_F^2, and the eigenvalues of S_r S_f are the
    squared singular values of R_r R_f^T, so tr((S_r S_f)^1/2) is that matrix's nuclear
    norm: non-negative by construction, no matrix square root, no imaginary part, and at
    most a min(N, D)-sized SVD. The result is >= 0 up to round-off, which is clipped.
    """
    mean_real, root_real = covariance_factor(real, biased)
    mean_fake, root_fake = covariance_factor(fake, biased)
    cross = np.linalg.svd(root_real @ root_fake.T, compute_uv=False).sum()
    diff = mean_real - mean_fake
    value = diff @ diff + np.sum(root_real**2) + np.sum(root_fake**2) - 2.0 * cross
    return max(float(value), 0.0)


def _check_sizes(real: np.ndarray, fake: np.ndarray) -> str | None:
    """Raise for sets too small to have a covariance; a warning text when rank-deficient."""
    for name, features in (("real", real), ("generated", fake)):
        if len(features) < 2:
            raise AvlibError(f"FVD needs at least 2 {name} videos, got {len(features)} "
                             "(add videos to that folder)")
    dim = real.shape[1]
    if min(len(real), len(fake)) < dim:
        return (f"FVD from {len(real)} real and {len(fake)} generated videos with {dim}-d "
                "features: the covariances are rank-deficient, so the value is defined but "
                f"biased upward and noisy (use at least {dim} videos per set)")
    return None


def fvd_from_features(real: np.ndarray, fake: np.ndarray, biased: bool = False) -> float:
    """FVD between feature sets (N_real, D) and (N_fake, D); warns when N < D."""
    warning = _check_sizes(real, fake)
    if warning:
        warnings.warn(warning, MetricWarning, stacklevel=2)
    return frechet_distance(real, fake, biased)


def fvd_with_ci(real: np.ndarray, fake: np.ndarray, seed: int = 0,
                n_resamples: int = N_RESAMPLES, biased: bool = False) -> dict[str, Any]:
    """FVD with a 95% bootstrap interval over both sets.

    Resampling with replacement duplicates videos, which by itself inflates FVD, so the
    percentile interval of the replicates is shifted by (estimate - replicate mean): it
    shows how much FVD varies at this N around the estimate. FVD's own small-N bias
    remains; compare models only at equal N.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    warning = _check_sizes(real, fake)
    if warning:
        warnings.warn(warning, MetricWarning, stacklevel=2)

    def resampled(rng: np.random.Generator) -> float:
        return frechet_distance(real[rng.integers(0, len(real), len(real))],
                                fake[rng.integers(0, len(fake), len(fake))], biased)

    # One BLAS thread: for these small SVDs thread start-up costs more than the work
    # (measured 60x slower with threads on a busy 2-core machine).
    with threadpool_limits(1):
        value = frechet_distance(real, fake, biased)
        replicates = bootstrap_replicates(resampled, n_resamples, seed)
    shift = value - replicates.mean()
    low, high = percentile_interval(replicates + shift)
    return {
        "fvd": value,
        "ci95": [max(low, 0.0), max(high, 0.0)],
        "n_real": len(real),
        "n_fake": len(fake),
        "feature_dim": int(real.shape[1]),
        "ci_method": (f"bootstrap resampling both sets with replacement, {n_resamples} "
                      f"resamples, seed {seed}; percentile interval re-centred on the estimate "
                      f"(replicates were {-shift:.4g} higher on average); FVD's small-N bias "
                      "is not removed: compare runs at equal N"),
        "warnings": [warning] if warning else [],
    }


def frame_rate_mismatch(real_videos: Sequence[str | Path], fake_videos: Sequence[str | Path]) -> str | None:
    """A warning when the two sets play at different frame rates (judged from each set's first
    video): FVD takes consecutive frames, so it would compare different spans of time."""
    real_fps, fake_fps = probe(real_videos[0]).fps, probe(fake_videos[0]).fps
    if real_fps is None or fake_fps is None or math.isclose(real_fps, fake_fps, rel_tol=0.01):
        return None
    return (f"the real videos play at {real_fps:g} fps and the generated ones at {fake_fps:g} fps: FVD "
            "compares frame sequences, so motion is judged at different speeds (resample one set to "
            "the other's frame rate)")


def warn_frame_rate_mismatch(real_videos: Sequence[str | Path], fake_videos: Sequence[str | Path]) -> str | None:
    """:func:`frame_rate_mismatch`, also raised as a :class:`MetricWarning` (one line in the CLI)."""
    message = frame_rate_mismatch(real_videos, fake_videos)
    if message:
        warnings.warn(message, MetricWarning, stacklevel=3)
    return message


def compute_fvd(real_videos: Sequence[str | Path], fake_videos: Sequence[str | Path],
                backbone: FeatureBackbone, cache: FeatureCache | None = None, seed: int = 0,
                n_resamples: int = N_RESAMPLES, device: str | None = None,
                progress: bool = True, protocol: str = DEFAULT_PROTOCOL) -> dict[str, Any]:
    """FVD between two lists of video files, with CI, protocol, backbone and preprocessing.

    The backbone's preprocessing carries the resize rule (build it with the protocol's);
    ``protocol`` sets the covariance convention and is recorded.
    """
    conventions = get_protocol(protocol)
    real, real_padded = extract_features(real_videos, backbone, cache, device=device,
                                         progress=progress)
    fake, fake_padded = extract_features(fake_videos, backbone, cache, device=device,
                                         progress=progress)
    result = fvd_with_ci(real, fake, seed, n_resamples, conventions.biased_covariance)
    if real_padded or fake_padded:
        message = (f"{real_padded} real and {fake_padded} generated videos are shorter than "
                   f"{backbone.preprocessing.frames} frames; their last frame was repeated")
        warnings.warn(message, MetricWarning, stacklevel=2)
        result["warnings"].append(message)
    message = warn_frame_rate_mismatch(real_videos, fake_videos)
    if message:
        result["warnings"].append(message)
    return {**result, "protocol": conventions.describe(), "backbone": backbone.describe(),
            "preprocessing": backbone.preprocessing.describe()}
