"""Dataset manifests: one CSV per dataset, one row per clip, validated when read.

A manifest (schema version 1, documented in ``data_manifests/README.md``) looks like::

    # avlib-manifest v1
    # any further comment lines: where the rows came from
    clip_id,label,split,source_id,start_s,end_s,video_events_s,audio_events_s
    dog_clip_001,dog,train,,0,2,,

A clip's files are ``{clip_id}.mp4`` and ``{clip_id}.wav`` in the dataset folder; its
``[start_s, end_s)`` is where it was cut from ``source_id`` (a YouTube id, or empty when the
source is unknown). The event columns hold ground-truth times in seconds, ``;``-separated
(synthetic clips only).

Splits: ``repo`` keeps each row's ``split`` column (the report repository's own splits);
``report`` re-splits by :func:`report_split`, a seeded hash of the clip id that gives the
report's stated 80/20 (400/100) proportions and never moves a clip when rows are added.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from avlib.config import SPLIT_SCHEMES
from avlib.errors import ConfigError
from avlib.io import CLIP_ID, atomic_path, read_text

MANIFEST_VERSION = 1
VERSION_LINE = f"# avlib-manifest v{MANIFEST_VERSION}"
COLUMNS = ("clip_id", "label", "split", "source_id", "start_s", "end_s",
           "video_events_s", "audio_events_s")
SPLITS = ("train", "test")
REPORT_TEST_FRACTION = 0.2          # report 4.1: 400 train + 100 test clips per class
MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
SHIPPED_DATASETS = ("volleyball", "thunder", "dog", "multiclass")   # MANIFEST_DIR/{name}.csv


@dataclass(frozen=True)
class ClipRow:
    """One clip of a dataset."""

    clip_id: str
    label: str
    split: str
    source_id: str = ""
    start_s: float = 0.0
    end_s: float = 0.0
    video_events_s: tuple[float, ...] = ()
    audio_events_s: tuple[float, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# ---------------------------------------------------------------------------- reading

def read_manifest(path: str | Path) -> list[ClipRow]:
    """Read and validate a manifest; any bad row raises :class:`ConfigError` naming its line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest not found: {path} (give a CSV from data_manifests/ "
                          "or one written by `avlib data synth`)")
    lines = path.read_text(errors="replace").splitlines()  # binary: fails the check below
    if not lines or not lines[0].startswith("# avlib-manifest v"):
        raise ConfigError(f"{path}, line 1: not an avlib manifest (the first line must be "
                          f"'{VERSION_LINE}'; see data_manifests/README.md)")
    version = lines[0].removeprefix("# avlib-manifest v").strip()
    if version != str(MANIFEST_VERSION):
        raise ConfigError(f"{path}, line 1: manifest version '{version}' is not supported "
                          f"(this avlib reads v{MANIFEST_VERSION}; upgrade avlib or rebuild the manifest)")
    skipped = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    reader = csv.DictReader(lines[skipped:])
    _check_header(reader.fieldnames, path, skipped + 1)

    rows, first_seen = [], {}
    for fields in reader:
        line = skipped + reader.line_num
        row = _parse_row(fields, f"{path}, line {line}")
        key = (row.clip_id, row.split)
        if key in first_seen:
            raise ConfigError(f"{path}, line {line}: clip '{row.clip_id}' is listed twice in split "
                              f"'{row.split}' (also on line {first_seen[key]}); remove one row")
        first_seen[key] = line
        rows.append(row)
    return rows


def _check_header(header: Sequence[str] | None, path: Path, line: int) -> None:
    missing = [c for c in COLUMNS if c not in (header or ())]
    unknown = [c for c in header or () if c not in COLUMNS]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise ConfigError(f"{path}, line {line}: bad header ({'; '.join(problems)}); "
                          f"the columns are: {','.join(COLUMNS)}")


