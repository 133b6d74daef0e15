"""Two-alternative forced choice (2AFC) ratings of generated videos, and metric agreement.

A *pair* is two runs' videos generated from the same test clip's audio. A rater sees both
(with the sound) and picks the one that fits the sound better; ratings go to a CSV, one
row per judgement, rewritten atomically after every click. :func:`agreement` then asks,
for each per-video metric, how often it prefers the video the rater chose (0.5 = chance),
with a bootstrap 95% CI. FVD is a distance between *sets* of videos and ranks no pair.

Ratings go to ``runs/ratings.csv`` unless another file is named (:func:`ratings_path`), and
:func:`ratings_or_oracle` uses them as soon as there are any for the pairs shown.
Without human ratings, :func:`oracle_ratings` stands in: in the synthetic world the true
video for each soundtrack is known (``reference/``), and the oracle picks the generated
video closer to it in pixels. Its rows are labelled ``kind=oracle`` and the rater name
says so; they are never human data.
"""
from __future__ import annotations

import csv
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from avlib.config import check_writable_path
from avlib.errors import ConfigError, MediaError
from avlib.io import atomic_path, read_text, runs_dir
from avlib.media import iter_videos
from avlib.metrics.stats import bootstrap_ci
from avlib.run import Run

COLUMNS = ("pair_id", "clip_id", "left", "right", "choice", "rater", "kind", "time")
CHOICES = ("left", "right")
ORACLE_RATER = "ORACLE: synthetic-world ground truth (NOT human ratings)"
PER_VIDEO_METRICS = ("clipsim", "av_align")  # higher is better for both


@dataclass(frozen=True)
class Pair:
    """Two generated videos of one clip; ``reference`` is the clip's real video."""

    pair_id: str
    clip_id: str
    left: Path
    right: Path
    reference: Path


def make_pairs(run_dirs: Sequence[str | Path], seed: int = 0, limit: int | None = None) -> list[Pair]:
    """Every two runs that generated the same test clip give a pair; left/right is shuffled."""
    videos: dict[str, list[tuple[Run, Path]]] = {}
    for run in map(Run, run_dirs):
        for video in run.sample_files():
            videos.setdefault(video.stem, []).append((run, video))
    rng = np.random.default_rng(seed)
    pairs = []
    for clip_id, found in sorted(videos.items()):
        for first, second in itertools.combinations(found, 2):                # (run, video) each
            (left_run, left), (right_run, right) = (first, second) if rng.random() < 0.5 else (second, first)
            pairs.append(Pair(f"{clip_id}:{left_run.root.name}:{right_run.root.name}", clip_id,
                              left, right, first[0].reference_video(clip_id)))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order][:limit]


def ratings_path(ratings_file: str | Path | None = None) -> Path:
    """``ratings_file``, or by default ``ratings.csv`` in the runs folder (:func:`avlib.io.runs_dir`)."""
    if ratings_file is None:
        return runs_dir() / "ratings.csv"
    return check_writable_path("ratings_file", ratings_file, folder=False)


def read_ratings(path: str | Path) -> list[dict[str, str]]:
    """The ratings CSV (empty list when the file does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    reader = csv.DictReader(read_text(path, "ratings CSV").splitlines(keepends=True))
    rows = list(reader)
    if reader.fieldnames is not None and set(COLUMNS) - set(reader.fieldnames):  # never overwrite another file
        raise MediaError(f"{path} is not a ratings file (columns: {', '.join(COLUMNS)})")
    return rows


def write_ratings(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({key: row[key] for key in COLUMNS} for row in rows)
    return Path(path)


def rating_row(pair: Pair, choice: str, rater: str, kind: str = "human") -> dict[str, Any]:
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    return {"pair_id": pair.pair_id, "clip_id": pair.clip_id, "left": str(pair.left),
            "right": str(pair.right), "choice": choice, "rater": rater, "kind": kind,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def add_rating(path: str | Path, pair: Pair, choice: str, rater: str) -> Path:
    """Append one human judgement to the ratings file (rewritten atomically)."""
    return write_ratings(path, [*read_ratings(path), rating_row(pair, choice, rater)])


def distance_to_truth(frames: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared pixel error between a generated video's uint8 frames (F, h, w, 3), resized to
    the truth's size, and the true clip's frames (F, H, W, 3) in [0, 1] (frames aligned)."""
    if frames.shape[1:3] != truth.shape[1:3]:
        frames = np.stack([cv2.resize(f, (truth.shape[2], truth.shape[1]), interpolation=cv2.INTER_AREA)
                           for f in frames])
    n = min(len(frames), len(truth))
    return float(np.mean((frames[:n].astype(np.float32) / 255.0 - truth[:n]) ** 2))


