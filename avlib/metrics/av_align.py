"""AV-Align (TempoTokens): do audio onsets and visual motion peaks happen together?

Definition, as in TempoTokens' ``av_align.py`` (so scores equal upstream's on the same files):

- audio peaks: the audio read at librosa's default 22.05 kHz mono, ``onset_strength`` and
  ``onset_detect`` with their defaults, converted to seconds (:mod:`avlib.metrics.onsets`
  computes them with numpy, bit-identical to librosa, without librosa's start-up cost);
- video peaks: OpenCV decodes the frames (BGR), each consecutive grayscale pair gives a
  Farneback flow field whose mean magnitude is the motion at the later frame; the first
  value is repeated so there is one value per frame; a peak is a strict local maximum,
  at time ``i / fps``;
- score: ``matched / (|A| + |V| - matched)``, where an audio peak matches a video peak
  strictly within ``1 / fps`` of it.

Two upstream versions exist and their scores are NOT comparable, so every output names one:

- ``2025`` (2025-02-13, current): a video peak also needs a motion value >= 0.1, and each
  video peak matches at most one audio peak (the first unused one, in order).
- ``2023`` (October 2023): no threshold, and several audio peaks may match the same video
  peak, so a score can exceed 1 (TempoTokens issue #11).

Guard (ours, upstream has none): with no peak on either side upstream divides by zero; here
the score is 0.0 (no events, so no evidence of alignment). Any side without peaks, which
usually means silent audio or a frozen video, also raises a :class:`MetricWarning`.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from avlib.errors import ConfigError, MediaError
from avlib.media import load_audio, probe
from avlib.metrics import MetricWarning
from avlib.metrics.onsets import SAMPLE_RATE as ONSET_SAMPLE_RATE
from avlib.metrics.onsets import load_mono, onset_times
from avlib.metrics.stats import mean_with_ci

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                 poly_sigma=1.2, flags=0)


@dataclass(frozen=True)
class AVAlignVersion:
    """One upstream definition of AV-Align."""

    name: str
    motion_threshold: float | None  # minimum flow value of a video peak (None: any)
    one_to_one: bool                # a video peak matches at most one audio peak

    def describe(self) -> str:
        threshold = "none" if self.motion_threshold is None else f">= {self.motion_threshold}"
        matching = "one-to-one" if self.one_to_one else "many-to-one"
        return (f"TempoTokens AV-Align {self.name}: librosa onsets at {ONSET_SAMPLE_RATE} Hz, "
                f"Farneback flow peaks (threshold {threshold}), {matching} matching "
                "within 1/fps; 0.0 when no peaks (avlib guard)")


VERSIONS = {
    "2025": AVAlignVersion("2025", motion_threshold=0.1, one_to_one=True),
    "2023": AVAlignVersion("2023", motion_threshold=None, one_to_one=False),
}


def get_version(name: str) -> AVAlignVersion:
    if str(name) not in VERSIONS:
        raise ConfigError(f"unknown AV-Align version '{name}' (choose from: {', '.join(VERSIONS)})")
    return VERSIONS[str(name)]


@dataclass
class AVAlignResult:
    """Score and peaks of one video; ``warning`` is set when a side had no peaks."""

    video: str
    score: float
    audio_peaks_s: list[float]
    video_peaks_s: list[float]
    fps: float
    flow_trajectory: list[float] = field(repr=False)
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "audio_peaks_s": self.audio_peaks_s,
                "video_peaks_s": self.video_peaks_s, "fps": self.fps}


# --- audio -------------------------------------------------------------------------------

def load_onset_audio(video: Path) -> np.ndarray:
    """Mono audio at 22.05 kHz: ``{stem}.wav`` beside the video, else the video's own track.

    The wav is read exactly as upstream's ``librosa.load`` reads it (soxr_hq resampling);
    the mp4 fallback is decoded by ffmpeg straight at 22.05 kHz.
    """
    wav = video.with_suffix(".wav")
    if not wav.is_file():
        return load_audio(video, ONSET_SAMPLE_RATE)
    return load_mono(wav, ONSET_SAMPLE_RATE)


# --- video -------------------------------------------------------------------------------

def read_bgr_frames(video: Path) -> tuple[list[np.ndarray], float]:
    """Frames as OpenCV decodes them (BGR uint8) and the container's frame rate.

    OpenCV rather than :func:`avlib.media.read_video`, so the pixels, and hence the flow,
    are those upstream sees.
    """
    if not video.is_file():
        raise MediaError(f"video file not found: {video} (check the path)")
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise MediaError(f"OpenCV cannot open {video} (is it a valid mp4?)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if len(frames) < 2:
        raise MediaError(f"{video} has {len(frames)} frame(s); AV-Align needs at least 2")
    if not fps > 0:
        raise MediaError(f"{video} reports no frame rate (re-encode it with a fixed fps)")
    return frames, float(fps)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype, alignment: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts at a multiple of ``alignment`` bytes."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def mean_flow_magnitude(prev_gray: np.ndarray, next_gray: np.ndarray) -> float:
    """Mean Farneback flow magnitude from one grayscale frame to the next.

    ``cv2.magnitude`` rounds some elements differently depending on where its output
    lies in memory (its address modulo 32 bytes), so upstream's values, written wherever
    the allocator puts them, vary in the last bits from call to call (~1e-9 relative).
    Writing into a 64-byte-aligned buffer makes ours the same on every run.
    """
    flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)  # (H, W, 2)
    magnitude = aligned_empty(flow.shape[:2], np.float32)                          # (H, W)
    cv2.magnitude(flow[..., 0], flow[..., 1], magnitude=magnitude)
    return cv2.mean(magnitude)[0]


def flow_trajectory(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Motion per frame (F,): entry i is the flow from frame i-1 to i; entry 0 repeats entry 1."""
    gray = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in frames]
    motion = [mean_flow_magnitude(a, b) for a, b in zip(gray[:-1], gray[1:])]  # (F-1,)
    return np.array([motion[0], *motion], dtype=np.float64)