def _parse_row(fields: dict[str, str | None], where: str) -> ClipRow:
    if None in fields or any(value is None for value in fields.values()):
        raise ConfigError(f"{where}: expected {len(COLUMNS)} comma-separated fields "
                          f"({','.join(COLUMNS)}); quote fields that contain commas")
    clip_id, label, split = fields["clip_id"].strip(), fields["label"].strip(), fields["split"].strip()
    if not CLIP_ID.match(clip_id):
        raise ConfigError(f"{where}: clip_id '{clip_id}' is not a usable file name "
                          "(use letters, digits, '-', '_' and '.')")
    if not label:
        raise ConfigError(f"{where}: empty label (give the clip's class, e.g. 'dog')")
    if split not in SPLITS:
        raise ConfigError(f"{where}: split '{split}' is not one of: {', '.join(SPLITS)}")
    start, end = _number(fields, "start_s", where), _number(fields, "end_s", where)
    if start < 0 or end <= start:
        raise ConfigError(f"{where}: need 0 <= start_s < end_s, got start_s={start:g}, end_s={end:g}")
    video_events, audio_events = (_times(fields, name, end - start, where)
                                  for name in ("video_events_s", "audio_events_s"))
    return ClipRow(clip_id, label, split, fields["source_id"].strip(), start, end,
                   video_events, audio_events)


def _number(fields: dict[str, str], name: str, where: str) -> float:
    try:
        return float(fields[name])
    except ValueError:
        raise ConfigError(f"{where}: {name} '{fields[name]}' is not a number of seconds") from None


def _times(fields: dict[str, str], name: str, duration: float, where: str) -> tuple[float, ...]:
    text = fields[name].strip()
    try:
        times = tuple(float(t) for t in text.split(";")) if text else ()
    except ValueError:
        raise ConfigError(f"{where}: {name} '{text}' must be seconds separated by ';'") from None
    if any(not 0 <= t <= duration for t in times):
        raise ConfigError(f"{where}: {name} has times outside the clip (0..{duration:g} s)")
    return times


# ---------------------------------------------------------------------------- writing

def write_manifest(path: str | Path, rows: Iterable[ClipRow], comments: Sequence[str] = ()) -> Path:
    """Write ``rows`` as a v1 manifest (atomically), with ``comments`` under the version line."""
    buffer = io.StringIO()
    buffer.write(VERSION_LINE + "\n")
    buffer.writelines(f"# {c}\n" for c in comments)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.clip_id, row.label, row.split, row.source_id,
                         _fmt(row.start_s), _fmt(row.end_s),
                         ";".join(map(_fmt, row.video_events_s)),
                         ";".join(map(_fmt, row.audio_events_s))])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())
    return Path(path)


def _fmt(seconds: float) -> str:
    return f"{seconds:.10g}"


# ---------------------------------------------------------------------------- splits

def report_split(clip_id: str, seed: int = 0, test_fraction: float = REPORT_TEST_FRACTION) -> str:
    """``"test"`` for a seeded-hash fraction of clip ids, else ``"train"``.

    Each clip's bucket depends on (seed, clip_id) only, so the same seed always gives the
    same split and adding rows never moves existing ones. The price: proportions are 80/20
    on average, not exactly (the dog set comes out 399/101 at seed 0, 386/114 at seed 64).
    """
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2 ** 64 < test_fraction else "train"


def select(rows: Sequence[ClipRow], split: str, scheme: str = "repo",
           classes: Sequence[str] | None = None, seed: int = 0) -> list[ClipRow]:
    """The rows of one split (``train`` | ``test``) under a split scheme, for some classes.

    ``repo`` keeps the manifest's ``split`` column; ``report`` assigns each distinct clip
    by :func:`report_split` (a clip listed in both splits counts once).
    """
    if split not in SPLITS:
        raise ConfigError(f"split '{split}' is not one of: {', '.join(SPLITS)}")
    if scheme not in SPLIT_SCHEMES:
        raise ConfigError(f"split scheme '{scheme}' is not one of: {', '.join(SPLIT_SCHEMES)}")
    labels = {row.label for row in rows}
    unknown = [c for c in classes or () if c not in labels]
    if unknown:
        raise ConfigError(f"class {', '.join(map(repr, unknown))} not in the manifest "
                          f"(it has: {', '.join(sorted(labels))}); fix data.classes")
    wanted = set(classes) if classes else labels
    if scheme == "repo":
        return [row for row in rows if row.split == split and row.label in wanted]
    return [dataclasses.replace(row, split=split) for row in distinct_clips(rows)
            if row.label in wanted and report_split(row.clip_id, seed) == split]


