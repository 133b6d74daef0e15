"""Evaluate a sampled run: FVD, CLIPSIM and AV-Align with 95% CIs, into its metrics file.

The run (:class:`avlib.run.Run`) holds the generated samples with their audio, their index
(clip, class, prompt) and the real test clips: FVD's real set, per class when the references
are labelled.

Every per-video value (AV-Align score and peaks, CLIPSIM) is computed once; the overall
numbers and, when the config asks for ``eval_per_class``, one set per class are then
aggregated from them. CLIPSIM compares each video with its class name, as the report did.
The run's shuffled-audio control (:meth:`avlib.run.Run.shuffled_samples`), when it has one, is
scored the same way against the same real clips, into ``controls``: a run whose AV-Align does
not beat its control's shows no effect of the audio.
In the tiny profile FVD and CLIPSIM use the toy world's TOY networks (a toy I3D and a toy CLIP
trained on the synthetic world by :mod:`avlib.toyworld.metric_nets`), and the output says so
wherever a number appears.

Samples may be longer than one window (the run's ``inference.num_frames``), as whole-audio
generation (:mod:`avlib.pipeline.long_video`) makes them. AV-Align then scores each whole video
(its whole audio), FVD takes each video's first frames, as many as its network takes (the span
the one-window reference clips cover), and a ``seam_score`` entry
(:mod:`avlib.metrics.long_video`) joins the metrics, with a note saying all this. A run of
one-window samples gets neither the entry nor the note.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from avlib.errors import AvlibError, CheckpointError, ConfigError, MediaError
from avlib.cache import default_root
from avlib.io import run_record
from avlib.media import probe_many
from avlib.metrics import av_align, clipsim, fvd, long_video
from avlib.metrics.stats import mean_with_ci
from avlib.pipeline.model_card import MODEL_INDEX, write_model_card
from avlib.run import Run

# The controls a run may hold beside its samples (avlib.generate.sample_test_set), scored alike.
CONTROLS = {"shuffled": "shuffled audio: the same model fed another test clip's audio, with the same noise"}

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
    if i3d is not None:
        return fvd.pretrained_backbone(i3d, fvd_frames or 16, protocol)
    if tiny:
        return fvd.toy_backbone(fvd_frames or 8, protocol)
    raise CheckpointError("FVD needs the Kinetics-400 I3D: pass --i3d PATH_OR_URL "
                          "(i3d_pretrained_400.pt as shipped in TATS, or StyleGAN-V's "
                          "i3d_torchscript.pt)")


def clip_scorer(tiny: bool, clip_model: str | None, protocol: str):
    """The CLIPSIM network: the given CLIP, else the toy world's TOY CLIP (tiny) or the report's CLIP."""
    if clip_model is None and tiny:
        return clipsim.toy_clip_scorer(protocol=protocol)
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
    try:
        result = fvd.fvd_with_ci(real, fake, seed, biased=fvd.get_protocol(protocol).biased_covariance)
    except AvlibError as exc:
        return {"value": None, "ci95": None, "n": len(fake), "n_real": len(real), "error": str(exc)}
    return {"value": result.pop("fvd"), "n": result["n_fake"], **result}


def _seam_entry(changes: list[np.ndarray], window: int, seed: int) -> dict[str, Any]:
    """Seam score of one group; a group with no window boundary (or no motion) gets ``None``
    and the reason."""
    try:
        result = long_video.seam_score_of_changes(changes, window, seed)
    except MediaError as exc:
        return {"value": None, "ci95": None, "n": len(changes), "error": str(exc)}
    return {"value": result.pop("seam_score"), "n": len(changes), **result}


def _mean_entry(values: Sequence[float], seed: int, **details: Any) -> dict[str, Any]:
    summary = mean_with_ci(values, seed=seed)
    return {"value": summary.pop("mean"), **summary, **details}


def evaluate_run(run_dir: str | Path, i3d: str | None = None, clip_model: str | None = None,
                 av_align_version: str = "2025", fvd_frames: int | None = None,
                 workers: int | None = None, seed: int = 0, progress: bool = True,
                 fvd_protocol: str = "avlib", clipsim_protocol: str = "clip",
                 metrics: Sequence[str] | None = None, use_cache: bool = True) -> dict[str, Any]:
    """Evaluate a run folder and write its metrics (:meth:`avlib.run.Run.write_metrics`);
    returns what was written.

    ``metrics`` names what to compute (``--metrics`` names: fvd, clipsim, av-align; None:
    all). A metric whose network does not load (no I3D given, no CLIP offline) is skipped:
    its entries hold ``value: None`` and ``skipped: reason`` and the others are computed.
    The controls (:data:`CONTROLS`) get the same metrics in ``controls[name]``. Samples longer
    than one window also get ``seam_score`` (see the module docstring).
    """
    wanted = metric_keys(metrics)
    run = Run(run_dir)
    config = run.read_config()
    samples, references, reference_labels = run.samples(), run.references(), run.reference_labels()
    tiny = config.profile == "tiny"
    loaders = {"fvd": partial(fvd_backbone, tiny, i3d, fvd_frames, fvd_protocol),
               "clipsim": partial(clip_scorer, tiny, clip_model, clipsim_protocol)}
    networks, skipped = load_networks({key: loaders[key] for key in wanted if key in loaders})
    if not set(wanted) - set(skipped):
        raise CheckpointError("no metric could be computed: " + "; ".join(
            f"{key}: {reason}" for key, reason in skipped.items()))
    skipped.update({key: "not requested (--metrics)" for key in METRICS.values() if key not in wanted})
    fvd_cache = fvd.FeatureCache(default_root("fvd")) if use_cache else None
    scoring = Scoring(wanted, networks, skipped, references, reference_labels, config.eval_per_class,
                      av_align_version, fvd_protocol, clipsim_protocol, workers, seed, progress, fvd_cache,
                      window=config.inference.num_frames)
    overall, per_class, per_video, fake_padded, n_long = scoring.summary(samples)
    controls = {}
    shuffled = run.shuffled_samples()
    if shuffled is not None:
        control, control_per_class, control_videos, _, _ = scoring.summary(shuffled)
        controls["shuffled"] = {"what": CONTROLS["shuffled"], "metrics": control, "per_class": control_per_class,
                                "per_video": {s.clip_id: control_videos[i] for i, s in enumerate(shuffled)}}
    toy_nets = [metric for key, metric, given in (("fvd", "FVD", i3d), ("clipsim", "CLIPSIM", clip_model))
                if key in networks and tiny and given is None]
    result = {
        "experiment": config.name,
        "profile": config.profile,
        "run_dir": str(run.root),
        "metrics": overall,
        "per_class": per_class,
        "controls": controls,
        "skipped": skipped,
        "definitions": scoring.definitions,
        "toy_backbones": toy_nets,
        "notes": _notes(toy_nets, bool(per_class), reference_labels is None, scoring, fake_padded)
                 + _long_notes(n_long, len(samples), scoring),
        "per_video": {s.clip_id: per_video[i] for i, s in enumerate(samples)},
        "run_record": run_record(config, seed, command="evaluate"),
    }
    run.write_metrics(result)
    if (run.pipeline_dir / MODEL_INDEX).is_file():
        write_model_card(run.pipeline_dir)  # the card's metrics table
    return result


class Scoring:
    """How a run's videos are scored: the metrics wanted, their networks, the real clips (and
    their FVD features, extracted once), the protocols, the bootstrap seed and the window
    (frames) the samples were generated in."""

    def __init__(self, wanted: list[str], networks: dict[str, Any], skipped: dict[str, str],
                 references: list[Path], reference_labels: dict[str, str] | None, per_class: bool,
                 av_align_version: str, fvd_protocol: str, clipsim_protocol: str, workers: int | None,
                 seed: int, progress: bool, fvd_cache: fvd.FeatureCache | None = None, window: int | None = None):
        self.wanted, self.networks, self.skipped = wanted, networks, skipped
        self.references, self.reference_labels, self.per_class = references, reference_labels, per_class
        self.av_align_version, self.fvd_protocol = av_align_version, fvd_protocol
        self.clipsim_protocol = clipsim_protocol
        self.workers, self.seed, self.progress, self.window = workers, seed, progress, window
        self.definitions: dict[str, Any] = {}
        if "av_align" in wanted:
            self.definitions["av_align"] = av_align.get_version(av_align_version).describe()
        if "clipsim" in networks:
            self.definitions["clipsim"] = networks["clipsim"].describe()
        self.real = self.real_padded = None
        if "fvd" in networks:
            backbone = networks["fvd"]
            self.cache = fvd_cache
            self.real, self.real_padded = fvd.extract_features(references, backbone, self.cache, progress=progress)
            self.definitions["fvd"] = {"protocol": fvd.get_protocol(fvd_protocol).describe(),
                                       "backbone": backbone.describe(),
                                       "preprocessing": backbone.preprocessing.describe()}

    def score(self, videos_of: list) -> tuple[list[dict[str, Any]], np.ndarray | None, int, list | None]:
        """Every per-video value of samples ``videos_of``, their FVD features (N, D), how many
        were padded to FVD's frame count and, when any is longer than one window, each one's
        frame changes ((frames - 1,) per video; else None)."""
        videos = [s.video for s in videos_of]
        per_video: list[dict[str, Any]] = [{"label": s.label} for s in videos_of]
        changes = self.long_video_changes(videos)
        for entry, video_changes in zip(per_video, changes or ()):
            entry["frames"] = len(video_changes) + 1
        if "av_align" in self.wanted:
            alignments = av_align.av_align_videos(videos, self.av_align_version, self.workers, self.progress)
            for entry, alignment in zip(per_video, alignments):
                entry.update(alignment.to_json())
        if "clipsim" in self.networks:
            texts = [clipsim.protocol_text(self.clipsim_protocol, s.label) for s in videos_of]
            for entry, similarity in zip(per_video, clipsim.clipsim_videos(videos, texts, self.networks["clipsim"],
                                                                           self.progress)):
                entry["clipsim"] = similarity
        if "fvd" not in self.networks:
            return per_video, None, 0, changes
        fvd.warn_frame_rate_mismatch(self.references, videos)  # judged per set: samples, then each control
        return (per_video, *fvd.extract_features(videos, self.networks["fvd"], self.cache, progress=self.progress),
                changes)

    def long_video_changes(self, videos: list[Path]) -> list[np.ndarray] | None:
        """Each video's frame changes when any of them is longer than one window, else None.
        The containers' durations rule out a run of one-window samples without decoding them."""
        if self.window is None:
            return None
        # A video's frames span at most its container's duration (which covers its audio too).
        if all(info.duration_s * (info.fps or 0) < self.window + 0.5 for info in probe_many(videos)):
            return None
        changes = long_video.video_frame_changes(videos)
        if not any(len(video_changes) + 1 > self.window for video_changes in changes):
            return None
        self.definitions["seam_score"] = {"definition": long_video.SEAM_SCORE_DEFINITION, "window_frames": self.window,
                                          "window_from": "the run's inference.num_frames"}
        return changes

    def metrics_of(self, per_video: list[dict[str, Any]], fake: np.ndarray | None, chosen: list[int],
                   chosen_references: list[int], changes: list[np.ndarray] | None = None) -> dict[str, Any]:
        """Each metric over the videos ``chosen`` (FVD against the references ``chosen_references``),
        and their seam score when ``changes`` (each video's frame changes) are given."""
        out: dict[str, Any] = {}
        for key in METRICS.values():
            if key in self.skipped:
                out[key] = {"value": None, "ci95": None, "skipped": self.skipped[key]}
            elif key == "fvd":
                out[key] = {**_fvd_entry(self.real[chosen_references], fake[chosen], self.seed, self.fvd_protocol),
                            "backbone": self.networks["fvd"].name, "protocol": self.fvd_protocol}
            elif key == "clipsim":
                out[key] = _mean_entry([per_video[i]["clipsim"] for i in chosen], self.seed,
                                       model=self.networks["clipsim"].model_id, protocol=self.clipsim_protocol,
                                       text="class label" if self.clipsim_protocol == "clip"
                                       else "the report's text of the class")
            else:
                out[key] = _mean_entry([per_video[i]["score"] for i in chosen], self.seed,
                                       version=self.av_align_version)
        if changes is not None:
            out["seam_score"] = _seam_entry([changes[i] for i in chosen], self.window, self.seed)
        return out

    def summary(self, videos_of: list) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], int, int]:
        """Metrics of samples ``videos_of`` over all of them, per class where the config asks,
        their per-video values, how many were padded and how many are longer than one window."""
        per_video, fake, fake_padded, changes = self.score(videos_of)
        per_class = {}
        if self.per_class:
            for label in sorted({s.label for s in videos_of}):
                members = [i for i, s in enumerate(videos_of) if s.label == label]
                # Each class against its own real clips (all of them when the references are unlabelled).
                own = [i for i, path in enumerate(self.references)
                       if self.reference_labels is None or self.reference_labels.get(path.stem) == label]
                per_class[label] = self.metrics_of(per_video, fake, members, own, changes)
        overall = self.metrics_of(per_video, fake, list(range(len(videos_of))), list(range(len(self.references))),
                                  changes)
        n_long = sum(len(video_changes) + 1 > self.window for video_changes in changes or ())
        return overall, per_class, per_video, fake_padded, n_long


