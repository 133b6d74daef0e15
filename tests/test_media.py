import numpy as np
import pytest
import soundfile

from avlib.errors import MediaError
from avlib.media import load_audio, probe, read_video, write_video


def _frames(n=12, size=32):
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    frame = np.stack([np.tile(ramp, (size, 1))] * 3, axis=-1)
    return np.stack([np.roll(frame, i, axis=1) for i in range(n)])


def test_mp4_writer_keeps_frames_fps_and_audio(tmp_path):
    audio = 0.2 * np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)  # 1 s
    out = write_video(tmp_path / "clip.mp4", _frames(12), fps=12, audio=audio)
    info = probe(out)
    assert info.has_video and info.has_audio and info.fps == 12.0
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    frames, fps = read_video(out)
    assert frames.shape == (12, 32, 32, 3) and fps == 12.0
    assert np.abs(frames.astype(int) - _frames(12).astype(int)).mean() < 8  # lossy but close
    decoded = load_audio(out)
    assert decoded.shape[0] == pytest.approx(16000, abs=1100)
    assert list(tmp_path.iterdir()) == [out]  # no temporary files left behind


def test_mp4_writer_without_audio_and_odd_size(tmp_path):
    out = write_video(tmp_path / "odd.mp4", np.zeros((5, 15, 17, 3)), fps=5)
    info = probe(out)
    assert not info.has_audio and read_video(out)[0].shape == (5, 16, 18, 3)


def test_mp4_writer_failure_is_one_line_and_leaves_nothing(tmp_path):
    with pytest.raises(MediaError, match=r"could not write .*bad\.mp4: .*") as error:
        write_video(tmp_path / "bad.mp4", _frames(4), fps=-1.0)     # ffmpeg refuses a negative rate
    assert "\n" not in str(error.value) and list(tmp_path.iterdir()) == []


def test_many_videos_encode_in_one_process_as_each_alone(tmp_path, monkeypatch):
    """write_videos: the same bytes as write_video file by file (with and without sound, odd
    sizes); a failing batch is written file by file, so the error names the file at fault."""
    import avlib.media
    from avlib.media import write_videos

    rng = np.random.default_rng(2)
    videos = [rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for n, h, w in [(8, 32, 32), (5, 15, 17), (8, 32, 32)]]
    audios = [rng.uniform(-0.3, 0.3, 8000).astype(np.float32), None, rng.uniform(-0.3, 0.3, 16000).astype(np.float32)]
    alone = [write_video(tmp_path / f"alone{i}.mp4", v, 8.0, audio=a) for i, (v, a) in enumerate(zip(videos, audios))]
    together = write_videos([tmp_path / f"together{i}.mp4" for i in range(3)], videos, 8.0, audios)
    assert [p.read_bytes() for p in together] == [p.read_bytes() for p in alone]
    with pytest.raises(ValueError, match="F >= 1"):
        write_video(tmp_path / "empty.mp4", np.zeros((0, 8, 8, 3), np.uint8), 8.0)

    run = avlib.media.subprocess.run

    def refuse_bad(command, **kwargs):  # ffmpeg fails for any command that writes bad.mp4
        if any(str(word).endswith(".mp4") and ".bad.mp4.tmp" in str(word) for word in command):
            command = [*command[:-1], "/nonexistent-folder/x.mp4"]
        return run(command, **kwargs)

    monkeypatch.setattr(avlib.media.subprocess, "run", refuse_bad)
    out = tmp_path / "batch"
    with pytest.raises(MediaError, match=r"could not write .*bad\.mp4"):
        write_videos([out / "good.mp4", out / "bad.mp4"], videos[:2], 8.0, audios[:2])
    assert sorted(p.name for p in out.iterdir()) == ["good.mp4"]  # complete files only


def test_yuv420p_frames_is_bt601_studio_range_with_block_mean_chroma():
    from avlib.media import yuv420p_frames

    frame = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 0, 0], [0, 0, 255]]], np.uint8)  # black white / red blue
    yuv = yuv420p_frames(frame[None])
    # Y per pixel (row major), then the block's Cb and Cr: the mean of 128, 128, 90.2, 240 and of 128, 128, 240, 109.8
    assert yuv.tolist() == [[16, 235, 81, 41, 147, 151]]
    odd = yuv420p_frames(np.zeros((3, 5, 7, 3)))                # floats in [0, 1], padded to 6 x 8
    assert odd.shape == (3, 6 * 8 * 3 // 2) and set(odd[:, :48].ravel()) == {16}


def test_the_same_frames_always_make_the_same_mp4(tmp_path):
    """ffmpeg's own RGB -> YUV conversion made a slightly different picture now and then (one tiny
    clip in ~50 encodes); the frames are converted before ffmpeg sees them, so the bytes repeat."""
    from avlib.media import write_videos

    rng = np.random.default_rng(5)
    videos = [rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8) for _ in range(16)]
    encodes = [[p.read_bytes() for p in write_videos([tmp_path / f"{trial}_{i}.mp4" for i in range(16)], videos, 8.0)]
               for trial in range(3)]
    assert encodes[1] == encodes[0] and encodes[2] == encodes[0]


@pytest.mark.parametrize("fps,size", [(12.0, (32, 32)), (29.97, (15, 17)), (12.5, (24, 40))])
def test_read_video_gives_imageio_ffmpegs_frames_and_rate(tmp_path, fps, size):
    """read_video runs ffmpeg itself (one process, no polling); imageio-ffmpeg's frame reader,
    which it replaced, is the reference for every byte and the frame rate."""
    import imageio_ffmpeg

    audio = 0.2 * np.sin(np.linspace(0, 900, 8000)).astype(np.float32)
    rng = np.random.default_rng(0)
    out = write_video(tmp_path / "clip.mp4", rng.integers(0, 256, (9, *size, 3), dtype=np.uint8), fps=fps,
                      audio=audio)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    width, height = meta["size"]
    expected = np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader])
    frames, rate = read_video(out)
    assert frames.dtype == np.uint8 and frames.flags.writeable
    assert frames.shape == expected.shape == (9, size[0] + size[0] % 2, size[1] + size[1] % 2, 3)
    assert np.array_equal(frames, expected) and rate == meta["fps"] == fps