def motion_peaks(trajectory: np.ndarray, fps: float, threshold: float | None) -> np.ndarray:
    """Times (s) of strict local maxima of the trajectory; the end frames never count."""
    inner = trajectory[1:-1]
    is_peak = (trajectory[:-2] < inner) & (inner > trajectory[2:])
    if threshold is not None:
        is_peak &= inner >= threshold
    return (np.flatnonzero(is_peak) + 1) / fps


# --- score -------------------------------------------------------------------------------

def count_matches(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float,
                  one_to_one: bool) -> int:
    """Audio peaks with a video peak strictly within 1/fps (the first unused one if one-to-one)."""
    window = 1 / fps
    used = np.zeros(len(video_peaks), dtype=bool)
    matched = 0
    for audio_peak in audio_peaks:
        hits = (video_peaks - window < audio_peak) & (audio_peak < video_peaks + window)
        if one_to_one:
            hits &= ~used
        if hits.any():
            matched += 1
            if one_to_one:
                used[np.argmax(hits)] = True
    return matched


def alignment_score(audio_peaks: np.ndarray, video_peaks: np.ndarray, fps: float,
                    version: AVAlignVersion) -> tuple[float, str | None]:
    """The intersection-over-union score and a warning when a side has no peaks."""
    missing = [side for side, peaks in (("audio onsets", audio_peaks),
                                        ("motion peaks", video_peaks)) if len(peaks) == 0]
    warning = f"no {' and no '.join(missing)} found: score set to 0.0" if missing else None
    matched = count_matches(audio_peaks, video_peaks, fps, version.one_to_one)
    union = len(audio_peaks) + len(video_peaks) - matched
    return (matched / union if union else 0.0), warning


