"""AV-Align (TempoTokens): do audio onsets and visual motion peaks happen together?

Definition, as in TempoTokens' ``av_align.py`` (so scores equal upstream's on the same files):

- audio peaks: the audio read at librosa's default 22.05 kHz mono, ``onset_strength`` and
  ``onset_detect`` with their defaults, converted to seconds;
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

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import librosa
import numpy as np
from tqdm.auto import tqdm

from avlib.errors import ConfigError, MediaError
from avlib.media import load_audio
from avlib.metrics import MetricWarning
from avlib.metrics.stats import mean_with_ci

ONSET_SAMPLE_RATE = 22_050  # librosa.load's default rate, which upstream relies on
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

    The wav goes through ``librosa.load`` exactly as upstream reads it (soxr_hq resampling);
    the mp4 fallback is decoded by ffmpeg straight at 22.05 kHz.
    """
    wav = video.with_suffix(".wav")
    if not wav.is_file():
        return load_audio(video, ONSET_SAMPLE_RATE)
    try:
        wave, _ = librosa.load(wav, sr=ONSET_SAMPLE_RATE, mono=True)
    except Exception as exc:  # soundfile's errors name no common base class
        raise MediaError(f"cannot read audio {wav}: {exc} (re-export it as a PCM wav)") from exc
    return wave


def onset_times(wave: np.ndarray, sample_rate: int = ONSET_SAMPLE_RATE) -> np.ndarray:
    """Audio peak times in seconds: librosa's default onset detector."""
    envelope = librosa.onset.onset_strength(y=wave, sr=sample_rate)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate)
    return librosa.frames_to_time(frames, sr=sample_rate)


def compile_onset_detection() -> None:
    """Run the onset detector once, so librosa's numba kernels are compiled and cached.

    ``make setup`` calls this: numba writes its on-disk cache on first use, and several cold
    processes compiling at once (test workers, kernels, a process pool) have crashed with a
    segfault in librosa's ``peak_pick`` on a fresh install.
    """
    onset_times(np.random.default_rng(0).uniform(-1, 1, ONSET_SAMPLE_RATE // 2))


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


def mean_flow_magnitude(prev_gray: np.ndarray, next_gray: np.ndarray) -> float:
    flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)  # (H, W, 2)
    return cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0]


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


def av_align_video(video: str | Path, version: str = "2025",
                   before_audio: Callable[[], Any] | None = None) -> AVAlignResult:
    """AV-Align of one video (audio from ``{stem}.wav`` beside it, else its own track).

    ``before_audio`` is called between the flow and the audio (the pool waits there for
    librosa's warm-up).
    """
    definition = get_version(version)
    video = Path(video)
    frames, fps = read_bgr_frames(video)
    trajectory = flow_trajectory(frames)
    if before_audio is not None:
        before_audio()
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


def check_audio_sources(videos: Sequence[Path]) -> None:
    """Fail before any flow is computed if a video has neither ``{stem}.wav`` nor an audio track."""
    from avlib.media import probe

    for video in videos:
        if not video.with_suffix(".wav").is_file() and not probe(video).has_audio:
            raise MediaError(f"no audio track in {video} (put {video.stem}.wav beside it "
                             "or mux the audio into the video)")


def av_align_videos(videos: Sequence[str | Path], version: str = "2025",
                    workers: int | None = None, progress: bool = True) -> list[AVAlignResult]:
    """AV-Align of many videos, ``workers`` at a time (threads), results in input order.

    Threads rather than processes: OpenCV's decoding and Farneback flow, the bulk of the
    work, release the GIL, so threads use every core with no process start-up, no pickling
    and no forking of a Jupyter kernel. librosa's first use costs seconds of imports and
    numba cache loading in every process; the pool's first task pays it while the other
    threads already compute flows, and each video waits for it only when its flow is done.
    Warnings (no peaks) are re-issued here as :class:`MetricWarning`.
    """
    get_version(version)  # fail before any work
    videos = [Path(v) for v in videos]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise MediaError(f"video file(s) not found: {', '.join(missing[:3])} (check the paths)")
    check_audio_sources(videos)
    workers = default_workers() if workers is None else max(1, workers)
    bar = dict(total=len(videos), desc=f"AV-Align {version}", unit="video", disable=not progress)
    with ThreadPoolExecutor(workers) as pool:
        onsets_ready = pool.submit(compile_onset_detection)
        results = list(tqdm(pool.map(functools.partial(av_align_video, version=version,
                                                       before_audio=onsets_ready.result),
                                     videos), **bar))
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
