"""The report's figures and the notebooks' plots: each function returns a matplotlib Figure.

:func:`save_figure` writes ``{name}.{profile}.png`` with the profile, avlib's version and
the source in the PNG's text chunks, so a figure made by the tiny profile can never pass
for a paper-profile one. Nothing here computes results: inputs come from avlib's run
folders, metrics files and datasets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import librosa
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image

from avlib import __version__
from avlib.config import check_writable_path
from avlib.io import atomic_path
from avlib.report import METRICS, TITLES

CLASS_COLOURS = {"dog": "tab:brown", "thunder": "tab:blue", "volleyball": "tab:orange",
                 "playing volleyball": "tab:orange"}


def save_figure(fig, folder: str | Path | None, name: str, profile: str, source: str = "") -> None:
    """Write ``folder/{name}.{profile}.png`` atomically, stamped with profile and source.

    ``folder=None`` (a notebook run for viewing only) writes nothing. Returns nothing, so a
    notebook cell ending with it shows the figure and no path.
    """
    if folder is None:
        return
    folder = check_writable_path("figures_dir", folder)
    metadata = {"Title": name, "Software": f"avlib {__version__}",
                "Description": f"avlib profile={profile}; made by {source or 'avlib.figures'}",
                "avlib-profile": profile}
    with atomic_path(Path(folder) / f"{name}.{profile}.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata=metadata)


def show_figure(fig) -> None:
    """Display ``fig`` now and close it: in a loop, each figure then appears beside the output
    made with it, not all together when the cell ends (matplotlib's inline backend)."""
    from IPython.display import display  # a notebook's; scripts and the CLI import this module too

    display(fig)
    plt.close(fig)


def figure_profile(path: str | Path) -> str | None:
    """The profile stamped into a PNG written by :func:`save_figure` (None if unstamped)."""
    with Image.open(path) as image:
        return image.text.get("avlib-profile")


# -- 01: datasets ------------------------------------------------------------------------------
def plot_dataset_overview(manifests: Mapping[str, Sequence[Any]]):
    """Clips per class and split, and clip durations, of each dataset's manifest rows."""
    fig, (counts, durations) = plt.subplots(1, 2, figsize=(11, 3.5))
    names = list(manifests)
    for offset, split in ((-0.2, "train"), (0.2, "test")):
        totals = [sum(row.split == split for row in manifests[name]) for name in names]
        counts.bar(np.arange(len(names)) + offset, totals, width=0.4, label=split)
    counts.set_xticks(range(len(names)), names)
    counts.set_ylabel("clips")
    counts.set_title("clips per dataset and split")
    counts.legend()
    for name in names:
        values = [row.duration_s for row in manifests[name] if row.duration_s > 0]
        if values:
            durations.hist(values, bins=20, alpha=0.6, label=name)
    durations.set_xlabel("clip duration (s)")
    durations.set_title("clip durations")
    durations.legend()
    fig.tight_layout()
    return fig


def plot_clip(frames: np.ndarray, wave: np.ndarray, sample_rate: int, events_s: Sequence[float] = (),
              title: str = "", max_frames: int = 8):
    """A clip as a strip of frames over its mel spectrogram, with known events marked."""
    step = max(1, len(frames) // max_frames)
    shown = frames[::step][:max_frames]
    fig = plt.figure(figsize=(1.4 * len(shown), 3.6))
    grid = fig.add_gridspec(2, len(shown), height_ratios=[1, 1.1])
    for i, frame in enumerate(shown):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(frame)
        ax.set_axis_off()
    spec = fig.add_subplot(grid[1, :])
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_mels=64))
    duration = len(wave) / sample_rate
    spec.imshow(mel, origin="lower", aspect="auto", extent=(0, duration, 0, mel.shape[0]), cmap="magma")
    for t in events_s:
        spec.axvline(t, color="cyan", linestyle="--", linewidth=1)
    spec.set_xlabel("time (s); dashed: known events")
    spec.set_ylabel("mel bin")
    fig.suptitle(title)
    return fig


