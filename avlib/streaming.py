"""Live audio in, a growing video out: the sources, the pacing and the writer of ``avlib stream``.

* :func:`audio_chunks`: 16 kHz mono float32 chunks from a file (ffmpeg decodes it as it is
  read, so a long file is never held whole) or from a WAV stream on a pipe (``-``), which is
  refused with one line when it ends before the length its header announced.
* :func:`paced`: chunks released no faster than a live source records them.
* :class:`FragmentedMp4Writer`: frames and their audio into an mp4 that plays while it grows
  (``-movflags frag_keyframe+empty_moov``, a keyframe each second), removed if the stream fails.
* :func:`run_stream`: the stream of :meth:`AudioToVideoPipeline.stream` through them, timed.
"""
from __future__ import annotations

import os
import queue
import resource
import subprocess
import sys
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from avlib.errors import MediaError
from avlib.media import DEFAULT_CRF, SAMPLE_RATE, YUV_TAGS, ffmpeg_exe, ffmpeg_message, resample, yuv420p_frames

CHUNK_SECONDS = 0.25          # what a source hands over at a time
PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def wav_stream_chunks(stream: BinaryIO, name: str = "the audio pipe",
                      chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Chunks of a PCM WAV read from ``stream`` as it arrives, at 16 kHz mono. The header is
    read at once, so a stream that is not WAV fails before anything else starts."""
    try:
        reader = wave.open(stream, "rb")
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{name} is not a PCM WAV stream ({str(exc) or 'it closed before its header'}): "
                         "send 16-bit PCM WAV, e.g. ffmpeg -i IN -f wav -ac 1 -ar 16000 -") from None
    if reader.getsampwidth() not in PCM_DTYPES:
        raise MediaError(f"{name} holds {8 * reader.getsampwidth()}-bit samples: send 8, 16 or 32-bit PCM WAV")
    return _wav_chunks(reader, name, chunk_seconds)


def _wav_chunks(reader: wave.Wave_read, name: str, chunk_seconds: float) -> Iterator[np.ndarray]:
    rate, channels, width = reader.getframerate(), reader.getnchannels(), reader.getsampwidth()
    announced = reader.getnframes()           # 0 or 2^32-ish from a live source: unknown
    known_length = 0 < announced < 0x7FFFFFFF // (channels * width)
    received, per_chunk = 0, max(1, round(chunk_seconds * rate))
    while data := reader.readframes(per_chunk):
        samples = np.frombuffer(data[: len(data) // (channels * width) * channels * width], PCM_DTYPES[width])
        samples = samples.reshape(-1, channels).astype(np.float32).mean(axis=1)
        samples = (samples - 128.0) / 128.0 if width == 1 else samples / float(2 ** (8 * width - 1))
        received += samples.size
        yield resample(samples, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else samples
    if known_length and received < announced:
        raise MediaError(f"{name} closed after {received / rate:.2f} s of the {announced / rate:.2f} s its WAV "
                         "header announced: keep the source open to its end")


def ffmpeg_chunks(path: Path, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """Chunks of any audio (or video) file, decoded by ffmpeg while they are read."""
    process = subprocess.Popen([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-vn",
                                "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    size = round(chunk_seconds * SAMPLE_RATE) * 4
    try:
        while data := process.stdout.read(size):
            yield np.frombuffer(data[: len(data) // 4 * 4], "<f4").copy()
        if process.wait():
            raise MediaError(f"cannot read audio from {path}: {ffmpeg_message(process.stderr.read())}")
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def audio_chunks(source: str | Path, chunk_seconds: float = CHUNK_SECONDS) -> Iterator[np.ndarray]:
    """16 kHz mono chunks from ``source``: a file, or ``-`` for a WAV stream on stdin."""
    if str(source) == "-":
        return wav_stream_chunks(sys.stdin.buffer, "the audio on stdin", chunk_seconds)
    path = Path(source)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path} (check the path)")
    if path.suffix.lower() == ".wav":
        return _wav_file_chunks(path, chunk_seconds)
    return ffmpeg_chunks(path, chunk_seconds)


def _wav_file_chunks(path: Path, chunk_seconds: float) -> Iterator[np.ndarray]:
    """A PCM wav read as a stream (a truncated one is refused); other wavs through ffmpeg."""
    stream = path.open("rb")
    try:
        return _closing(wav_stream_chunks(stream, str(path), chunk_seconds), stream)
    except MediaError:
        stream.close()
        return ffmpeg_chunks(path, chunk_seconds)


def _closing(chunks: Iterator[np.ndarray], stream: BinaryIO) -> Iterator[np.ndarray]:
    with stream:
        yield from chunks


def paced(chunks: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """``chunks`` handed over no sooner than a live source would have recorded them: each
    once the wall clock has passed its end since the first began."""
    start, recorded = None, 0
    for chunk in chunks:
        start = time.perf_counter() if start is None else start
        recorded += len(chunk)
        delay = start + recorded / sample_rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield chunk


class FragmentedMp4Writer:
    """H.264 frames + AAC audio into a fragmented mp4 that players can open while it grows.

    Frames go to ffmpeg's stdin, audio through a second pipe fed by its own thread (ffmpeg
    reads the two inputs at its own pace). ``abort()`` stops ffmpeg and removes the file."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], crf: int = DEFAULT_CRF):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        height, width = size
        self.pad = (height % 2, width % 2)       # yuv420p needs even sizes
        audio_read, self.audio_fd = os.pipe()
        self.process = subprocess.Popen(
            [ffmpeg_exe(), "-y", "-loglevel", "error",
             "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width + self.pad[1]}x{height + self.pad[0]}",
             "-r", f"{fps:.6g}", "-i", "pipe:0",
             "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", f"pipe:{audio_read}",
             "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
             "-g", str(max(1, round(fps))), "-bf", "0", "-pix_fmt", "yuv420p", *YUV_TAGS, "-c:a", "aac", "-b:a", "128k",
             "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-use_editlist", "1", "-f", "mp4", str(self.path)],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(audio_read,))
        os.close(audio_read)
        self.audio: queue.Queue = queue.Queue()
        self.audio_thread = threading.Thread(target=self._feed_audio, daemon=True)
        self.audio_thread.start()

    def _feed_audio(self) -> None:
        with os.fdopen(self.audio_fd, "wb") as pipe:
            while (samples := self.audio.get()) is not None:
                try:
                    pipe.write(np.asarray(samples, "<f4").tobytes())
                except BrokenPipeError:
                    return

    def write_audio(self, samples: np.ndarray) -> None:
        self.audio.put(samples)

    def write_frame(self, frame: np.ndarray) -> None:
        try:
            self.process.stdin.write(yuv420p_frames(frame[None]).tobytes())
        except BrokenPipeError:
            raise MediaError(f"cannot write {self.path}: {ffmpeg_message(self.process.stderr.read())}") from None

    def close(self) -> None:
        self.audio.put(None)
        self.audio_thread.join()
        self.process.stdin.close()
        if self.process.wait():
            message = ffmpeg_message(self.process.stderr.read())
            self.path.unlink(missing_ok=True)
            raise MediaError(f"cannot write {self.path}: {message}")

    def abort(self) -> None:
        self.process.kill()
        self.process.wait()
        self.audio.put(None)
        self.audio_thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


