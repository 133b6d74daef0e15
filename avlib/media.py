"""Reading and writing audio and video files.

Composed clips are written through moviepy: any moviepy clip (:func:`write_clip`), comparison
clips (:func:`side_by_side`); :mod:`avlib.data.curate` cuts clips with it. What is hand-written
here goes through the ffmpeg binary that ``imageio-ffmpeg`` ships (argument lists, never a
shell string) and ``soundfile``:

* :func:`write_video` / :func:`write_videos`: frames with their audio muxed in, many files per
  ffmpeg process (the generated and synthetic clips, about a thousand per demo).
* :func:`read_video` / :func:`read_videos` / :func:`iter_videos`: every frame exactly as stored
  (moviepy's reader derives the frame count from duration x fps and can repeat or drop the last
  frame, which the metrics count), many files per ffmpeg process.
* :func:`load_audio`: any file as float32 mono at the rate asked for, refusing truncated
  wavs and empty or non-finite audio with one clear line.
* :func:`probe` / :func:`require_audio_track`: a container's duration and streams, without
  decoding it, and ffmpeg's error text reduced to its one meaningful line.
"""
from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import imageio_ffmpeg
import numpy as np
import soundfile

from avlib.errors import MediaError
from avlib.io import atomic_path

SAMPLE_RATE = 16_000


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


# ffmpeg's banner and stream listing, and imageio's wrapper text around them.
_FFMPEG_BANNER = re.compile(r"^(ffmpeg version|=== stderr ===|Could not load meta information|"
                            r"Input #|Output #|Stream mapping|Press \[q\])")