# -- 02: model -----------------------------------------------------------------------------------
def plot_model_structure(config, counts: Mapping[str, int] | None = None):
    """The report's Figure 1 redrawn from a config: what is frozen, what trains, and the shapes."""
    fig, ax = plt.subplots(figsize=(12, 3.2))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 3.2)
    ax.set_axis_off()
    mapper = config.mapper
    windows = ", ".join(map(str, mapper.windows))
    mixer = "<class> pooling" + (" + frame attn" if mapper.kind == "audiovisgen" and mapper.frame_attention else "")
    boxes = [
        ("audio\n16 kHz", None, "white"),
        (f"{config.encoder.name.upper()} encoder", "encoder", "lightsteelblue"),
        (f"mapper: MLP\nwindows {windows}\n{mixer}", "mapper", "khaki"),
        (f"{mapper.num_frames} x per-frame\npseudo tokens\n({mapper.token_dim}-d)", None, "white"),
        ("CLIP text\nencoder (+ an\noptional prompt)", "text_encoder", "lightsteelblue"),
        ("UNet3D denoiser\n+ VAE decoder", "unet+vae", "lightsteelblue"),
        (f"video\n{config.inference.num_frames} frames", None, "white"),
    ]
    width, gap = 1.45, 0.28
    for i, (label, part, colour) in enumerate(boxes):
        x = 0.1 + i * (width + gap)
        ax.add_patch(plt.Rectangle((x, 1.0), width, 1.3, facecolor=colour, edgecolor="black"))
        text = label
        if counts and part in counts:
            text += f"\n{_count(counts[part])} params"
        ax.text(x + width / 2, 1.65, text, ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(x, 1.65), xytext=(x - gap, 1.65), arrowprops=dict(arrowstyle="->"))
    ax.text(0.1, 0.45, "blue: frozen (pretrained)    yellow: trained", fontsize=9)
    ax.set_title(f"AudioVisGen model structure ({config.profile} profile; t2v: {config.model.pretrained})")
    return fig


def _count(n: int) -> str:
    """A parameter count short enough for Figure 1's boxes: 1,234 / 12.3 M / 1.23 B."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


# -- 03: audio features --------------------------------------------------------------------------
def plot_embedding_pca(projections: Mapping[str, np.ndarray], labels: Sequence[str]):
    """One panel per encoder: clips (N, 2) in their embeddings' first two principal components
    (:func:`avlib.notebook.principal_components`)."""
    fig, axes = plt.subplots(1, len(projections), figsize=(4.5 * len(projections), 4), squeeze=False)
    labels = np.asarray(labels)
    for ax, (name, points) in zip(axes[0], projections.items()):
        for label in sorted(set(labels)):
            chosen = labels == label
            ax.scatter(*points[chosen].T, label=label, color=CLASS_COLOURS.get(label), s=25)
        ax.set_title(f"{name}: clips by class (PCA)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_embedding_over_time(embeddings: Mapping[str, np.ndarray], seconds: float,
                             events_s: Sequence[float] = ()):
    """One panel per encoder: a clip's (T, D) embedding as a heatmap over time, events marked."""
    fig, axes = plt.subplots(len(embeddings), 1, figsize=(9, 2.2 * len(embeddings)), squeeze=False)
    for ax, (name, sequence) in zip(axes[:, 0], embeddings.items()):
        ax.imshow(sequence.T, aspect="auto", origin="lower", extent=(0, seconds, 0, sequence.shape[1]),
                  cmap="viridis")
        for t in events_s:
            ax.axvline(t, color="red", linestyle="--", linewidth=1)
        ax.set_ylabel(f"{name}\ndim")
        ax.set_title(f"{name}: {sequence.shape[0]} vectors of {sequence.shape[1]} dims over {seconds:g} s")
    axes[-1, 0].set_xlabel("time (s); dashed: sound events")
    fig.tight_layout()
    return fig