@dataclass
class StreamClock:
    """When audio came in and frames went out; the numbers of STATS.json."""
    fps: float
    first_audio: float | None = None
    first_audio_cpu: float = 0.0
    last_frame_cpu: float = 0.0
    first_frame: float | None = None
    last_frame: float | None = None
    frames: int = 0
    lags: list = field(default_factory=list)    # how far each frame came after its audio's end (s)

    def audio_in(self) -> None:
        if self.first_audio is None:
            self.first_audio, self.first_audio_cpu = time.perf_counter(), time.process_time()

    def frame_out(self) -> None:
        now = time.perf_counter()
        self.first_frame = now if self.first_frame is None else self.first_frame
        self.last_frame, self.last_frame_cpu = now, time.process_time()
        self.frames += 1
        self.lags.append(now - self.first_audio - self.frames / self.fps)

    def stats(self, realtime: bool) -> dict:
        wall = (self.last_frame - self.first_audio) if self.frames else 0.0
        video = self.frames / self.fps
        return {"video_seconds": round(video, 4), "wall_seconds": round(wall, 4),
                "real_time_factor": round(video / wall, 4) if wall else 0.0,
                "first_frame_latency_s": round(self.first_frame - self.first_audio, 4) if self.frames else None,
                "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "frames": self.frames, "max_lag_s": round(max(self.lags, default=0.0), 4),
                # CPU time of this process over the same span: what a machine shared with
                # other jobs cannot take away (video seconds per CPU second in cpu_real_time_factor)
                "cpu_seconds": round(self.last_frame_cpu - self.first_audio_cpu, 4),
                "cpu_real_time_factor": round(video / max(self.last_frame_cpu - self.first_audio_cpu, 1e-9), 4),
                "realtime_input": realtime}


def run_stream(pipeline, chunks: Iterable[np.ndarray], output: str | Path, prompt: str | None = None,
               realtime: bool = False, **options) -> dict:
    """Stream ``chunks`` through ``pipeline`` (its settings; ``options`` go to
    :meth:`AudioToVideoPipeline.stream`) into ``output`` (fragmented mp4); the timing
    stats (``video_seconds``, ``wall_seconds``, ``real_time_factor`` = video seconds per
    wall second from the first audio in to the last frame out, ``first_frame_latency_s``,
    ``peak_memory_mb``). With ``realtime`` the chunks come at a live source's pace."""
    from avlib.pipeline.long_video import require_audio_mapper

    require_audio_mapper(pipeline)
    settings = pipeline.settings
    clock = StreamClock(settings.fps)
    writer = FragmentedMp4Writer(output, settings.fps, (settings.height, settings.width))

    def timed(source: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for chunk in source:
            clock.audio_in()
            yield chunk

    source = timed(paced(chunks) if realtime else chunks)
    try:
        for frame in pipeline.stream(source, prompt, on_audio=writer.write_audio, **options):
            writer.write_frame(frame)
            clock.frame_out()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return clock.stats(realtime)
