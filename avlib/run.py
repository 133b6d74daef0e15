"""A run folder: the one module that knows what a run holds and where.

``avlib train`` creates a run, ``avlib sample`` adds its generated test clips, ``avlib
evaluate`` their metrics; the notebooks, the explorer, the 2AFC rater and ``avlib generate
--mapper`` read it. Everything goes through :class:`Run`::

    RUN/config.json              {"config": ExperimentConfig.to_dict(), seed, versions, ...}
    RUN/losses.csv               step,epoch,loss,mse,regulariser
    RUN/train_summary.json       steps, final loss, feature-cache hits and misses
    RUN/checkpoints/step_*/      resumable training state (written by avlib.train)
    RUN/pipeline/                the trained AudioToVideoPipeline
    RUN/samples/<clip_id>.mp4    a generated video with its audio muxed in
    RUN/samples/<clip_id>.wav    that audio (AV-Align reads it, TempoTokens' convention)
    RUN/samples/index.csv        clip_id,label,prompt
    RUN/samples/settings.json    the inference settings and seed the samples were made with
    RUN/reference/<clip_id>.mp4  the real test clips: FVD's real set
    RUN/reference/index.csv      clip_id,label (optional: per-class FVD against that class)
    RUN/shuffled/                the shuffled-audio control, as samples/: each clip generated from
                                 another test clip's audio (index.csv adds audio_of), its own muxed in
    RUN/metrics.json             FVD, CLIPSIM, AV-Align with CIs (avlib.evaluate)
    RUN/explorer/                videos made in the explorer

A run works from any working folder and after being moved: when it is created every local
path its config depends on becomes absolute (:func:`resolve_run_paths`; a missing checkpoint
fails then, before any model loads), hub ids and the names :mod:`avlib.named_weights`
resolves stay as they are, and everything inside the folder is addressed relative to it.
"""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from avlib.config import ExperimentConfig, check_path, config_from_record
from avlib.errors import CheckpointError, ConfigError, MediaError
from avlib.io import CLIP_ID, atomic_path, read_json, read_text, run_record, runs_dir, write_json
from avlib.named_weights import BUILT_IN_MODELS, HUB_SEPARATOR, TOYWORLD, resolve_checkpoint

CONFIG_FILE = "config.json"
LOSSES_FILE = "losses.csv"
SUMMARY_FILE = "train_summary.json"
CHECKPOINTS_DIR = "checkpoints"
PIPELINE_DIR = "pipeline"
SAMPLES_DIR = "samples"
REFERENCE_DIR = "reference"
SHUFFLED_DIR = "shuffled"
INDEX_FILE = "index.csv"
SETTINGS_FILE = "settings.json"
METRICS_FILE = "metrics.json"
EXPLORER_DIR = "explorer"

SAMPLE_COLUMNS = ("clip_id", "label", "prompt")
REFERENCE_COLUMNS = ("clip_id", "label")
SHUFFLED_COLUMNS = SAMPLE_COLUMNS + ("audio_of",)
LOSS_COLUMNS = ("step", "epoch", "loss", "mse", "regulariser")

# What a run goes through, in order: the path (relative to the run) that marks a stage done,
# and the work that makes it. Notebooks ask for a run "as far as" one of these.
TRAINED, SAMPLED, SCORED = PIPELINE_DIR, f"{SAMPLES_DIR}/{INDEX_FILE}", METRICS_FILE
STAGES = ((TRAINED, "training"), (SAMPLED, "sampling"), (SCORED, "scoring"))


def experiment_run_dir(config: ExperimentConfig, root: str | Path | None = None, name: str | None = None) -> Path:
    """Where ``avlib train`` and the notebooks put a run: ``runs/{experiment}_{profile}`` under
    ``root`` (default :func:`avlib.io.runs_dir`, the checkout's ``runs/``); ``name`` replaces the
    experiment's name (00's quickstart run is ``runs/quickstart_{profile}``). One folder per name
    and profile: whoever trains there again reuses or refuses it, never numbers a new one."""
    return Path(root or runs_dir()) / f"{name or config.name}_{config.profile}"