# -- 04: training ---------------------------------------------------------------------------------
def plot_loss_curve(curve: Mapping[str, Any], title: str = ""):
    """Training loss per step, faint, under its running mean (:func:`avlib.notebook.loss_curve`):
    the loss is noisy, one random timestep per example. Steps are whole numbers on the axis."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if len(curve["step"]):
        ax.plot(curve["step"], curve["loss"], alpha=0.3, label="loss per step")
        ax.plot(curve["mean_step"], curve["mean"], linewidth=2, label=f"running mean of {curve['window']} steps")
        ax.legend()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("MSE + reg")
    ax.set_title(title or "training loss")
    fig.tight_layout()
    return fig


# -- 05: generation --------------------------------------------------------------------------------
def plot_frame_grid(rows: Sequence[Mapping[str, Any]], max_frames: int = 8):
    """The report's Figure 2, with the sound drawn under the frames.

    Each row: ``frames`` (F, H, W, 3), ``wave`` (samples,), ``sample_rate``, ``title``
    and optional ``onsets_s`` (marked on the waveform) and ``reference`` frames (shown above).
    """
    lines = sum(2 + ("reference" in row) for row in rows)
    shown = min(max_frames, max(len(row["frames"]) for row in rows))
    fig = plt.figure(figsize=(1.3 * shown, 1.35 * lines))
    ratios = [r for row in rows for r in ([1] * (1 + ("reference" in row)) + [0.6])]
    grid = fig.add_gridspec(lines, shown, height_ratios=ratios, hspace=0.25)
    line = 0
    for row in rows:
        strips = ([("real", row["reference"])] if "reference" in row else []) + [("generated", row["frames"])]
        for name, frames in strips:
            step = max(1, len(frames) // shown)
            for i, frame in enumerate(frames[::step][:shown]):
                ax = fig.add_subplot(grid[line, i])
                ax.imshow(frame)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_ylabel(name, fontsize=7)
            line += 1
        wave_ax = fig.add_subplot(grid[line, :])
        seconds = np.arange(len(row["wave"])) / row["sample_rate"]
        wave_ax.plot(seconds, row["wave"], linewidth=0.5, color="black")
        for t in row.get("onsets_s", ()):
            wave_ax.axvline(t, color="red", linewidth=1)
        wave_ax.set_xlim(0, seconds[-1] if len(seconds) else 1)
        wave_ax.set_yticks([])
        wave_ax.set_title(row.get("title", ""), fontsize=8, loc="left")
        line += 1
    return fig


# -- 06: evaluation --------------------------------------------------------------------------------
def plot_av_align_timelines(results: Sequence[Any], max_rows: int = 4):
    """AV-Align per video: the optical-flow trajectory, its peaks (blue) and audio onsets (red)."""
    results = list(results)[:max_rows]
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 1.8 * len(results)), squeeze=False)
    for ax, result in zip(axes[:, 0], results):
        # Entry i is the motion into frame i, at i / fps: the time the metric gives its peaks.
        times = np.arange(len(result.flow_trajectory)) / result.fps
        ax.plot(times, result.flow_trajectory, color="grey", label="flow magnitude")
        for t in result.video_peaks_s:
            ax.axvline(t, color="tab:blue", linestyle="-", linewidth=1.5)
        for t in result.audio_peaks_s:
            ax.axvline(t, color="tab:red", linestyle="--", linewidth=1.5)
        ax.set_title(f"{Path(result.video).stem}: AV-Align {result.score:.2f} "
                     "(blue: motion peaks, red dashed: audio onsets)", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def plot_metric_cis(metrics: Mapping[str, Mapping[str, Any]], title: str = ""):
    """One panel per metric: value with its 95% CI, per group (e.g. a run's classes)."""
    groups = list(metrics)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(11, 3))
    for ax, name in zip(axes, METRICS):
        values = [metrics[g][name]["value"] for g in groups]
        _bars_with_ci(ax, np.arange(len(groups)), values, [metrics[g][name].get("ci95") for g in groups])
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{TITLES[name]} ({'lower' if name == 'fvd' else 'higher'} is better)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def shown(value: float) -> float:
    """A value at the precision the notebooks print it (:func:`number`): figures draw that, so
    noise below it (another CPU's rounding) moves no pixel and a redrawn figure keeps its bytes."""
    return round(value, 1 if abs(value) >= 100 else 3)


def number(value: float) -> str:
    """The notebooks' one number format: three decimals (scores, CIs, losses), one from 100 up
    (FVD), so a column reads 0.700 beside 0.385, never 0.7 beside 0.3846."""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _bars_with_ci(ax, x, values, cis, width=0.6, **kwargs):
    values = [None if v is None else shown(v) for v in values]
    cis = [None if ci is None else [shown(c) for c in ci] for ci in cis]
    heights = [np.nan if v is None else v for v in values]
    low = [0 if v is None or ci is None else v - ci[0] for v, ci in zip(values, cis)]
    high = [0 if v is None or ci is None else ci[1] - v for v, ci in zip(values, cis)]
    ax.bar(x, heights, width=width, yerr=[low, high], capsize=3, **kwargs)


# -- 07: results ----------------------------------------------------------------------------------
def _measured(rows: Sequence[Mapping[str, Any] | None], metric: str) -> tuple[list, list]:
    """Table rows' values of ``metric`` and their CIs (None for a missing row or value)."""
    values = [None if row is None else row[metric] for row in rows]
    cis = [(row[f"{metric}_ci_low"], row[f"{metric}_ci_high"])
           if row is not None and row[f"{metric}_ci_low"] is not None else None for row in rows]
    return values, cis