def av_align_video(video: str | Path, version: str = "2025") -> AVAlignResult:
    """AV-Align of one video (audio from ``{stem}.wav`` beside it, else its own track)."""
    definition = get_version(version)
    video = Path(video)
    frames, fps = read_bgr_frames(video)
    trajectory = flow_trajectory(frames)
    audio_peaks = onset_times(load_onset_audio(video))
    video_peaks = motion_peaks(trajectory, fps, definition.motion_threshold)
    score, warning = alignment_score(audio_peaks, video_peaks, fps, definition)
    return AVAlignResult(
        video=str(video), score=float(score), audio_peaks_s=audio_peaks.tolist(),
        video_peaks_s=video_peaks.tolist(), fps=fps, flow_trajectory=trajectory.tolist(),
        warning=f"{video.name}: {warning}" if warning else None,
    )


def default_workers() -> int:
    """One thread per usable CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    Each Farneback call allocates and frees ~3 MB of pyramids and matrices. By default
    glibc gives the freed top of the heap back to the kernel (and serves blocks over 128 kB
    with mmap), so the next call page-faults the same memory in again: 10-20% of the
    flow's CPU time, most of it system time. Process-wide and permanent, so only the CLI
    calls it (its process computes nothing else); library users may. No-op off glibc.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None) if sys.platform == "linux" else None
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed threshold on 64-bit
    mallopt(m_trim_threshold, 256 << 20)


@contextlib.contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's own thread pool at ``count`` threads meanwhile (process-wide), then as before."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def check_audio_sources(videos: Sequence[Path]) -> None:
    """Fail before any flow is computed if a video has neither ``{stem}.wav`` nor an audio track."""
    for video in videos:
        if not video.with_suffix(".wav").is_file() and not probe(video).has_audio:
            raise MediaError(f"no audio track in {video} (put {video.stem}.wav beside it "
                             "or mux the audio into the video)")


def av_align_videos(videos: Sequence[str | Path], version: str = "2025",
                    workers: int | None = None, progress: bool = True) -> list[AVAlignResult]:
    """AV-Align of many videos, ``workers`` at a time (threads), results in input order.

    Threads rather than processes: OpenCV's decoding and Farneback flow, the bulk of the
    work, release the GIL, so threads use every core with no process start-up, no pickling
    and no forking of a Jupyter kernel. With several workers OpenCV's own pool is set to
    one thread meanwhile: Farneback is serial inside (its pool did 2% of the work), and
    pool threads would only compete with the workers for the cores; the flow is the same
    for any OpenCV thread count. Warnings (no peaks) are re-issued here as
    :class:`MetricWarning`.
    """
    get_version(version)  # fail before any work
    videos = [Path(v) for v in videos]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise MediaError(f"video file(s) not found: {', '.join(missing[:3])} (check the paths)")
    check_audio_sources(videos)
    workers = default_workers() if workers is None else max(1, workers)
    with opencv_threads(1) if workers > 1 else contextlib.nullcontext(), \
            ThreadPoolExecutor(workers) as pool:
        results = pool.map(functools.partial(av_align_video, version=version), videos)
        if progress:
            from tqdm.auto import tqdm  # imports asyncio: only when a bar is shown

            results = tqdm(results, total=len(videos), desc=f"AV-Align {version}", unit="video")
        results = list(results)
    for result in results:
        if result.warning:
            warnings.warn(result.warning, MetricWarning, stacklevel=2)
    return results


def summarize(results: Sequence[AVAlignResult], version: str, seed: int = 0) -> dict[str, Any]:
    """The AV-Align JSON: per-video scores and peaks, mean, 95% bootstrap CI and N."""
    videos = {}
    for result in results:
        stem = Path(result.video).stem
        if stem in videos:
            raise MediaError(f"two videos share the name '{stem}' (score folders with unique "
                             "file names, or run them separately)")
        videos[stem] = result.to_json()
    summary = mean_with_ci([r.score for r in results], seed=seed)
    return {
        "version": str(version),
        "definition": get_version(version).describe(),
        "videos": videos,
        **summary,
        "warnings": [r.warning for r in results if r.warning],
    }