_FFMPEG_NOISE = re.compile(r"misdetection possible|deprecated|Guessed Channel Layout", re.IGNORECASE)
_FFMPEG_CONTEXT = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")   # "[in#0 @ 0x55d7ea5d4040] "


def ffmpeg_message(stderr: str | bytes) -> str:
    """The first line of ffmpeg's output that says what went wrong (banner, build
    configuration, stream listings and warnings skipped)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    for raw in stderr.splitlines():
        if raw[:1].isspace():  # build configuration, library versions, metadata
            continue
        line = _FFMPEG_CONTEXT.sub("", raw.strip())
        if line and not _FFMPEG_BANNER.match(line) and not _FFMPEG_NOISE.search(line):
            return line
    return "ffmpeg gave no reason"


def require_audio_track(path: str | Path) -> None:
    """Fail before any work when a media file ffmpeg reads has no sound in it (files it
    cannot read at all are left to the reader's own error)."""
    text = _probe_text([_require_file(path, "media")])
    if "Duration:" in text and "Audio:" not in text:
        raise MediaError(f"{path} has no audio track (give a file with sound, or its audio as a "
                         "wav beside it)")


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{what} file not found: {path} (check the path)")
    return path


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (deterministic, no extra dependency)."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # seconds to import; most audio is 16 kHz already

    ratio = Fraction(target_sr, orig_sr)
    out = resample_poly(wave, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Load any audio file (wav, flac, mp3) or a video's audio track as mono float32.

    Stereo is averaged to mono and any sample rate is resampled to ``sample_rate``.
    Raises :class:`MediaError` for a missing, unreadable or empty file.
    """
    path = _require_file(path, "audio")
    try:
        wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
    except Exception:
        wave, sr = _decode_audio_ffmpeg(path, sample_rate), sample_rate
    _check_wav_complete(path)
    if wave.size == 0:
        raise MediaError(f"audio file {path} contains no samples (use a clip of at least 0.1 s)")
    if not np.all(np.isfinite(wave)):
        raise MediaError(f"audio file {path} contains NaN or infinite samples (re-export it)")
    return resample(wave, int(sr), sample_rate)


def _check_wav_complete(path: Path) -> None:
    """Refuse a wav cut short: its header promises more audio than the file holds, and
    libsndfile would quietly return the part that is there."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                held = path.stat().st_size - handle.tell()
                # 0 and 0xFFFFFFFF mark streamed wavs whose size was never filled in.
                if size not in (0, 0xFFFFFFFF) and held < size:
                    raise MediaError(f"audio file {path} is truncated: its header promises {size} bytes "
                                     f"of audio, the file holds {held} (copy or export it again)")
                return
            handle.seek(size + size % 2, 1)  # chunks are padded to even sizes


def _decode_audio_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        require_audio_track(path)
        detail = ffmpeg_message(proc.stderr) if proc.stderr.strip() else "no audio stream"
        raise MediaError(
            f"cannot read audio from {path}: {detail} "
            "(give a wav/flac/mp3 file or a video with an audio track)"
        )
    return np.frombuffer(proc.stdout, dtype="<f4").copy()


def save_audio(path: str | Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float audio as a 16-bit PCM wav, atomically."""
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), np.asarray(wave, dtype=np.float32), sample_rate,
                        subtype="PCM_16", format="WAV")
    return Path(path)


def to_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) frames as uint8; floats are taken to be in [0, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"expected frames shaped (F, H, W, 3) with F >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return frames


# BT.601 studio range, the matrix ffmpeg and browsers assume for an untagged standard-definition
# stream, and the one these streams are tagged with (YUV_TAGS).
_RGB_TO_YUV = np.array([[65.481, 128.553, 24.966],
                        [-37.797, -74.203, 112.0],
                        [112.0, -93.786, -18.214]], dtype=np.float32) / 255.0
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)
YUV_TAGS = ["-color_range", "tv", "-colorspace", "smpte170m", "-color_primaries", "smpte170m",
            "-color_trc", "smpte170m"]


def yuv420p_frames(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) RGB frames -> the planar yuv420p bytes H.264 encodes, (F, H * W * 3 // 2) uint8,
    odd sizes padded by one edge pixel (yuv420p needs even ones).

    Converted here rather than by ffmpeg: its RGB -> YUV scaler gave a slightly different
    picture now and then for the same frames (one tiny clip in ~50 encodes), so the same
    frames did not always make the same mp4; this conversion is a pure function of the
    frames. Chroma is the mean of each 2x2 block."""
    frames = to_uint8_frames(frames)
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    f, h, w = frames.shape[:3]
    yuv = frames.astype(np.float32) @ _RGB_TO_YUV.T + _YUV_OFFSET                  # (F, H, W, 3)
    luma = yuv[..., 0]                                                              # (F, H, W)
    chroma = yuv[..., 1:].reshape(f, h // 2, 2, w // 2, 2, 2).mean(axis=(2, 4))    # (F, H/2, W/2, 2)
    planes = [luma.reshape(f, -1), chroma[..., 0].reshape(f, -1), chroma[..., 1].reshape(f, -1)]
    return np.rint(np.concatenate(planes, axis=1)).clip(0, 255).astype(np.uint8)


DEFAULT_CRF = 18  # x264 quality of every video avlib writes unless a caller asks for another
VIDEOS_PER_PROCESS = 16   # files one ffmpeg process encodes or decodes (raw frames wait in a temp folder)


def write_video(path: str | Path, frames: np.ndarray, fps: float,
                audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE,
                crf: int = DEFAULT_CRF) -> Path:
    """Encode frames (F, H, W, 3) as an H.264 (yuv420p) mp4, muxing ``audio`` (mono at
    ``sample_rate``) as AAC when given. The file appears at ``path`` only once complete
    (:func:`write_videos` of one)."""
    return write_videos([path], [frames], fps, [audio], sample_rate, crf)[0]


def write_videos(paths: Sequence[str | Path], videos: Sequence[np.ndarray], fps: float,
                 audios: Sequence[np.ndarray | None] | None = None, sample_rate: int = SAMPLE_RATE,
                 crf: int = DEFAULT_CRF) -> list[Path]:
    """:func:`write_video` of each ``videos[i]`` (F, H, W, 3) with ``audios[i]`` to ``paths[i]``,
    :data:`VIDEOS_PER_PROCESS` files per ffmpeg process fed raw frames and float samples, with
    moviepy's video settings (the same H.264 stream as :func:`write_clip`). The process's start-up
    is most of the cost of a small clip: moviepy started two per file and called Python per frame
    and per audio chunk; one process per file is 1.6x faster than that, 16 files per process 3.8x
    (``benchmarks/bench_write_video.py``). Each file appears only once complete; when
    a batch fails, its files are written one by one, so the error names the file at fault."""
    audios = [None] * len(paths) if audios is None else list(audios)
    if not len(paths) == len(videos) == len(audios):
        raise ValueError(f"{len(paths)} paths for {len(videos)} videos and {len(audios)} soundtracks")
    if len(paths) > VIDEOS_PER_PROCESS:
        batches = [slice(start, start + VIDEOS_PER_PROCESS) for start in range(0, len(paths), VIDEOS_PER_PROCESS)]
        return [path for part in batches
                for path in write_videos(paths[part], videos[part], fps, audios[part], sample_rate, crf)]
    inputs, outputs, count = [], [], 0                              # count: ffmpeg's inputs so far
    try:
        with tempfile.TemporaryDirectory(prefix="avlib-encode-") as scratch, contextlib.ExitStack() as files:
            for index, (path, frames, audio) in enumerate(zip(paths, videos, audios)):
                h, w = np.shape(frames)[1:3]
                raw = Path(scratch) / f"{index}.yuv"
                yuv420p_frames(frames).tofile(raw)
                streams = ["-map", f"{count}:v"]
                inputs += ["-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w + w % 2}x{h + h % 2}",
                           "-pix_fmt", "yuv420p", "-r", f"{fps:.6g}", "-i", str(raw)]
                count += 1
                if audio is not None:
                    samples = Path(scratch) / f"{index}.f32"
                    np.asarray(audio, dtype="<f4").reshape(-1).tofile(samples)
                    streams += ["-map", f"{count}:a", "-acodec", "aac", "-b:a", "128k", "-ar", str(sample_rate)]
                    inputs += ["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", str(samples)]
                    count += 1
                outputs += streams + ["-vcodec", "libx264", "-preset", "veryfast", "-crf", str(crf),
                                      "-pix_fmt", "yuv420p", *YUV_TAGS, "-movflags", "+faststart",
                                      str(files.enter_context(atomic_path(path)))]
            encoded = subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *inputs, *outputs],
                                     stdin=subprocess.DEVNULL, capture_output=True)
            if encoded.returncode:  # raised inside: every temporary file is removed
                raise MediaError(f"could not write {paths[0]}: {ffmpeg_message(encoded.stderr)}")
    except MediaError:
        if len(paths) == 1:
            raise
        return [write_video(path, frames, fps, audio, sample_rate, crf)
                for path, frames, audio in zip(paths, videos, audios)]
    return [Path(path) for path in paths]


def write_clip(clip, path: str | Path, fps: float | None = None, crf: int = DEFAULT_CRF,
               audio_fps: int = SAMPLE_RATE) -> Path:
    """Write a moviepy clip as H.264 (yuv420p) + AAC mp4, atomically; ffmpeg's complaint
    becomes one :class:`MediaError` line."""
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as scratch:
        try:
            clip.write_videofile(
                str(tmp), fps=fps, codec="libx264", preset="veryfast", audio_codec="aac",
                audio_bitrate="128k", audio_fps=audio_fps, temp_audiofile=str(Path(scratch) / "audio.m4a"),
                ffmpeg_params=["-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
                logger=None)
        except (OSError, ValueError) as exc:  # moviepy raises these with ffmpeg's stderr inside
            raise MediaError(f"could not write {path}: {ffmpeg_message(str(exc))}") from exc
    return Path(path)


def side_by_side(videos: list[str | Path], path: str | Path, height: int | None = None) -> Path:
    """A comparison clip: ``videos`` next to each other, left to right, each scaled to
    ``height`` (default: the first one's), as long as the shortest, with the first one's
    sound; e.g. a source clip beside the video generated from its audio."""
    from moviepy import VideoFileClip, clips_array  # heavy, and only this helper needs it

    clips = [VideoFileClip(str(_require_file(video, "video"))) for video in videos]
    try:
        height = height or clips[0].h
        height += height % 2
        # yuv420p needs even sizes: each clip at an even width too
        row = [clip.resized((max(2, round(clip.w * height / clip.h / 2) * 2), height)) for clip in clips]
        duration = min(clip.duration for clip in row)
        combined = clips_array([[clip.subclipped(0, duration) for clip in row]])
        combined = combined.with_audio(clips[0].audio.subclipped(0, duration) if clips[0].audio else None)
        return write_clip(combined, path, fps=clips[0].fps)
    finally:
        for clip in clips:
            clip.close()


BATCH_BYTES_ON_DISK = 4 * 2**20   # files decoded together: raw frames can be 100x their mp4


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode a video into uint8 RGB frames (F, H, W, 3) and its frame rate: its first video
    stream that is not an attached picture, through ffmpeg's pipe (imageio-ffmpeg's frame-reader
    command, the same bytes; ``tests/test_media.py``)."""
    path = _require_file(path, "video")
    decoded = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), *_raw_rgb(0), "-"],
                             capture_output=True)
    log = decoded.stderr.decode(errors="replace")
    if decoded.returncode:
        source = log.partition("Output #0")[0]
        reason = ("it has no video stream" if "Input #0" in source and "Video:" not in source
                  else ffmpeg_message(log))
        raise MediaError(f"cannot decode video {path}: {reason} (is it a valid mp4?)")
    sections = _log_sections(log)
    return _raw_frames(path, decoded.stdout, sections.get(("Input", 0), ""), sections.get(("Output", 0), ""))


def iter_videos(paths: Sequence[str | Path], per_process: int = VIDEOS_PER_PROCESS
                ) -> Iterator[tuple[np.ndarray, float]]:
    """:func:`read_video` of each of ``paths`` in order, up to ``per_process`` small files per
    ffmpeg process (:func:`read_videos`): consecutive files while their size on disk stays under
    :data:`BATCH_BYTES_ON_DISK`, so that large clips are decoded one at a time."""
    batch: list[Path] = []
    size = 0
    for path in map(Path, paths):
        path_size = path.stat().st_size if path.is_file() else 0
        if batch and (len(batch) == per_process or size + path_size > BATCH_BYTES_ON_DISK):
            yield from read_videos(batch)
            batch, size = [], 0
        batch.append(path)
        size += path_size
    yield from read_videos(batch)


def read_videos(paths: Sequence[str | Path]) -> list[tuple[np.ndarray, float]]:
    """:func:`read_video` of each of ``paths``, in one ffmpeg process: its start-up, not the
    decoding, is most of the cost of a small clip, so a batch of 16 tiny clips decodes 3.7x faster
    than one process per file (``benchmarks/bench_read_video.py``). Each file's raw frames wait in
    a file of their own in a temporary folder, so keep batches small (:func:`iter_videos`). When
    the batch fails, every file is decoded alone, so the error names the file at fault."""
    paths = [_require_file(path, "video") for path in paths]
    if len(paths) < 2:
        return [read_video(path) for path in paths]
    try:
        with tempfile.TemporaryDirectory(prefix="avlib-frames-") as scratch:
            raw = [Path(scratch) / f"{index}.rgb" for index in range(len(paths))]
            command = [ffmpeg_exe(), "-hide_banner", "-nostdin"]
            for path in paths:
                command += ["-i", str(path)]
            for index, out in enumerate(raw):
                command += [*_raw_rgb(index), str(out)]
            decoded = subprocess.run(command, capture_output=True)
            if decoded.returncode:
                raise MediaError(ffmpeg_message(decoded.stderr))
            sections = _log_sections(decoded.stderr.decode(errors="replace"))
            return [_raw_frames(path, out.read_bytes(), sections.get(("Input", index), ""),
                                sections.get(("Output", index), ""))
                    for index, (path, out) in enumerate(zip(paths, raw))]
    except (MediaError, OSError):  # a bad file, or no room for the raw frames: one at a time
        return [read_video(path) for path in paths]


def _raw_rgb(index: int) -> list[str]:
    """ffmpeg's output options for input ``index``: its first real video stream as raw RGB frames."""
    return ["-map", f"{index}:V:0", "-an", "-pix_fmt", "rgb24", "-vcodec", "rawvideo", "-f", "rawvideo"]


def _log_sections(log: str) -> dict[tuple[str, int], str]:
    """ffmpeg's stream listing per ("Input" | "Output", file number)."""
    parts = re.split(r"^(Input|Output) #(\d+)", log, flags=re.MULTILINE)
    return {(kind, int(number)): text for kind, number, text in zip(parts[1::3], parts[2::3], parts[3::3])}


def _raw_frames(path: Path, data: bytes, source: str, output: str) -> tuple[np.ndarray, float]:
    """Frames (F, H, W, 3) and frame rate from ffmpeg's raw output and its listing of the file."""
    size = re.search(r"Video:.*?, (\d+)x(\d+)[,\s\[]", output)
    fps = re.search(r"Video:.*?([\d.]+) fps", source)
    if size is None or not data:
        raise MediaError(f"video {path} has no frames")
    width, height = map(int, size.groups())
    if len(data) % (height * width * 3):
        raise MediaError(f"cannot decode video {path}: ffmpeg's frames are not whole {width}x{height} "
                         "RGB images (is it a valid mp4?)")
    frames = np.frombuffer(data, dtype=np.uint8).reshape(-1, height, width, 3)
    return frames.copy(), float(fps.group(1)) if fps else 0.0  # a writable array, as np.stack gave


def _probe_text(paths: Sequence[Path]) -> str:
    """ffmpeg's listing of ``paths`` (one ``Input #i`` section each, as far as it got)."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin"]
    for path in paths:
        command += ["-i", str(path)]
    return subprocess.run(command, capture_output=True).stderr.decode(errors="replace")


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float | None
    audio_sample_rate: int | None


def probe(path: str | Path) -> MediaInfo:
    """Container duration and streams, parsed from ``ffmpeg -i`` (no ffprobe needed)."""
    path = _require_file(path, "media")
    return _media_info(path, _probe_text([path]))


def probe_many(paths: Sequence[str | Path]) -> list[MediaInfo]:
    """:func:`probe` of each of ``paths``, :data:`VIDEOS_PER_PROCESS` files per ffmpeg process
    (its start-up is most of a probe's cost). When a batch fails, each of its files is probed
    alone, so the error names the file at fault."""
    paths = [_require_file(path, "media") for path in paths]
    infos = []
    for start in range(0, len(paths), VIDEOS_PER_PROCESS):
        batch = paths[start:start + VIDEOS_PER_PROCESS]
        sections = _log_sections(_probe_text(batch))
        try:
            infos += [_media_info(path, sections.get(("Input", index), "")) for index, path in enumerate(batch)]
        except MediaError:
            infos += [probe(path) for path in batch]
    return infos


def _media_info(path: Path, text: str) -> MediaInfo:
    """A file's :class:`MediaInfo` from ffmpeg's listing of it."""
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    if dur is None:
        raise MediaError(f"cannot read {path}: not a media file ffmpeg understands")
    hours, minutes, seconds = dur.groups()
    fps = re.search(r"Video:.*?([\d.]+) fps", text)
    rate = re.search(r"Audio:.*?(\d+) Hz", text)
    return MediaInfo(
        duration_s=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        has_video="Video:" in text,
        has_audio="Audio:" in text,
        fps=float(fps.group(1)) if fps else None,
        audio_sample_rate=int(rate.group(1)) if rate else None,
    )