def oracle_ratings(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """The ground-truth oracle's choice for every pair (ties skipped), clearly labelled.

    Every video is decoded once, however many pairs it is in (the demo's six runs give 200 pairs
    of 280 distinct videos and 120 true clips), a clip at a time (its truth, then its videos not
    seen yet), many files per ffmpeg process (:func:`avlib.media.iter_videos`)."""
    files: list[tuple[Path, bool]] = []               # (video, is the truth of the clips after it)
    seen: set[Path] = set()
    for clip_id, group in itertools.groupby(sorted(pairs, key=lambda pair: pair.clip_id),
                                            key=lambda pair: pair.clip_id):
        group = list(group)
        files.append((group[0].reference, True))
        for video in (video for pair in group for video in (pair.left, pair.right)):
            if video not in seen:
                seen.add(video)
                files.append((video, False))
    distance, truth = {}, None
    for (video, is_truth), (frames, _) in zip(files, iter_videos([video for video, _ in files])):
        if is_truth:
            truth = frames.astype(np.float32) / 255.0
        else:
            distance[video] = distance_to_truth(frames, truth)
    rows = []
    for pair in pairs:
        left, right = distance[pair.left], distance[pair.right]
        if left != right:
            rows.append(rating_row(pair, "left" if left < right else "right", ORACLE_RATER, kind="oracle"))
    return rows


def per_video_scores(run_dirs: Sequence[str | Path]) -> dict[str, dict[str, float]]:
    """``{video path: {metric: value}}`` from each run's metrics."""
    scores = {}
    for run in map(Run, run_dirs):
        for clip_id, entry in run.read_metrics(("per_video",))["per_video"].items():
            # a metric skipped by `avlib evaluate` (no CLIP offline, say) has no per-video value
            values = {"clipsim": entry.get("clipsim"), "av_align": entry.get("score")}
            scores[str(run.sample_video(clip_id))] = {metric: value for metric, value in values.items()
                                                      if value is not None}
    return scores


def agreement(ratings: Sequence[dict[str, Any]], scores: dict[str, dict[str, float]],
              seed: int = 0) -> list[dict[str, Any]]:
    """Per metric: the fraction of rated pairs where it prefers the chosen video, with a 95% CI.

    Pairs the metric scores equally are counted as ``ties`` and left out of the fraction. A
    metric missing from a rated video's scores (skipped when the run was evaluated) gets a row
    with ``agreement: None`` and the reason in ``skipped``.
    """
    rows = []
    for metric in PER_VIDEO_METRICS:
        unscored = sorted({str(rating[side]) for rating in ratings for side in ("left", "right")
                           if metric not in scores[str(rating[side])]})
        if unscored:
            rows.append({"metric": metric, "agreement": None, "ci95": None, "n": 0, "ties": 0,
                         "skipped": f"no {metric} score for {len(unscored)} rated video(s), e.g. "
                                    f"{unscored[0]} (it was skipped by `avlib evaluate`)"})
            continue
        agree, ties = [], 0
        for rating in ratings:
            left, right = scores[str(rating["left"])][metric], scores[str(rating["right"])][metric]
            if left == right:
                ties += 1
                continue
            agree.append(float((left > right) == (rating["choice"] == "left")))
        value = float(np.mean(agree)) if agree else None
        ci = bootstrap_ci(agree, seed=seed) if agree else None
        rows.append({"metric": metric, "agreement": value, "ci95": ci, "n": len(agree), "ties": ties})
    return rows


def rater(pairs: Sequence[Pair], ratings_file: str | Path, rater_name: str = "anonymous"):
    """The 2AFC widget: both videos with sound, "left fits better" / "right fits better".

    Pairs already rated by ``rater_name`` in ``ratings_file`` are skipped. Headless (see
    :func:`avlib.notebook.is_headless`) it prints what it would show and returns None.
    """
    # Importing avlib.notebook loads matplotlib and changes interpreter shutdown; only the widget needs it.
    from avlib.notebook import is_headless, video_html

    if not isinstance(rater_name, str) or not rater_name.strip():
        raise ConfigError(f"rater_name={rater_name!r} must be your name as text (it marks your ratings)")
    done = {row["pair_id"] for row in read_ratings(ratings_file) if row["rater"] == rater_name}
    todo = [pair for pair in pairs if pair.pair_id not in done]
    if is_headless():
        print(f"[headless] the 2AFC rater would show {len(todo)} unrated pairs and save choices "
              f"to {ratings_file}; open this notebook in JupyterLab to rate.")
        return None
    import ipywidgets as widgets  # a notebook's, needed only when the widget is shown

    status = widgets.Label()
    view = widgets.HTML()
    # Sized to their text: the default width cuts it to "right fits the sou...".
    buttons = [widgets.Button(description=f"{side} fits the sound better", layout=widgets.Layout(width="auto"),
                              tooltip=f"the {side} video matches the sound better") for side in CHOICES]
    position = {"index": 0}

    def show() -> None:
        if position["index"] >= len(todo):
            view.value = "<b>All pairs rated. Thank you!</b>"
            status.value = f"ratings saved in {ratings_file}"
            for button in buttons:
                button.disabled = True
            return
        pair = todo[position["index"]]
        view.value = video_html(pair.left, label="left") + video_html(pair.right, label="right")
        status.value = f"pair {position['index'] + 1} of {len(todo)} (listen with sound on)"

    def choose(side: str):
        def on_click(_button) -> None:
            add_rating(ratings_file, todo[position["index"]], side, rater_name)
            position["index"] += 1
            show()
        return on_click

    for button, side in zip(buttons, CHOICES):
        button.on_click(choose(side))
    show()
    return widgets.VBox([status, view, widgets.HBox(buttons)])


def ratings_or_oracle(pairs: Sequence[Pair], ratings_file: str | Path | None) -> tuple[list[dict], str]:
    """Ratings of ``pairs`` from ``ratings_file`` (default :func:`ratings_path`) if there are any,
    else the labelled oracle's; and who rated.

    Only rows of the pairs shown count (a file may also hold ratings of other runs). The
    oracle's use is announced on stdout so no reader mistakes it for human judgement.
    """
    path = ratings_path(ratings_file)
    shown = {pair.pair_id for pair in pairs}
    ratings = [row for row in read_ratings(path) if row["pair_id"] in shown]
    if ratings:
        raters = sorted({row["rater"] for row in ratings})
        return ratings, f"{len(raters)} rater(s): {', '.join(raters)}"
    print(f"NO HUMAN RATINGS of these pairs in {path}: using the synthetic world's ground-truth ORACLE "
          "(the generated video closer to the true clip wins). These are NOT human ratings.")
    return oracle_ratings(pairs), ORACLE_RATER
