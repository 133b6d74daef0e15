"""Measures of videos longer than one window: seams, and AV-Align over the whole video.

**Seam score.** A long video made of windows of ``W`` frames (the mapper's window) can jump
where one window ends and the next begins. The frame change of a pair of consecutive frames is
their mean absolute pixel difference (frames in [0, 1]); the seam score is the mean change of
the pairs that cross a window boundary (frame ``kW - 1`` to ``kW``) over the mean change of the
pairs inside windows. 1.0: the boundaries change no more than anywhere else (seamless); above
1: seams. Its 95% interval is a percentile bootstrap that resamples boundary pairs and inside
pairs separately (each set with replacement, its own size), seeded. ``avlib evaluate`` adds it
to a run's metrics when its samples are longer than one window.

**AV-Align over a whole video.** :func:`avlib.metrics.av_align.av_align_video` scores a video of
any length; :func:`av_align_segments` adds the score of each ``segment_seconds`` piece (the
peaks inside it), whose bootstrap interval says how much the alignment varies along the video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avlib.errors import MediaError
from avlib.io import read_json
from avlib.media import iter_videos
from avlib.metrics.av_align import alignment_score, av_align_video, get_version
from avlib.metrics.stats import N_RESAMPLES, bootstrap_replicates, mean_with_ci, percentile_interval


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) frames in [0, 1] (or uint8) -> (N-1,) mean absolute change per pair."""
    frames = np.asarray(frames)
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    frames = frames.astype(np.float32) / scale
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def boundary_pairs(num_frames: int, window: int) -> np.ndarray:
    """(N-1,) bool: pair ``i`` (frame i to i+1) crosses a window boundary."""
    return (np.arange(1, num_frames) % window) == 0


SEAM_SCORE_DEFINITION = ("mean frame change (mean absolute pixel difference, frames in [0, 1]) of the "
                         "consecutive-frame pairs that cross a window boundary over that of the pairs "
                         "inside windows; 1.0: seamless, above 1: seams")


def seam_score(videos: Sequence[np.ndarray], window: int, seed: int = 0,
               n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """The seam score of ``videos`` (each (N, H, W, 3)) made of ``window``-frame windows,
    pooled over their pairs, with its bootstrap interval."""
    return seam_score_of_changes([frame_changes(frames) for frames in videos], window, seed, n_resamples)


def seam_score_of_changes(changes: Sequence[np.ndarray], window: int, seed: int = 0,
                          n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """:func:`seam_score` from each video's :func:`frame_changes` ((N-1,) per video), so that
    a caller scoring many groups of videos decodes each video once."""
    across, inside = [], []
    for video_changes in changes:
        crossing = boundary_pairs(len(video_changes) + 1, window)
        across.append(video_changes[crossing])
        inside.append(video_changes[~crossing])
    across, inside = np.concatenate(across), np.concatenate(inside)
    if across.size == 0 or inside.size == 0:
        raise MediaError(f"no window boundary to score: the videos must be longer than one window of "
                         f"{window} frames, with at least two frames per window")
    if inside.mean() == 0:
        raise MediaError("the frames never change inside a window: a seam score needs moving video")

    def replicate(rng: np.random.Generator) -> float:
        a = across[rng.integers(0, across.size, across.size)]
        b = inside[rng.integers(0, inside.size, inside.size)]
        return float(a.mean() / max(b.mean(), 1e-12))

    replicates = bootstrap_replicates(replicate, n_resamples, seed)
    return {"seam_score": float(across.mean() / inside.mean()), "ci95": percentile_interval(replicates),
            "n_boundaries": int(across.size), "n_within": int(inside.size), "window_frames": int(window),
            "boundary_change": float(across.mean()), "within_change": float(inside.mean()),
            "ci_method": f"percentile bootstrap, boundary and within pairs resampled apart, "
                         f"{n_resamples} resamples, seed {seed}"}


def video_frame_changes(videos: Sequence[Path]) -> list[np.ndarray]:
    """:func:`frame_changes` of each video file, decoded one at a time (few per ffmpeg process)."""
    return [frame_changes(frames) for frames, _ in iter_videos(videos)]


def window_of(video: Path) -> int | None:
    """The window (frames) a video was generated in, from its sidecar ``{stem}.json``."""
    sidecar = video.with_suffix(".json")
    if not sidecar.is_file():
        return None
    conditioning = read_json(sidecar, "video sidecar").get("conditioning") or {}
    return conditioning.get("num_frames_per_window") or conditioning.get("num_frames")


def seam_score_files(videos: Sequence[Path], window: int | None = None, seed: int = 0) -> dict[str, Any]:
    """:func:`seam_score` of video files; ``window`` from each sidecar when not given."""
    windows = {window} if window else {window_of(Path(v)) for v in videos}
    if None in windows or len(windows) != 1:
        raise MediaError("the videos' window is not known from their sidecars (or differs): pass "
                         "--window FRAMES, the mapper's frames per window")
    result = seam_score_of_changes(video_frame_changes(videos), windows.pop(), seed)
    return {**result, "videos": [str(v) for v in videos]}


def segment_scores(result, segment_seconds: float, duration_s: float, version: str = "2025") -> list[float]:
    """AV-Align of each ``segment_seconds`` piece of one scored video (an ``AVAlignResult``)."""
    definition = get_version(version)
    audio, video = np.asarray(result.audio_peaks_s), np.asarray(result.video_peaks_s)
    scores = []
    for start in np.arange(0.0, duration_s - segment_seconds / 2, segment_seconds):
        end = start + segment_seconds
        inside = lambda peaks: peaks[(peaks >= start) & (peaks < end)]
        scores.append(alignment_score(inside(audio), inside(video), result.fps, definition)[0])
    return scores


def av_align_segments(video: str | Path, segment_seconds: float = 5.0, version: str = "2025",
                      seed: int = 0) -> dict[str, Any]:
    """AV-Align of a whole long video, and of its ``segment_seconds`` pieces with their mean
    and bootstrap interval."""
    result = av_align_video(video, version)
    duration = len(result.flow_trajectory) / result.fps             # one motion value per frame
    segments = segment_scores(result, segment_seconds, duration, version)
    return {"video": str(video), "score": result.score, "duration_s": duration,
            "audio_peaks_s": result.audio_peaks_s, "video_peaks_s": result.video_peaks_s,
            "segment_seconds": segment_seconds, "segments": mean_with_ci(segments, seed=seed),
            "segment_scores": segments, "version": version}
