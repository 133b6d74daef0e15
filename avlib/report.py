"""Table 2 of the report, reproduced: published numbers beside ours, with 95% CIs.

Rows follow the report's Table 2 (stored in the package as
``avlib/metrics/published_table2.json``). Each run folder evaluated by ``avlib evaluate``
fills the rows of its experiment, per class where the report split by class; runs of
other experiments are appended; a run scored against controls (``avlib sample``'s
shuffled-audio videos) gets one more row per control right under its own. A published value
that cannot be right (the FVD of -1.7e9) is kept but marked invalid, and numbers from the
tiny profile's TOY metric networks are flagged, so nobody reads them against the report.
"""
from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from avlib.errors import ConfigError
from avlib.io import atomic_path
from avlib.run import Run

METRICS = ("fvd", "clipsim", "av_align")
TITLES = {"fvd": "FVD", "clipsim": "CLIPSIM", "av_align": "AV-Align"}
RUN_KEYS = ("experiment", "profile", "run_dir", "metrics", "per_class")  # what a row reads
# How a control's rows (avlib.evaluate.CONTROLS) are named after their run's, and their Input.
CONTROL_ROWS = {"shuffled": ("shuffled audio", "control: another clip's audio")}


def load_published() -> dict[str, Any]:
    text = resources.files("avlib.metrics").joinpath("published_table2.json").read_text()
    return json.loads(text)


def load_run_metrics(run_dir: str | Path) -> dict[str, Any]:
    metrics = Run(run_dir).read_metrics(RUN_KEYS)
    metrics["run_dir"] = str(run_dir)  # where the run is now: it may have moved since evaluation
    return metrics


def _row(published: dict[str, Any] | None, run: dict[str, Any] | None, control: str = "") -> dict[str, Any]:
    """One table row: the published values (if any) and one run's values (if any); with
    ``control``, that run's control videos instead (and no published values)."""
    label = published["class"] if published else None
    row: dict[str, Any] = {
        "experiment": published["experiment"] if published else run["experiment"],
        "class": label or "",
        "input": CONTROL_ROWS[control][1] if control else published["input"] if published else "",
        "control": control,
    }
    invalid = {} if control else (published or {}).get("invalid", {})
    for metric in METRICS:
        row[f"{metric}_report"] = published[metric] if published and not control else None
        row[f"{metric}_report_invalid"] = invalid.get(metric, "")
    source = run["controls"][control] if control else run
    measured = (source["per_class"][label] if label else source["metrics"]) if run else {}
    for metric in METRICS:
        entry = measured.get(metric, {})
        low, high = entry.get("ci95") or (None, None)
        row.update({metric: entry.get("value"), f"{metric}_ci_low": low, f"{metric}_ci_high": high,
                    f"{metric}_skipped": entry.get("skipped", "")})
    row.update({
        "n": next((measured[m]["n"] for m in METRICS if "n" in measured.get(m, {})), None),
        "n_real": measured.get("fvd", {}).get("n_real"),
        "av_align_version": measured.get("av_align", {}).get("version", ""),
        "profile": run["profile"] if run else "",
        "toy_backbones": " ".join(run.get("toy_backbones", [])) if run else "",
        "run": run["run_dir"] if run else "",
    })
    return row


