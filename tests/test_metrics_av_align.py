"""AV-Align: upstream parity on the shared fixtures, both versions, zero-peak guards, CLI."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from avlib.cli import main
from avlib.errors import ConfigError, MediaError
from avlib.media import load_audio, read_video, save_audio, write_video
from avlib.metrics import MetricWarning
from avlib.metrics.av_align import (VERSIONS, AVAlignResult, alignment_score, av_align_video,
                                    av_align_videos, count_matches, motion_peaks, summarize)

FIXTURE_NAMES = ("aligned", "shifted_0p3s", "static_clicks", "moving_silent")


def _result(path) -> AVAlignResult:
    return AVAlignResult(str(path), 0.5, [0.1], [0.1], 12.0, [0.0])


@pytest.fixture(scope="module")
def expected(fixtures_dir):
    return json.loads((fixtures_dir / "av_align" / "expected.json").read_text())


@pytest.fixture(scope="module")
def fixture_results(fixtures_dir):
    """All fixture pairs scored through the parallel path (two processes), with warnings."""
    videos = [fixtures_dir / "av_align" / f"{name}.mp4" for name in FIXTURE_NAMES]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = av_align_videos(videos, "2025", workers=2, progress=False)
    return dict(zip(FIXTURE_NAMES, results)), [str(w.message) for w in caught
                                               if issubclass(w.category, MetricWarning)]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_matches_upstream_scores_and_peaks(fixture_results, expected, name):
    result, want = fixture_results[0][name], expected[name]
    assert result.score == pytest.approx(want["score"], abs=1e-6)
    assert result.fps == want["fps"]
    assert len(result.flow_trajectory) == want["n_frames"]
    np.testing.assert_allclose(result.audio_peaks_s, want["audio_peaks_s"], atol=1e-6)
    np.testing.assert_allclose(result.video_peaks_s, want["video_peaks_s"], atol=1e-6)
    np.testing.assert_allclose(result.flow_trajectory, want["flow_trajectory"], atol=1e-6)


def test_no_onsets_and_no_motion_warn(fixture_results):
    results, messages = fixture_results
    assert results["static_clicks"].warning and "no motion peaks" in results["static_clicks"].warning
    assert results["moving_silent"].warning and "no audio onsets" in results["moving_silent"].warning
    assert results["aligned"].warning is None
    assert sorted(messages) == sorted([results["static_clicks"].warning,
                                       results["moving_silent"].warning])


def test_neither_side_with_peaks_is_zero_not_an_error(tmp_path):
    """Upstream divides by zero here; the guard gives 0.0 and a warning."""
    video = tmp_path / "still_silent.mp4"
    write_video(video, np.full((12, 32, 32, 3), 90, np.uint8), fps=12)
    save_audio(tmp_path / "still_silent.wav", np.zeros(16000, np.float32))
    with pytest.warns(MetricWarning, match="no audio onsets and no motion peaks"):
        [result] = av_align_videos([video], workers=1, progress=False)
    assert result.score == 0.0 and result.audio_peaks_s == [] and result.video_peaks_s == []


def test_audio_falls_back_to_the_videos_own_track(tmp_path, fixtures_dir, expected):
    frames, fps = read_video(fixtures_dir / "av_align" / "aligned.mp4")
    audio = load_audio(fixtures_dir / "av_align" / "aligned.wav")
    video = tmp_path / "muxed.mp4"  # no muxed.wav beside it
    write_video(video, frames, fps, audio=audio)
    result = av_align_video(video)
    assert result.score == 1.0
    # AAC coding may move onsets by a hop or so; they stay within one video frame.
    np.testing.assert_allclose(result.audio_peaks_s, expected["aligned"]["audio_peaks_s"], atol=0.05)


def test_versions_differ_in_matching_and_threshold():
    fps = 12.0
    audio, video = np.array([0.50, 0.52]), np.array([0.5])
    assert count_matches(audio, video, fps, one_to_one=True) == 1
    assert count_matches(audio, video, fps, one_to_one=False) == 2
    assert alignment_score(audio, video, fps, VERSIONS["2025"])[0] == pytest.approx(0.5)
    assert alignment_score(audio, video, fps, VERSIONS["2023"])[0] == pytest.approx(2.0)  # > 1
    # A weak motion peak (0.05) only counts without the 2025 threshold.
    trajectory = np.array([0.0, 0.05, 0.0, 0.0, 0.9, 0.0])
    np.testing.assert_allclose(motion_peaks(trajectory, fps, 0.1), [4 / fps])
    np.testing.assert_allclose(motion_peaks(trajectory, fps, None), [1 / fps, 4 / fps])
    # The window is strict: exactly 1/fps away does not match.
    assert count_matches(np.array([0.5 + 1 / fps]), np.array([0.5]), fps, True) == 0


def test_2023_version_on_fixture(fixtures_dir):
    result = av_align_video(fixtures_dir / "av_align" / "aligned.mp4", version="2023")
    # Without the threshold, the tiny 2e-7 flow plateaus add no strict maxima here.
    assert result.video_peaks_s == pytest.approx([0.5, 1.1666666666666667, 1.9166666666666667, 2.5])
    assert result.score == 1.0


def test_bad_inputs_raise_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="2025"):
        av_align_videos([tmp_path / "x.mp4"], version="2024")
    with pytest.raises(MediaError, match="not found"):
        av_align_videos([tmp_path / "missing.mp4"])
    with pytest.raises(MediaError, match="two videos share"):
        summarize([_result(tmp_path / "a" / "x.mp4"), _result(tmp_path / "x.mp4")], "2025")


def test_cli_writes_the_documented_json(tmp_path, fixtures_dir):
    for name in ("aligned", "shifted_0p3s"):
        for suffix in (".mp4", ".wav"):
            shutil.copy(fixtures_dir / "av_align" / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    out = tmp_path / "out.json"
    code = main(["metrics", "av-align", str(tmp_path / "aligned.mp4"), str(tmp_path / "shifted_0p3s.mp4"),
                 "--version", "2023", "--workers", "1", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"version", "videos", "mean", "ci95", "n"} <= set(data)
    assert data["version"] == "2023" and data["n"] == 2
    assert set(data["videos"]) == {"aligned", "shifted_0p3s"}
    assert set(data["videos"]["aligned"]) == {"score", "audio_peaks_s", "video_peaks_s", "fps"}
    assert data["mean"] == pytest.approx(0.5)  # 1.0 (aligned) and 0.0 (shifted)
    assert data["ci95"][0] <= data["mean"] <= data["ci95"][1]
    assert "versions" in data["run_record"]


def test_cli_reports_a_missing_video_in_one_line(tmp_path, capsys):
    code = main(["metrics", "av-align", str(tmp_path / "nope.mp4"), "--json", str(tmp_path / "o.json")])
    assert code == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_cli_takes_a_folder_and_pairs_by_stem(tmp_path, fixtures_dir, expected):
    for name in ("aligned", "shifted_0p3s"):
        for suffix in (".mp4", ".wav"):
            shutil.copy(fixtures_dir / "av_align" / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    out = tmp_path / "out" / "align.json"
    assert main(["metrics", "av-align", str(tmp_path), "--quiet", "--json", str(out)]) == 0
    videos = json.loads(out.read_text())["videos"]
    assert set(videos) == {"aligned", "shifted_0p3s"}
    for name, result in videos.items():
        assert result["score"] == pytest.approx(expected[name]["score"], abs=1e-6)
        np.testing.assert_allclose(result["video_peaks_s"], expected[name]["video_peaks_s"], atol=1e-6)


def test_no_audio_track_fails_before_any_flow(tmp_path, fixtures_dir, monkeypatch, capsys):
    shutil.copy(fixtures_dir / "av_align" / "aligned.mp4", tmp_path / "aligned.mp4")
    shutil.copy(fixtures_dir / "av_align" / "aligned.wav", tmp_path / "aligned.wav")
    silent = tmp_path / "silent.mp4"
    write_video(silent, np.zeros((6, 32, 32, 3), np.uint8), fps=12)  # no track, no silent.wav

    def no_flow(*args, **kwargs):
        raise AssertionError("flow computed before the audio check")

    monkeypatch.setattr("avlib.metrics.av_align.flow_trajectory", no_flow)
    with pytest.raises(MediaError, match="no audio track in .*silent.mp4"):
        av_align_videos([tmp_path / "aligned.mp4", silent], progress=False)
    out = tmp_path / "o.json"
    assert main(["metrics", "av-align", str(tmp_path), "--json", str(out)]) == 2
    assert "no audio track in" in capsys.readouterr().err and not out.exists()


def test_the_cli_imports_no_generation_stack(tmp_path):
    """`avlib metrics av-align` loads neither the generation stack nor librosa (and numba)."""
    import subprocess
    import sys

    code = ("import sys; from avlib.cli import main; "
            f"main(['metrics', 'av-align', {str(tmp_path / 'absent.mp4')!r}, '--json', 'x.json']); "
            "print(sorted({'torch', 'diffusers', 'transformers', 'librosa', 'numba'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_flow_is_the_same_for_any_opencv_thread_count(fixtures_dir):
    """The pool runs OpenCV single-threaded while its workers run; that must not move a bit."""
    import cv2

    from avlib.metrics.av_align import flow_trajectory, opencv_threads, read_bgr_frames

    frames, _ = read_bgr_frames(fixtures_dir / "av_align" / "aligned.mp4")
    default = cv2.getNumThreads()
    trajectories = []
    for count in (1, 4, 0):
        with opencv_threads(count):
            assert cv2.getNumThreads() == max(count, 1)
            trajectories.append(flow_trajectory(frames))
    assert cv2.getNumThreads() == default  # restored
    for trajectory in trajectories[1:]:
        np.testing.assert_array_equal(trajectory, trajectories[0])
