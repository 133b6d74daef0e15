"""Evaluate a generation run: FVD, CLIPSIM and AV-Align with 95% CIs, into ``metrics.json``.

A run folder, as ``avlib generate`` writes it::

    RUN_DIR/config.json              {"config": ExperimentConfig.to_dict(), ...provenance}
    RUN_DIR/samples/<clip_id>.mp4    generated video with its audio muxed in
    RUN_DIR/samples/<clip_id>.wav    that audio (AV-Align reads it, TempoTokens' convention)
    RUN_DIR/samples/index.csv        clip_id,label,prompt
    RUN_DIR/reference/<clip_id>.mp4  real test clips: FVD's real set
    RUN_DIR/reference/index.csv      optional clip_id,label: per-class FVD against that class
    RUN_DIR/shuffled/                optional control, as samples/ (+ audio_of): each clip generated
                                     from another test clip's audio, muxed with its own

Every per-video value (AV-Align score and peaks, CLIPSIM) is computed once; the overall
numbers and, when the config asks for ``eval_per_class``, one set per class are then
aggregated from them. CLIPSIM compares each video with its class name, as the report did.
A control folder is scored the same way, against the same real clips, into ``controls``: a
run whose AV-Align does not beat its shuffled-audio control shows no effect of the audio.
In the tiny profile FVD and CLIPSIM use the toy world's TOY networks (a toy I3D and a toy CLIP
trained on the synthetic world, :mod:`avlib.toyworld.metric_nets`), and the output says so
wherever a number appears.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avlib.errors import AvlibError, CheckpointError, ConfigError, MediaError
from avlib.io import read_json, run_record, write_json



def list_videos(folder: str | Path) -> list[Path]:
    """The ``.mp4`` files of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(f"video folder not found: {folder} (check the path)")
    videos = sorted(folder.glob("*.mp4"))
    if not videos:
        raise MediaError(f"no .mp4 files in {folder} (point at the folder holding the videos)")
    return videos


def _read_index(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise MediaError(f"{path} must be a CSV with columns {','.join(columns)} and one row "
                         f"per clip (missing: {', '.join(missing) or 'all rows'})")
    return rows


@dataclass
class Sample:
    clip_id: str
    label: str
    prompt: str
    video: Path


def _read_samples(root: Path, folder: str) -> list[Sample]:
    """The videos ``root/folder/index.csv`` lists, each of which must exist."""
    samples = []
    for row in _read_index(root / folder / "index.csv", ("clip_id", "label", "prompt")):
        video = root / folder / f"{row['clip_id']}.mp4"
        if not video.is_file():
            raise MediaError(f"{folder}/index.csv lists {row['clip_id']} but {video} is "
                             "missing (re-run generation or remove the row)")
        samples.append(Sample(row["clip_id"], row["label"], row["prompt"] or "", video))
    return samples


# Control folders `avlib sample` writes beside samples/, scored the same way (avlib.generate).
CONTROLS = {"shuffled": "shuffled audio: the same model fed another test clip's audio, with the same noise"}


@dataclass
class RunFolder:
    """The parts of a run folder that evaluation reads."""

    root: Path
    config: dict[str, Any]
    samples: list[Sample]
    references: list[Path]
    reference_labels: dict[str, str] | None  # clip_id -> class; None without reference/index.csv
    controls: dict[str, list[Sample]]        # {"shuffled": ...}: control videos of the same clips

    @classmethod
    def read(cls, root: str | Path) -> "RunFolder":
        root = Path(root)
        config_path = root / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{root} is not a run folder: no config.json (pass the folder "
                              "that `avlib generate` wrote)")
        config = read_json(config_path, "run's config").get("config")
        if not isinstance(config, dict):
            raise ConfigError(f"{config_path} holds no 'config' (pass a folder written by `avlib train`)")
        if not (root / "samples" / "index.csv").is_file():
            raise MediaError(f"{root} has no samples/index.csv: generate them first with "
                             f"`avlib sample --run {root}`")
        samples = _read_samples(root, "samples")
        references = list_videos(root / "reference")
        index = root / "reference" / "index.csv"
        labels = ({row["clip_id"]: row["label"] for row in _read_index(index, ("clip_id", "label"))}
                  if index.is_file() else None)
        controls = {name: _read_samples(root, name) for name in CONTROLS if (root / name / "index.csv").is_file()}
        return cls(root, config, samples, references, labels, controls)

    @property
    def is_tiny(self) -> bool:
        return self.config.get("profile") == "tiny"

    def references_of(self, label: str) -> list[int]:
        """Indices of the reference clips of one class (all of them without labels)."""
        if self.reference_labels is None:
            return list(range(len(self.references)))
        return [i for i, path in enumerate(self.references)
                if self.reference_labels.get(path.stem) == label]


# --metrics names -> metrics.json keys, in the order they are computed and reported.
METRICS = {"fvd": "fvd", "clipsim": "clipsim", "av-align": "av_align"}


def metric_keys(names: Sequence[str] | None) -> list[str]:
    """``["fvd", "av-align"]`` (``--metrics`` names; None: all) -> metrics.json keys."""
    names = list(METRICS) if names is None else list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric {', '.join(map(repr, unknown)) or '(none given)'} "
                          f"(choose from: {', '.join(METRICS)}, comma-separated)")
    return [METRICS[n] for n in names]