def plot_table2(rows: Sequence[Mapping[str, Any]]):
    """Table 2 as bars, one column of panels per metric: ours with 95% CIs and its shuffled-audio
    control where scored, and the published value. A metric ours computed with a TOY network
    (tiny profile) gets the published values on a panel of their own below: a TOY number is
    never drawn on an axis beside a published one. Rows without a run of ours are left out
    (the table says why)."""
    controls = {(row["run"], row["class"]): row for row in rows if row.get("control") == "shuffled"}
    rows = [row for row in rows if row["run"] and not row.get("control")]
    names = [row["experiment"] + (f":{row['class']}" if row["class"] else "") for row in rows]
    toy = {metric: any(TITLES[metric] in row["toy_backbones"].split() for row in rows) for metric in METRICS}
    panels = 1 + any(toy.values())
    fig, axes = plt.subplots(panels, len(METRICS), figsize=(4.2 * len(METRICS), 3.4 * panels), squeeze=False)
    x = np.arange(len(rows))
    for column, metric in enumerate(METRICS):
        ours, published_ax = axes[0][column], axes[-1][column] if toy[metric] else axes[0][column]
        offset = 0.27 if published_ax is ours else 0.0
        _bars_with_ci(ours, x - offset, *_measured(rows, metric), width=0.27, label="ours (95% CI)")
        if controls:
            _bars_with_ci(ours, x + 0.27 - offset, *_measured([controls.get((row["run"], row["class"]))
                                                                for row in rows], metric),
                          width=0.27, label="ours, shuffled audio (control)", color="tab:gray")
        published = [None if row[f"{metric}_report_invalid"] else row[f"{metric}_report"] for row in rows]
        published_ax.bar(x + offset, [np.nan if v is None else v for v in published], width=0.27,
                         label="report", alpha=0.6, color="tab:orange")
        ours.set_title(TITLES[metric] + (": ours, TOY network (not comparable with the report)"
                                         if toy[metric] else ""), fontsize=9)
        if toy[metric]:
            published_ax.set_title(f"{TITLES[metric]}: the report's published value", fontsize=9)
        elif panels > 1:
            axes[-1][column].axis("off")
        for ax in {ours, published_ax}:
            ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
            if metric == "fvd":
                ax.set_yscale("symlog")
    # One legend above the panels, where it covers no bar.
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.07 / panels))
    return fig


# -- 08: human evaluation -----------------------------------------------------------------------
# Below this many rated pairs a 95% CI of an agreement spans more than half of [0, 1].
FEW_RATINGS = 10


def plot_agreement(rows: Sequence[Mapping[str, Any]], rater: str):
    """Agreement of each metric with the ratings: a point with its 95% CI per metric (fraction of
    pairs where the metric sides with the rater; 0.5 = chance), its value written beside it, and
    a note on the axis where N is too small to tell a metric from chance or one was skipped."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for x, row in enumerate(rows):
        if row["agreement"] is None:
            ax.text(x, 0.5, "skipped", ha="center", va="center", fontsize=8, color="grey")
            continue
        low, high = row["ci95"]
        ax.errorbar([x], [row["agreement"]], yerr=[[row["agreement"] - low], [high - row["agreement"]]],
                    fmt="o", capsize=4, color="tab:blue")
        ax.annotate(f"{row['agreement']:.2f}", (x, row["agreement"]), textcoords="offset points",
                    xytext=(8, 0), va="center", fontsize=8)
        if row["n"] < FEW_RATINGS:
            ax.text(x, 0.04, f"N={row['n']}: too few\nto tell from chance", ha="center", fontsize=7, color="tab:red")
    ax.axhline(0.5, color="grey", linestyle="--", label="chance")
    ax.set_xticks(range(len(rows)), [f"{row['metric']}\n" + ("(skipped)" if row.get("skipped") else f"(n={row['n']})")
                                     for row in rows])
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("agreement with rater")
    ax.set_title(f"metric vs {rater}", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


# -- 09: the toy world ----------------------------------------------------------------------------
def plot_toyworld_evaluation(record: Mapping[str, Any], name: str = ""):
    """The toy world's acceptance experiment ``name``: AV-Align per condition and the class match,
    with 95% CIs (record: ``avlib toyworld evaluate``'s ``toyworld_eval.json``)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [5, 2]})
    names = list(record["av_align"])
    scores = [record["av_align"][n] for n in names]
    _bars_with_ci(left, np.arange(len(names)), [s["mean"] for s in scores], [s["ci95"] for s in scores],
                  color=["tab:green" if n == "trained" else "tab:gray" for n in names])
    left.set_xticks(range(len(names)), names)
    left.set_ylim(0, 1.05)
    left.set_title(f"AV-Align ({record['av_align_version']}), n = {scores[0]['n']} held-out clips", fontsize=9)
    matches = record["class_match"]
    _bars_with_ci(right, np.arange(len(matches)), [m["mean"] for m in matches.values()],
                  [m["ci95"] for m in matches.values()], color="tab:purple")
    right.axhline(record["class_chance"], color="black", linestyle="--", linewidth=1, label="chance")
    right.set_xticks(range(len(matches)), list(matches))
    right.set_ylim(0, 1.05)
    right.set_title("generated class = audio's class", fontsize=9)
    right.legend(fontsize=7)
    fig.suptitle(f"toy world: the {name} experiment" if name else "toy world", fontsize=10)
    fig.tight_layout()
    return fig
