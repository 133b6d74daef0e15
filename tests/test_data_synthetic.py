"""The synthetic world: deterministic clips whose files carry the events the manifest records."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avlib.cli import main
from avlib.data.manifests import read_manifest
from avlib.data.synthetic import (CLASSES, EDGE_S, MIN_GAP_S, clip_seed, synth_clip,
                                  write_synthetic_dataset)
from avlib.errors import ConfigError
from avlib.media import load_audio, probe
from avlib.metrics.av_align import ONSET_SAMPLE_RATE, av_align_video, onset_times

FPS = 12.0


def assert_times_match(found: np.ndarray, expected: tuple[float, ...], tolerance: float) -> None:
    assert len(found) == len(expected), (found, expected)
    np.testing.assert_allclose(found, expected, atol=tolerance)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    manifest = write_synthetic_dataset(out, clips_per_class=2, seed=3, seconds=2.0, fps=FPS)
    return out, read_manifest(manifest)


def test_same_seed_same_clip_and_other_seed_another():
    a, b = synth_clip("dog", 7), synth_clip("dog", 7)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.wave, b.wave)
    other = synth_clip("dog", 8)
    assert not np.array_equal(a.wave, other.wave)


@pytest.mark.parametrize("label", CLASSES)
def test_clip_shapes_and_event_layout(label):
    clip = synth_clip(label, 0, seconds=3.0, fps=FPS, size=32)
    assert clip.frames.shape == (36, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.wave.shape == (48000,) and clip.wave.dtype == np.float32
    assert np.abs(clip.wave).max() <= 1.0
    events = clip.video_events_s
    np.testing.assert_allclose(events * FPS, np.round(events * FPS))       # on the frame grid
    assert np.all(np.diff(events) >= MIN_GAP_S - 1e-9)
    assert events.min() >= EDGE_S and events.max() <= 3.0 - EDGE_S
    np.testing.assert_array_equal(clip.audio_events_s, events)


@pytest.mark.parametrize("label", CLASSES)
def test_scene_changes_only_at_events(label):
    """Between events frames are identical up to a uniform brightness shift (thunder's flash)."""
    clip = synth_clip(label, 1, fps=FPS)
    change = np.diff(clip.frames.astype(float), axis=0).reshape(len(clip.frames) - 1, -1)
    spread = change.std(axis=1)                                       # (F-1,) 0 for a uniform shift
    at_events = np.round(clip.video_events_s * FPS).astype(int) - 1
    assert np.all(spread[at_events] > 10)
    assert np.all(np.delete(spread, at_events) < 1)


def test_shift_delays_audio_and_drops_what_falls_out():
    clip = synth_clip("volleyball", 2, seconds=2.0, shift_s=0.3)
    shifted = clip.video_events_s + 0.3
    np.testing.assert_allclose(clip.audio_events_s, shifted[shifted < 2.0])


def test_classes_differ_by_mean_colour():
    """A nearest-centroid rule on mean frame colour separates the classes (tiny model's cue)."""
    colours = {c: np.array([synth_clip(c, s, size=32).frames.mean(axis=(0, 1, 2)) for s in range(4)])
               for c in CLASSES}
    centroids = {c: v.mean(axis=0) for c, v in colours.items()}
    for label, values in colours.items():
        for value in values:
            nearest = min(centroids, key=lambda c: np.linalg.norm(value - centroids[c]))
            assert nearest == label


def test_bad_requests_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown synthetic class 'cat'"):
        synth_clip("cat", 0)
    with pytest.raises(ConfigError, match="too short"):
        synth_clip("dog", 0, seconds=0.3)
    with pytest.raises(ConfigError, match="at least 2"):
        write_synthetic_dataset("unused", clips_per_class=1, shuffle_pairs=True)


def test_dataset_layout_and_manifest(dataset):
    root, rows = dataset
    assert [r.label for r in rows] == ["dog", "dog", "thunder", "thunder", "volleyball", "volleyball"]
    assert [r.split for r in rows] == ["train", "test"] * 3
    for row in rows:
        info = probe(root / f"{row.clip_id}.mp4")
        assert info.has_video and info.has_audio and info.fps == FPS
        assert info.duration_s == pytest.approx(2.0, abs=0.1)
        assert load_audio(root / f"{row.clip_id}.wav").shape == (32000,)
        assert row.video_events_s and row.audio_events_s == row.video_events_s
    assert (root / "synth.json").is_file()


def test_files_hold_the_recorded_events(dataset):
    """AV-Align's detectors, run on the files, find the manifest's events and nothing else."""
    root, rows = dataset
    for row in rows:
        result = av_align_video(root / f"{row.clip_id}.mp4")              # audio: the wav beside it
        assert_times_match(result.audio_peaks_s, row.audio_events_s, 0.04)
        assert_times_match(result.video_peaks_s, row.video_events_s, 1e-6)
        assert result.score == 1.0
        soundtrack = load_audio(root / f"{row.clip_id}.mp4", ONSET_SAMPLE_RATE)   # the AAC copy
        assert_times_match(onset_times(soundtrack), row.audio_events_s, 0.06)


def test_shifted_audio_is_found_shifted(tmp_path):
    rows = read_manifest(write_synthetic_dataset(tmp_path, ["dog"], 2, seed=5, shift_s=0.3))
    for row in rows:
        result = av_align_video(tmp_path / f"{row.clip_id}.mp4")
        np.testing.assert_allclose(row.audio_events_s, np.add(row.video_events_s, 0.3)[:len(row.audio_events_s)])
        assert_times_match(result.audio_peaks_s, row.audio_events_s, 0.04)
        assert result.score == 0.0


def test_shuffled_pairs_give_each_video_another_clips_sound(tmp_path):
    rows = read_manifest(write_synthetic_dataset(tmp_path, ["thunder"], 3, seed=1, shuffle_pairs=True))
    own = [synth_clip("thunder", clip_seed(1, "thunder", i)) for i in range(3)]
    sources = []
    for i, row in enumerate(rows):
        wave = load_audio(tmp_path / f"{row.clip_id}.wav")
        [source] = [j for j, clip in enumerate(own) if np.allclose(wave, clip.wave, atol=1e-4)]
        assert source != i
        np.testing.assert_allclose(row.video_events_s, own[i].video_events_s, atol=1e-6)
        np.testing.assert_allclose(row.audio_events_s, own[source].audio_events_s, atol=1e-6)
        sources.append(source)
    assert sorted(sources) == [0, 1, 2]


def test_cli_synth_writes_a_dataset_and_reports_bad_input(tmp_path, capsys):
    args = ["data", "synth", "--out", str(tmp_path), "--clips-per-class", "2", "--classes", "volleyball",
            "--seconds", "1.5", "--size", "32", "--fps", "8", "--shift-s", "0.125", "--seed", "4",
            "--layout", "canonical"]
    assert main(args) == 0
    assert json.loads((tmp_path / "synth.json").read_text())["config"]["layout"] == "canonical"
    assert "wrote 2 clips" in capsys.readouterr().out
    rows = read_manifest(tmp_path / "manifest.csv")
    assert [r.clip_id for r in rows] == ["synth_volleyball_0000", "synth_volleyball_0001"]
    for row in rows:
        np.testing.assert_allclose(row.audio_events_s, np.add(row.video_events_s, 0.125)[:len(row.audio_events_s)])
        assert probe(tmp_path / f"{row.clip_id}.mp4").fps == 8
    assert main(["data", "synth", "--out", str(tmp_path), "--clips-per-class", "1", "--seconds", "0.2"]) == 2
    assert "too short for an event" in capsys.readouterr().err


@pytest.mark.parametrize("label", CLASSES)
def test_canonical_layout_starts_every_clip_alike_and_keeps_the_events(label):
    canonical = [synth_clip(label, seed, seconds=1.0, fps=8.0, size=32, layout="canonical") for seed in range(4)]
    randomised = [synth_clip(label, seed, seconds=1.0, fps=8.0, size=32) for seed in range(4)]
    for clip, other in zip(canonical, randomised):
        np.testing.assert_array_equal(clip.video_events_s, other.video_events_s)   # same timing
    first = lambda clips: np.stack([c.frames[0] for c in clips]).astype(float)
    if label != "thunder":  # thunder's first frame is rain only: its streaks stay random
        assert np.abs(first(canonical) - first(canonical)[0]).max() == 0
        assert np.abs(first(randomised) - first(randomised)[0]).max() > 0
    with pytest.raises(ConfigError, match="unknown synthetic layout 'mirrored'"):
        synth_clip(label, 0, layout="mirrored")