def fvd_backbone(tiny: bool, i3d: str | None, fvd_frames: int | None, protocol: str):
    """The FVD network: the given I3D, else the toy world's TOY I3D in the tiny profile."""
    from avlib.metrics import fvd
    from avlib.toyworld import metric_nets

    if i3d is not None:
        return fvd.pretrained_backbone(i3d, fvd_frames or 16, protocol)
    if tiny:
        return metric_nets.toy_backbone(fvd_frames or 8, protocol)
    raise CheckpointError("FVD needs the Kinetics-400 I3D: pass --i3d PATH_OR_URL "
                          "(i3d_pretrained_400.pt as shipped in TATS, or StyleGAN-V's "
                          "i3d_torchscript.pt)")


def clip_scorer(tiny: bool, clip_model: str | None, protocol: str):
    """The CLIPSIM network: the given CLIP, else the toy world's TOY CLIP (tiny) or the report's CLIP."""
    from avlib.metrics import clipsim
    from avlib.toyworld import metric_nets

    if clip_model is None and tiny:
        return metric_nets.toy_clip_scorer(protocol=protocol)
    return clipsim.ClipScorer.from_pretrained(clip_model or clipsim.DEFAULT_MODEL, protocol=protocol)


def load_networks(loaders: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Call each metric's loader; one that fails is skipped: (networks, {metric: reason})."""
    networks, skipped = {}, {}
    for key, load in loaders.items():
        try:
            networks[key] = load()
        except AvlibError as exc:
            skipped[key] = str(exc)
    return networks, skipped


def _fvd_entry(real: np.ndarray, fake: np.ndarray, seed: int, protocol: str) -> dict[str, Any]:
    """FVD of one group; a group too small for a covariance gets ``None`` and the reason."""
    from avlib.metrics.fvd import fvd_with_ci, get_protocol

    try:
        result = fvd_with_ci(real, fake, seed, biased=get_protocol(protocol).biased_covariance)
    except AvlibError as exc:
        return {"value": None, "ci95": None, "n": len(fake), "n_real": len(real), "error": str(exc)}
    return {"value": result.pop("fvd"), "n": result["n_fake"], **result}


def _mean_entry(values: Sequence[float], seed: int, **details: Any) -> dict[str, Any]:
    from avlib.metrics.stats import mean_with_ci

    summary = mean_with_ci(values, seed=seed)
    return {"value": summary.pop("mean"), **summary, **details}


def evaluate_run(run_dir: str | Path, i3d: str | None = None, clip_model: str | None = None,
                 av_align_version: str = "2025", fvd_frames: int | None = None,
                 workers: int | None = None, seed: int = 0, progress: bool = True,
                 fvd_protocol: str = "avlib", clipsim_protocol: str = "clip",
                 metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate a run folder and write ``RUN_DIR/metrics.json``; returns what was written.

    ``metrics`` names what to compute (``--metrics`` names: fvd, clipsim, av-align; None:
    all). A metric whose network does not load (no I3D given, no CLIP offline) is skipped:
    its entries hold ``value: None`` and ``skipped: reason`` and the others are computed.
    Control folders (:data:`CONTROLS`) get the same metrics in ``controls[name]``.
    """
    from functools import partial

    from avlib.io import cache_dir
    from avlib.metrics import av_align, clipsim, fvd

    wanted = metric_keys(metrics)
    run = RunFolder.read(run_dir)
    if not run.samples:
        raise MediaError(f"{run.root}/samples/index.csv lists no clips (generate samples first)")
    loaders = {"fvd": partial(fvd_backbone, run.is_tiny, i3d, fvd_frames, fvd_protocol),
               "clipsim": partial(clip_scorer, run.is_tiny, clip_model, clipsim_protocol)}
    networks, skipped = load_networks({key: loaders[key] for key in wanted if key in loaders})
    if not set(wanted) - set(skipped):
        raise CheckpointError("no metric could be computed: " + "; ".join(
            f"{key}: {reason}" for key, reason in skipped.items()))
    skipped.update({key: "not requested (--metrics)" for key in METRICS.values() if key not in wanted})
    definitions: dict[str, Any] = {}
    if "av_align" in wanted:
        definitions["av_align"] = av_align.get_version(av_align_version).describe()
    if "clipsim" in networks:
        scorer = networks["clipsim"]
        definitions["clipsim"] = scorer.describe()
    padded = None
    if "fvd" in networks:
        feature_net = networks["fvd"]
        cache = fvd.FeatureCache(cache_dir() / "fvd_features")
        real, real_padded = fvd.extract_features(run.references, feature_net, cache, progress=progress)
        definitions["fvd"] = {"protocol": fvd.get_protocol(fvd_protocol).describe(),
                              "backbone": feature_net.describe(),
                              "preprocessing": feature_net.preprocessing.describe()}

    def score(samples: list[Sample]) -> tuple[list[dict[str, Any]], np.ndarray | None, int]:
        """Every per-video value of ``samples``, their FVD features (N, D) and how many were padded."""
        videos = [s.video for s in samples]
        per_video: list[dict[str, Any]] = [{"label": s.label} for s in samples]
        if "av_align" in wanted:
            for entry, alignment in zip(per_video, av_align.av_align_videos(videos, av_align_version,
                                                                             workers, progress)):
                entry.update(alignment.to_json())
        if "clipsim" in networks:
            texts = [clipsim.protocol_text(clipsim_protocol, s.label) for s in samples]
            for entry, similarity in zip(per_video, clipsim.clipsim_videos(videos, texts, scorer, progress)):
                entry["clipsim"] = similarity
        if "fvd" not in networks:
            return per_video, None, 0
        return (per_video, *fvd.extract_features(videos, feature_net, cache, progress=progress))

    def metrics_of(per_video: list[dict[str, Any]], fake: np.ndarray | None, members: list[int],
                   references: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in METRICS.values():
            if key in skipped:
                out[key] = {"value": None, "ci95": None, "skipped": skipped[key]}
            elif key == "fvd":
                out[key] = {**_fvd_entry(real[references], fake[members], seed, fvd_protocol),
                            "backbone": feature_net.name, "protocol": fvd_protocol}
            elif key == "clipsim":
                out[key] = _mean_entry([per_video[i]["clipsim"] for i in members], seed,
                                       model=scorer.model_id, protocol=clipsim_protocol,
                                       text="class label" if clipsim_protocol == "clip"
                                       else "the report's text of the class")
            else:
                out[key] = _mean_entry([per_video[i]["score"] for i in members], seed,
                                       version=av_align_version)
        return out

    def summary(samples: list[Sample]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], int]:
        """``samples``' metrics over all of them, per class where the config asks, their per-video
        values and how many were padded to FVD's frame count."""
        per_video, fake, fake_padded = score(samples)
        per_class = {}
        if run.config.get("eval_per_class"):
            for label in sorted({s.label for s in samples}):
                members = [i for i, s in enumerate(samples) if s.label == label]
                per_class[label] = metrics_of(per_video, fake, members, run.references_of(label))
        overall = metrics_of(per_video, fake, list(range(len(samples))), list(range(len(run.references))))
        return overall, per_class, per_video, fake_padded

    overall, per_class, per_video, fake_padded = summary(run.samples)
    if "fvd" in networks:
        padded = (fake_padded, real_padded, feature_net.preprocessing.frames)
    controls = {}
    for name, samples in run.controls.items():
        control, control_per_class, control_videos, _ = summary(samples)
        controls[name] = {"what": CONTROLS[name], "metrics": control, "per_class": control_per_class,
                          "per_video": {s.clip_id: control_videos[i] for i, s in enumerate(samples)}}

    toy_nets = [metric for key, metric, given in (("fvd", "FVD", i3d), ("clipsim", "CLIPSIM", clip_model))
                if key in networks and run.is_tiny and given is None]
    notes = [f"tiny profile: {' and '.join(toy_nets)} use TOY networks trained on the synthetic world; "
             "these numbers only compare toy-world runs, never published values"] if toy_nets else []
    if per_class and run.reference_labels is None and "fvd" in networks:
        notes.append("reference/index.csv absent: each class's FVD uses all reference clips")
    if padded and (padded[0] or padded[1]):
        notes.append(f"{padded[0]} generated and {padded[1]} reference videos had fewer "
                     f"than {padded[2]} frames (last frame repeated)")
    result = {
        "experiment": run.config.get("name"),
        "profile": run.config.get("profile"),
        "run_dir": str(run.root),
        "metrics": overall,
        "per_class": per_class,
        "controls": controls,
        "skipped": skipped,
        "definitions": definitions,
        "toy_backbones": toy_nets,
        "notes": notes,
        "per_video": {s.clip_id: per_video[i] for i, s in enumerate(run.samples)},
        "run_record": run_record(run.config, seed, command="evaluate"),
    }
    write_json(run.root / "metrics.json", result)
    return result