def _notes(toy_nets: list[str], per_class: bool, unlabelled: bool, scoring: Scoring, fake_padded: int) -> list[str]:
    """What a reader of the numbers must know: toy networks, shared references, padded videos."""
    notes = [f"tiny profile: {' and '.join(toy_nets)} use TOY networks trained on the synthetic world; "
             "these numbers only compare toy-world runs, never published values"] if toy_nets else []
    if per_class and unlabelled and "fvd" in scoring.networks:
        notes.append("the reference clips are not labelled by class: each class's FVD uses all of them")
    if "fvd" in scoring.networks and (fake_padded or scoring.real_padded):
        notes.append(f"{fake_padded} generated and {scoring.real_padded} reference videos had fewer "
                     f"than {scoring.networks['fvd'].preprocessing.frames} frames (last frame repeated)")
    return notes


def _long_notes(n_long: int, n_samples: int, scoring: Scoring) -> list[str]:
    """How samples longer than one window were scored (nothing for one-window samples)."""
    if not n_long:
        return []
    fvd_part = (f"; FVD takes the first {scoring.networks['fvd'].preprocessing.frames} frames of each "
                "(its network's input), the span of the one-window reference clips"
                if "fvd" in scoring.networks else "")
    return [f"{n_long} of {n_samples} samples are longer than one window ({scoring.window} frames, the run's "
            f"inference.num_frames): AV-Align scores each whole video and the seam score its window "
            f"boundaries{fvd_part}"]
