"""The metrics measure what they claim on the synthetic world, whose events are known.

AV-Align must be high for in-sync clips and collapse when the audio is 0.3 s late, with
non-overlapping 95% CIs; FVD must find two halves of one class closer than two classes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from avlib.data.synthetic import write_synthetic_dataset
from avlib.metrics.av_align import av_align_videos, summarize
from avlib.metrics.fvd import extract_features, frechet_distance, tiny_backbone


def synthetic_videos(folder: Path, clips_per_class: int, shift_s: float = 0.0) -> list[Path]:
    write_synthetic_dataset(folder, clips_per_class=clips_per_class, seed=0, shift_s=shift_s)
    return sorted(folder.glob("*.mp4"))


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    return synthetic_videos(tmp_path_factory.mktemp("aligned"), clips_per_class=6)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """The first 3 clips of each class again (same seeds, same videos), audio 0.3 s late."""
    return synthetic_videos(tmp_path_factory.mktemp("shifted"), clips_per_class=3, shift_s=0.3)


def av_align_summary(videos):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a shifted clip may lose an onset off the end
        results = av_align_videos(videos, "2025", workers=1, progress=False)
    return summarize(results, "2025")


def test_av_align_separates_synced_from_shifted_audio(aligned, shifted):
    same_videos = [v for v in aligned if int(v.stem.rsplit("_", 1)[1]) < 3]
    synced, late = av_align_summary(same_videos), av_align_summary(shifted)
    assert synced["mean"] >= 0.6
    assert late["mean"] <= synced["mean"] / 2
    assert late["ci95"][1] < synced["ci95"][0]  # the 95% intervals do not overlap


def test_fvd_finds_one_class_closer_to_itself_than_to_another(aligned):
    features, _ = extract_features(aligned, tiny_backbone(), progress=False)
    by_class = {label: features[[i for i, v in enumerate(aligned) if f"_{label}_" in v.name]]
                for label in ("dog", "thunder", "volleyball")}
    within = {label: frechet_distance(f[:3], f[3:]) for label, f in by_class.items()}
    across = {(a, b): frechet_distance(by_class[a][:3], by_class[b][3:])
              for a in by_class for b in by_class if a != b}
    assert within["dog"] < across[("dog", "thunder")]
    assert np.mean(list(within.values())) < np.mean(list(across.values()))