def _stage(name: str) -> str:
    names = [stage for stage, _ in STAGES]
    if name not in names:
        raise ValueError(f"needs={name!r} is not one of {names}")
    return name


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def resolve_run_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with every local path absolute; a missing checkpoint file fails here."""
    pretrained = config.model.pretrained
    if pretrained not in BUILT_IN_MODELS and Path(pretrained).expanduser().is_dir():
        pretrained = _absolute(pretrained)  # otherwise a hub id
    encoder_checkpoint = config.encoder.checkpoint
    if encoder_checkpoint not in (None, TOYWORLD) and HUB_SEPARATOR not in encoder_checkpoint:
        encoder_checkpoint = str(resolve_checkpoint(encoder_checkpoint).resolve())
    mapper_checkpoint = _absolute(config.mapper.checkpoint)
    if mapper_checkpoint is not None and not Path(mapper_checkpoint).is_file():
        raise CheckpointError(f"mapper weights not found: {config.mapper.checkpoint} (looked for "
                              f"{mapper_checkpoint}; pass the path of learned_embeds.pth or "
                              "at_embedder_<step>.pth with --set mapper.checkpoint=PATH)")
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, pretrained=pretrained),
        encoder=dataclasses.replace(config.encoder, checkpoint=encoder_checkpoint),
        mapper=dataclasses.replace(config.mapper, checkpoint=mapper_checkpoint),
        data=dataclasses.replace(config.data, root=_absolute(config.data.root),
                                 manifest=_absolute(config.data.manifest)),
    )


@dataclass(frozen=True)
class Sample:
    """One generated test clip of a run, as ``samples/index.csv`` lists it."""

    clip_id: str
    label: str
    prompt: str
    video: Path


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise MediaError(f"{path} is binary, not a CSV; write it again with `avlib sample`") from None
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise MediaError(f"{path} must be a CSV with columns {','.join(columns)} and one row "
                         f"per clip (missing: {', '.join(missing) or 'all rows'})")
    return rows


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] if isinstance(row, Mapping) else row for row in rows)
    return path


class Run:
    """The run folder at ``root`` (it need not exist yet: :meth:`write_config` creates it)."""

    def __init__(self, root: str | Path):
        self.root = check_path("run_dir", root)
        self.config_file = self.root / CONFIG_FILE
        self.losses_file = self.root / LOSSES_FILE
        self.summary_file = self.root / SUMMARY_FILE
        self.checkpoints_dir = self.root / CHECKPOINTS_DIR
        self.pipeline_dir = self.root / PIPELINE_DIR
        self.samples_dir = self.root / SAMPLES_DIR
        self.reference_dir = self.root / REFERENCE_DIR
        self.shuffled_dir = self.root / SHUFFLED_DIR
        self.metrics_file = self.root / METRICS_FILE
        self.explorer_dir = self.root / EXPLORER_DIR

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    def sample_video(self, clip_id: str) -> Path:
        return self.samples_dir / f"{clip_id}.mp4"

    def sample_audio(self, clip_id: str) -> Path:
        return self.samples_dir / f"{clip_id}.wav"

    def reference_video(self, clip_id: str) -> Path:
        return self.reference_dir / f"{clip_id}.mp4"

    # -- how far it got --------------------------------------------------------------------
    def has(self, stage: str) -> bool:
        """Whether the run has a config and got through ``stage`` (one of :data:`STAGES`)."""
        return self.config_file.is_file() and (self.root / _stage(stage)).exists()

    def missing_stages(self, needs: str) -> list[tuple[str, str]]:
        """(stage, what makes it) of every stage up to ``needs`` not yet done, in order."""
        wanted = STAGES[:[name for name, _ in STAGES].index(_stage(needs)) + 1]
        return [(name, doing) for name, doing in wanted if not (self.root / name).exists()]

    # -- config ----------------------------------------------------------------------------
    def write_config(self, config: ExperimentConfig, seed: int | None) -> Path:
        """``config.json``: the config (paths as :func:`resolve_run_paths` made them) and provenance."""
        return write_json(self.config_file, run_record(config, seed=seed))

    def config_record(self) -> dict[str, Any]:
        """``config.json`` as written, failing with one line when this is not a run."""
        if not self.config_file.is_file():
            raise ConfigError(f"{self.root} is not a training run (no {CONFIG_FILE}); pass the folder "
                              "written by `avlib train`")
        return read_json(self.config_file, "run's config")

    def read_config(self, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> ExperimentConfig:
        """The run's config, validated, with ``overrides`` (``["inference.guidance_scale=15"]``) on top."""
        return config_from_record(self.config_record(), overrides)

    # -- training --------------------------------------------------------------------------
    def write_losses(self, losses: Sequence[Mapping[str, Any]]) -> Path:
        return _write_csv(self.losses_file, LOSS_COLUMNS, losses)

    def read_losses(self) -> dict[str, Any]:
        """The training losses as columns: ``{"step": (S,), "loss": (S,), ...}`` float arrays."""
        import numpy as np

        rows = list(csv.DictReader(read_text(self.losses_file, "losses CSV").splitlines(keepends=True)))
        return {key: np.array([float(row[key]) for row in rows], dtype=float) for key in LOSS_COLUMNS}

    def write_summary(self, config: ExperimentConfig, seed: int | None, **summary: Any) -> Path:
        return write_json(self.summary_file, run_record(config, seed=seed, **summary))

    # -- samples and references ------------------------------------------------------------
    def write_sample_index(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """``samples/index.csv`` (clip_id,label,prompt) and ``reference/index.csv`` (clip_id,label)."""
        _write_csv(self.samples_dir / INDEX_FILE, SAMPLE_COLUMNS, rows)
        _write_csv(self.reference_dir / INDEX_FILE, REFERENCE_COLUMNS, [row[:2] for row in rows])

    def write_sample_settings(self, record: Mapping[str, Any]) -> Path:
        return write_json(self.samples_dir / SETTINGS_FILE, record)

    def write_shuffled_index(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """``shuffled/index.csv`` (clip_id,label,prompt,audio_of)."""
        _write_csv(self.shuffled_dir / INDEX_FILE, SHUFFLED_COLUMNS, rows)

    def sample_rows(self) -> list[dict[str, str]]:
        """``samples/index.csv`` as rows, in the order the clips were generated."""
        index = self.samples_dir / INDEX_FILE
        if not index.is_file():
            raise MediaError(f"{self.root} has no {SAMPLES_DIR}/{INDEX_FILE}: generate them first with "
                             f"`avlib sample --run {self.root}`")
        return _read_csv(index, SAMPLE_COLUMNS)

    def samples(self, limit: int | None = None) -> list[Sample]:
        """The indexed samples (at most ``limit``), each checked to exist."""
        return self._indexed(self.samples_dir, self.sample_rows()[:limit])

    def shuffled_samples(self) -> list[Sample] | None:
        """The shuffled-audio control's videos, each checked to exist; None when it was not made."""
        index = self.shuffled_dir / INDEX_FILE
        return self._indexed(self.shuffled_dir, _read_csv(index, SHUFFLED_COLUMNS)) if index.is_file() else None

    @staticmethod
    def _indexed(folder: Path, rows: Sequence[Mapping[str, str]]) -> list[Sample]:
        samples = []
        for row in rows:
            if not CLIP_ID.match(row["clip_id"]):  # e.g. ../../etc/passwd: never look outside the run
                raise MediaError(f"{folder / INDEX_FILE} lists the clip id {row['clip_id']!r}, which is not a "
                                 "file name inside the run folder; write the index again with `avlib sample`")
            video = folder / f"{row['clip_id']}.mp4"
            if not video.is_file():
                raise MediaError(f"{folder.name}/{INDEX_FILE} lists {row['clip_id']} but {video} is "
                                 "missing (re-run generation or remove the row)")
            samples.append(Sample(row["clip_id"], row["label"], row["prompt"] or "", video))
        return samples

    def sample_files(self) -> list[Path]:
        """Every generated video in ``samples/``, sorted by name (indexed or not)."""
        return sorted(self.samples_dir.glob("*.mp4"))

    def references(self) -> list[Path]:
        """The real clips, sorted by name."""
        if not self.reference_dir.is_dir():
            raise MediaError(f"video folder not found: {self.reference_dir} (check the path)")
        videos = sorted(self.reference_dir.glob("*.mp4"))
        if not videos:
            raise MediaError(f"no .mp4 files in {self.reference_dir} (point at the folder holding the videos)")
        return videos

    def reference_labels(self) -> dict[str, str] | None:
        """clip_id -> class of the real clips; None without ``reference/index.csv``."""
        index = self.reference_dir / INDEX_FILE
        if not index.is_file():
            return None
        return {row["clip_id"]: row["label"] for row in _read_csv(index, REFERENCE_COLUMNS)}

    # -- metrics ---------------------------------------------------------------------------
    def write_metrics(self, result: Mapping[str, Any]) -> Path:
        return write_json(self.metrics_file, result)

    def read_metrics(self, required: Sequence[str] = ()) -> dict[str, Any]:
        """``metrics.json``, which must hold every key in ``required``."""
        if not self.metrics_file.is_file():
            raise MediaError(f"no {METRICS_FILE} in {self.root} (run `avlib evaluate --run {self.root}` first)")
        metrics = read_json(self.metrics_file, "metrics file")
        missing = [key for key in required if not isinstance(metrics, dict) or key not in metrics]
        if missing:
            raise MediaError(f"{self.metrics_file} is not a {METRICS_FILE} written by `avlib evaluate` "
                             f"(it lacks {', '.join(missing)}); run `avlib evaluate --run {self.root}` again")
        return metrics
