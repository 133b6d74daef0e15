"""Curation: trimming a long video into a manifest's clips, idempotently, and checking status."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile

from avlib.cli import main
from avlib.data.curate import clip_files, count_states, curate, dataset_status
from avlib.data.manifests import ClipRow, default_manifest, read_manifest, write_manifest
from avlib.errors import AvlibError, ConfigError, MediaError
from avlib.media import probe, read_video, write_video

SOURCE_S, SOURCE_FPS = 30, 10


def brightness_at(t: float) -> int:
    """The source video's grey level at time t: it encodes time, to check where cuts fall."""
    return 20 + round(200 * t / SOURCE_S)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A 30 s, 10 fps source with 44.1 kHz stereo-origin audio (AAC in the mp4)."""
    times = np.arange(SOURCE_S * SOURCE_FPS) / SOURCE_FPS
    frames = np.stack([np.full((32, 48, 3), brightness_at(t), np.uint8) for t in times])
    audio_times = np.arange(SOURCE_S * 44100) / 44100
    audio = 0.3 * np.sin(2 * np.pi * 440 * audio_times)
    return write_video(tmp_path_factory.mktemp("source") / "long.mp4", frames, SOURCE_FPS,
                       audio=audio, sample_rate=44100)


@pytest.fixture(scope="module")
def dog_clips(long_video, tmp_path_factory):
    """The dog manifest cut from the 30 s video: the first 15 two-second clips fit."""
    out = tmp_path_factory.mktemp("dog")
    rows = read_manifest(default_manifest("dog"))
    return rows, out, curate(rows, out, source=long_video, progress=False)


def test_two_second_clips_have_the_right_count_duration_audio_and_place(dog_clips):
    rows, out, report = dog_clips
    assert len(report.written) == 15 and len(report.beyond_source) == 485
    assert sorted(report.written) == [f"dog_clip_{i:03d}" for i in range(1, 16)]
    for clip_id in report.written:
        mp4, wav = clip_files(out, clip_id)
        info = probe(mp4)
        assert info.has_video and info.has_audio
        assert info.duration_s == pytest.approx(2.0, abs=0.1)
        wave, rate = soundfile.read(wav)
        assert rate == 16000 and wave.ndim == 1 and len(wave) == pytest.approx(32000, abs=160)
        assert np.abs(wave).max() > 0.2                                 # the tone, not silence
    frames, fps = read_video(clip_files(out, "dog_clip_005")[0])       # starts at 8 s
    assert fps == SOURCE_FPS and len(frames) == 20
    assert abs(int(frames[0].mean()) - brightness_at(8.0)) <= 3
    assert abs(int(frames[-1].mean()) - brightness_at(9.9)) <= 3


def test_rerun_skips_done_clips(dog_clips, long_video):
    rows, out, _ = dog_clips
    mp4 = clip_files(out, "dog_clip_001")[0]
    before = mp4.stat().st_mtime_ns
    again = curate(rows, out, source=long_video, progress=False)
    assert len(again.skipped) == 15 and again.written == []
    assert mp4.stat().st_mtime_ns == before


def test_ten_second_clips_through_the_cli(long_video, tmp_path, capsys):
    out = tmp_path / "thunder"
    code = main(["data", "curate", "--manifest", str(default_manifest("thunder")),
                 "--source", str(long_video), "--out", str(out)])
    assert code == 0
    assert "written 3" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [f"clip_1_00{i}.{ext}" for i in (1, 2, 3) for ext in ("mp4", "wav")]
    for i in (1, 2, 3):
        assert probe(out / f"clip_1_00{i}.mp4").duration_s == pytest.approx(10.0, abs=0.1)


def test_status_counts_present_missing_corrupt(dog_clips, long_video, tmp_path, capsys):
    _, cut, _ = dog_clips
    rows = [ClipRow(f"dog_clip_{i:03d}", "dog", "train", "", 2.0 * (i - 1), 2.0 * i) for i in range(1, 8)]
    for row in rows[:5]:                                   # a dataset folder with 5 of 7 clips...
        for path in clip_files(cut, row.clip_id):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "dog_clip_001.mp4").write_bytes(b"not a video")          # ...one mp4 garbage,
    (tmp_path / "dog_clip_002.wav").unlink()                               # one wav lost,
    mp4 = (tmp_path / "dog_clip_003.mp4").read_bytes()
    (tmp_path / "dog_clip_003.mp4").write_bytes(mp4[: len(mp4) // 3])     # one mp4 truncated
    statuses = {s.clip_id: s for s in dataset_status(rows, tmp_path, progress=False)}
    assert count_states(statuses.values()) == {"present": 2, "missing": 2, "corrupt": 3}
    assert "dog_clip_002.wav" in statuses["dog_clip_002"].reason

    manifest = tmp_path / "m.csv"
    write_manifest(manifest, rows)
    out_json = tmp_path / "status.json"
    assert main(["data", "status", "--manifest", str(manifest), "--root", str(tmp_path),
                 "--json", str(out_json)]) == 0
    assert "present 2  missing 2  corrupt 3  (of 7 clips)" in capsys.readouterr().out
    record = json.loads(out_json.read_text())
    assert record["counts"] == {"present": 2, "missing": 2, "corrupt": 3}
    assert len(record["clips"]) == 7 and "versions" in record


def test_sources_are_checked(tmp_path):
    rows = [ClipRow("a", "dog", "train", "", 0.0, 2.0)]
    with pytest.raises(ConfigError, match="exactly one clip source"):
        curate(rows, tmp_path)
    silent = write_video(tmp_path / "silent.mp4", np.zeros((30, 16, 16, 3), np.uint8), 10)
    with pytest.raises(MediaError, match="needs both a video and an audio track"):
        curate(rows, tmp_path, source=silent)
    with pytest.raises(MediaError, match="not found"):
        curate(rows, tmp_path, source=tmp_path / "nope.mp4")


def test_download_without_yt_dlp_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yt_dlp", None)          # import yt_dlp -> ImportError
    rows = [ClipRow("abcdefghijk_000000", "playing volleyball", "train", "abcdefghijk", 0.0, 10.0)]
    with pytest.raises(AvlibError, match=r'pip install "avlib\[download\]"'):
        curate(rows, tmp_path, download=True, progress=False)