def test_many_videos_decode_in_one_process_as_each_alone(tmp_path):
    """read_videos / iter_videos: mixed sizes, rates and lengths in one ffmpeg process give each
    file's read_video frames and rate, in order; a bad file in a batch is named."""
    from avlib.media import iter_videos, read_videos

    rng = np.random.default_rng(1)
    shapes = [(9, 32, 32, 12.0), (5, 15, 17, 29.97), (12, 24, 40, 12.5), (8, 32, 32, 8.0)] * 2
    videos = [write_video(tmp_path / f"v{i}.mp4", rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), fps=fps,
                          audio=np.zeros(4000, np.float32) if i % 2 else None)
              for i, (n, h, w, fps) in enumerate(shapes)]
    alone = [read_video(video) for video in videos]
    for together in (read_videos(videos), list(iter_videos(videos, per_process=3))):
        assert len(together) == len(alone)
        for (frames, fps), (expected, expected_fps) in zip(together, alone):
            assert np.array_equal(frames, expected) and fps == expected_fps
    assert [len(frames) for frames, _ in alone] == [n for n, *_ in shapes]
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(MediaError, match="cannot decode video .*broken.mp4"):
        read_videos([videos[0], tmp_path / "broken.mp4", videos[1]])


def test_many_files_probe_in_one_process_as_each_alone(tmp_path, monkeypatch):
    """probe_many: durations, rates and streams of files of mixed sizes, rates and lengths, as
    probe gives them one by one, with one ffmpeg process per batch; a bad file is named."""
    import subprocess

    from avlib import media

    rng = np.random.default_rng(2)
    shapes = [(9, 32, 32, 12.0), (5, 16, 18, 29.97), (24, 24, 40, 8.0)] * 2
    videos = [write_video(tmp_path / f"v{i}.mp4", rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), fps=fps,
                          audio=np.zeros(4000, np.float32) if i % 2 else None)
              for i, (n, h, w, fps) in enumerate(shapes)]
    alone = [probe(video) for video in videos]
    assert [info.fps for info in alone] == [fps for *_, fps in shapes] and alone[1].has_audio and not alone[0].has_audio
    calls, run = [], subprocess.run
    monkeypatch.setattr(media.subprocess, "run", lambda command, **kw: calls.append(command) or run(command, **kw))
    monkeypatch.setattr(media, "VIDEOS_PER_PROCESS", 4)
    assert media.probe_many(videos) == alone and len(calls) == 2
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 broken")
    with pytest.raises(MediaError, match="cannot read .*broken.mp4"):
        media.probe_many([videos[0], tmp_path / "broken.mp4", videos[1]])


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"\x00\x00\x00\x18ftypmp42 broken", "cannot decode"),
                                           ("audio only", "has no video stream")])
def test_read_video_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    if content == "audio only":
        soundfile.write(tmp_path / "tone.wav", np.zeros(1600, np.float32), 16000)
        path = tmp_path / "tone.wav"
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match) as caught:
        read_video(path)
    assert path.name in str(caught.value) and "\n" not in str(caught.value)


def test_load_audio_resamples_and_mixes_stereo(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "s.wav", stereo, 44100)
    wave = load_audio(tmp_path / "s.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.shape[0] == 16000
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.02)  # mono = mean of the channels


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"not audio at all", "cannot read audio")])
def test_load_audio_errors_name_the_file(tmp_path, content, match):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        load_audio(path)


@pytest.mark.parametrize("fps,frames", [(8.0, 8), (12.0, 24)])
def test_mp4_writer_muxes_the_audio_within_one_frame(tmp_path, fps, frames):
    seconds = frames / fps
    t = np.arange(round(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    out = write_video(tmp_path / "muxed.mp4", _frames(frames), fps=fps, audio=audio)
    info = probe(out)
    assert info.has_audio and info.audio_sample_rate == 16000
    assert abs(info.duration_s - seconds) <= 1 / fps
    decoded = load_audio(out)
    assert abs(decoded.size - audio.size) <= 16000 / fps
    n = min(decoded.size, audio.size) - 2000    # AAC's edges aside, the same tone comes back
    assert np.corrcoef(decoded[1000:n], audio[1000:n])[0, 1] > 0.99
    assert read_video(out)[0].shape[0] == frames


def test_side_by_side_puts_videos_in_a_row_with_the_first_ones_sound(tmp_path):
    from avlib.media import side_by_side

    audio = 0.2 * np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    left = write_video(tmp_path / "left.mp4", _frames(12, size=32), fps=12, audio=audio)
    right = write_video(tmp_path / "right.mp4", np.zeros((6, 16, 16, 3), np.uint8), fps=12)  # 0.5 s
    out = side_by_side([left, right], tmp_path / "both.mp4")
    frames, fps = read_video(out)
    assert frames.shape[1:] == (32, 64, 3) and fps == 12.0        # right scaled to 32x32
    assert frames.shape[0] == pytest.approx(6, abs=1)             # as long as the shorter
    assert frames[:, :, 40:].mean() < 10 < frames[:, :, :32].mean()  # black beside the ramp
    assert probe(out).has_audio
    with pytest.raises(MediaError, match="not found"):
        side_by_side([left, tmp_path / "nope.mp4"], tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