def distinct_clips(rows: Iterable[ClipRow]) -> list[ClipRow]:
    """The first row of each clip id, in order (rows of one clip in two splits share its files)."""
    first: dict[str, ClipRow] = {}
    for row in rows:
        first.setdefault(row.clip_id, row)
    return list(first.values())


def leaked_clips(rows: Iterable[ClipRow]) -> list[str]:
    """Clip ids listed in both train and test (the report repository's thunder set has 200)."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row.clip_id, set()).add(row.split)
    return [clip_id for clip_id, seen in splits.items() if len(seen) > 1]


def default_manifest(dataset: str) -> Path:
    """The shipped manifest of a report dataset (``dog``, ``thunder``, ``volleyball``, ``multiclass``)."""
    if dataset not in SHIPPED_DATASETS:
        raise ConfigError(f"no shipped manifest for dataset '{dataset}' (choose from: "
                          f"{', '.join(SHIPPED_DATASETS)}, or set data.manifest)")
    path = MANIFEST_DIR / f"{dataset}.csv"
    if not path.is_file():
        raise ConfigError(f"shipped manifest {path} is missing: install avlib from a source "
                          "checkout (pip install -e .) or set data.manifest to a CSV")
    return path


# ---------------------------------------------------------------------------- builders

VGGSOUND_CLIP_S = 10.0
CUSTOM_CLIP_S = {"dog": 2.0, "thunder": 10.0}       # report 4.1


def vggsound_clip_id(ytid: str, start_s: int) -> str:
    """VGGSound's own clip naming: ``{ytid}_{start:06d}``."""
    return f"{ytid}_{int(start_s):06d}"


def vggsound_manifest(index_csv: str | Path, label: str = "playing volleyball"
                      ) -> tuple[list[ClipRow], dict[str, int]]:
    """Rows of one class from the official VGGSound index (``ytid,start,label,split``, no header).

    Returns the rows (official train/test split) and the counts found: ``index_rows``,
    ``rows`` (of ``label``), ``train``, ``test``.
    """
    index_csv = Path(index_csv)
    if not index_csv.is_file():
        raise ConfigError(f"VGGSound index not found: {index_csv} (download vggsound.csv "
                          "from the VGGSound website)")
    rows, total = [], 0
    try:
        lines = index_csv.read_text().splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{index_csv} is binary, not the VGGSound index CSV (check the path)") from None
    for line, fields in enumerate(csv.reader(lines), start=1):
        total += 1
        if len(fields) != 4:
            raise ConfigError(f"{index_csv}, line {line}: expected 4 fields ytid,start,label,split")
        ytid, start, row_label, split = (x.strip() for x in fields)
        if row_label != label:
            continue
        if split not in SPLITS or not start.isdigit():
            raise ConfigError(f"{index_csv}, line {line}: bad start '{start}' or split '{split}'")
        rows.append(ClipRow(vggsound_clip_id(ytid, int(start)), label, split, ytid,
                            float(start), float(start) + VGGSOUND_CLIP_S))
    if not rows:
        raise ConfigError(f"no rows labelled '{label}' in {index_csv} (check the label's spelling)")
    counts = {"index_rows": total, "rows": len(rows),
              "train": sum(r.split == "train" for r in rows),
              "test": sum(r.split == "test" for r in rows)}
    return rows, counts


def convert_report_repo_index(path: str | Path) -> list[ClipRow]:
    """Rows of an index file of the report's repository (``,ytid,start_time,class,set``).

    VGGSound rows keep their YouTube id as ``source_id``. Custom clips (``dog_clip_NNN``,
    ``clip_1_NNN``) were cut from one long video whose id was not recorded: ``source_id``
    stays empty and clip NNN is taken to be the NNN-th consecutive clip of that video.
    """
    rows = []
    for fields in csv.DictReader(read_text(path, "index CSV").splitlines(keepends=True)):
        ytid, label, split = fields["ytid"], fields["class"], fields["set"]
        if label in CUSTOM_CLIP_S:
            length = CUSTOM_CLIP_S[label]
            index = int(ytid.rsplit("_", 1)[1])
            rows.append(ClipRow(ytid, label, split, "", (index - 1) * length, index * length))
        else:
            start = int(fields["start_time"])
            rows.append(ClipRow(vggsound_clip_id(ytid, start), label, split, ytid,
                                float(start), start + VGGSOUND_CLIP_S))
    return rows