def _rows_of(published: dict[str, Any] | None, run: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's row, then one row per control it was scored against (``avlib evaluate``)."""
    return [_row(published, run)] + [_row(published, run, name) for name in run.get("controls", {})]


def table_rows(run_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Published rows filled from the matching runs (each followed by its control rows, such as
    shuffled audio), then rows for any other runs."""
    runs = [load_run_metrics(d) for d in run_dirs]
    rows, placed = [], set()
    for published in load_published()["rows"]:
        matches = [i for i, run in enumerate(runs) if run["experiment"] == published["experiment"]
                   and (published["class"] is None or published["class"] in run["per_class"])]
        placed.update(matches)
        rows += [row for i in matches for row in _rows_of(published, runs[i])] or [_row(published, None)]
    rows += [row for i, run in enumerate(runs) if i not in placed for row in _rows_of(None, run)]
    return rows


def _number(value: float | None, metric: str) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if metric == "fvd" else f"{value:.3f}"


def _published_cell(row: dict[str, Any], metric: str) -> str:
    cell = _number(row[f"{metric}_report"], metric)
    return f"{cell} (invalid)" if row[f"{metric}_report_invalid"] else cell


def _measured_cell(row: dict[str, Any], metric: str) -> str:
    if row[f"{metric}_skipped"]:
        return "skipped"
    if row[metric] is None:
        return ""
    cell = (f"{_number(row[metric], metric)} [{_number(row[f'{metric}_ci_low'], metric)}, "
            f"{_number(row[f'{metric}_ci_high'], metric)}]")
    from_toy_network = TITLES[metric] in row["toy_backbones"].split()
    return cell + (" † TOY" if from_toy_network else "")


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    published = load_published()
    header = ["Experiment", "Input"] + [f"{TITLES[m]} {side}" for m in METRICS
                                         for side in ("(report)", "(ours, 95% CI)")] + ["N", "Run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        name = row["experiment"] + (f": {row['class']}" if row["class"] else "")
        name += f" · {CONTROL_ROWS[row['control']][0]}" if row["control"] else ""
        cells = [name, row["input"]]
        for metric in METRICS:
            cells += [_published_cell(row, metric), _measured_cell(row, metric)]
        cells += ["" if row["n"] is None else str(row["n"]), row["run"]]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- Report {TITLES[m]}: {published['definitions'][m]}." for m in METRICS]
    notes += [f"- Invalid: {row['experiment']} {row['class']} {TITLES[m]} {_number(row[m + '_report'], m)}: "
              f"{row[m + '_report_invalid']}." for row in rows for m in METRICS if row[m + "_report_invalid"]]
    skipped = {(row["run"], TITLES[m]): row[m + "_skipped"] for row in rows for m in METRICS
               if row[m + "_skipped"]}
    notes += [f"- Skipped {metric} in {run}: {reason}" for (run, metric), reason in skipped.items()]
    versions = sorted({row["av_align_version"] for row in rows if row["av_align_version"]})
    if versions:
        notes.append(f"- Our AV-Align: TempoTokens version {', '.join(versions)} "
                     "(versions are not comparable with each other).")
    if any(row["control"] == "shuffled" for row in rows):
        notes.append("- · shuffled audio: the row above it, with each test clip generated from another test "
                     "clip's audio (same model, prompt and noise) and scored against its own audio and class: "
                     "where the two rows' CIs overlap, the audio made no difference that N can show.")
    missing = sorted({row["experiment"] for row in rows if not row["run"]})
    if missing:
        notes.append(f"- No values of ours for {', '.join(missing)}: no run of these experiments was given "
                     "(`run_dirs`; 07's default is the dog and dog_text runs; `avlib reproduce` runs all six), "
                     "so those rows show the report's values only.")
    if any(row["toy_backbones"] for row in rows):
        notes.append("- † TOY: tiny profile, computed with the toy world's TOY networks (a toy I3D and a "
                     "toy CLIP trained on the synthetic world); compares toy-world runs only, never the "
                     "published values.")
    return "\n".join([f"Table 2, reproduced. Source of the published values: {published['source']}.",
                      "", *lines, "", *notes]) + "\n"


def write_table(rows: Sequence[dict[str, Any]], outputs: Sequence[str | Path]) -> list[Path]:
    """Write the table to each output: ``.csv`` (every column) or ``.md`` (readable)."""
    bad = [str(p) for p in outputs if Path(p).suffix not in (".csv", ".md")]
    if bad:
        raise ConfigError(f"cannot tell the table format of {', '.join(bad)} (name outputs *.csv or *.md)")
    written = []
    for output in map(Path, outputs):
        with atomic_path(output) as tmp:
            if output.suffix == ".md":
                tmp.write_text(to_markdown(rows))
            else:
                with open(tmp, "w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
        written.append(output)
    return written
