"""What the notebooks in ``notebooks/`` call: their parameters turned into configs, and display.

A notebook shows its lesson in its own short cells (02 a clip's tensors, 03 the encoders at
work); what lives here is what several notebooks share (parameters, run folders, tables, videos)
or would bury a lesson in plumbing (reading a run's samples, judging Figure 2's clips). Their
``parameters`` cell sets plain values
(papermill overrides them); the first cell after it hands them to :func:`train_config`,
which fails with one clear :class:`ConfigError` on anything invalid::

    config = train_config(cls="dog", encoder=None, text_prompt="", epochs=None, lr=None, profile="tiny")

Headless runs (papermill, ``avlib reproduce``, CI) set ``AVLIB_HEADLESS=1``; widgets then
print a message instead of waiting for clicks (:func:`is_headless`).
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Mapping

from avlib.config import (ENCODERS, MAPPER_KINDS, REPORT_DATASETS, ExperimentConfig, check_epochs_and_lr, check_path,
                          check_writable_path, load_config)
from avlib.errors import ConfigError
from avlib.figures import number
from avlib.io import read_json, runs_dir, skip_final_collection
from avlib.progress import HEADLESS_ENV
from avlib.run import SAMPLED, SCORED, TRAINED, Run, experiment_run_dir


skip_final_collection()  # this module is imported by notebook kernels: their shutdown, 2.6 s -> 0.4 s


def experiment_name(cls: str, text_prompt: str | None = None, mapper: str = "audiovisgen") -> str:
    """The report experiment that a class, an optional prompt and a mapper describe.

    ``dog`` + a prompt is ``dog_text`` (report 5.2.1); the TempoTokens mapper is the
    baseline (``tempotokens``), which the report trains on volleyball only.
    """
    if cls not in REPORT_DATASETS:
        raise ConfigError(f"cls='{cls}' is not a dataset of the report (choose from: "
                          f"{', '.join(REPORT_DATASETS)})")
    if mapper not in MAPPER_KINDS:
        raise ConfigError(f"mapper='{mapper}' is not one of: {', '.join(MAPPER_KINDS)}")
    if isinstance(text_prompt, str) and text_prompt and not text_prompt.strip():
        raise ConfigError(f"text_prompt={text_prompt!r} is blank: give a prompt, or '' to condition on audio only")
    if mapper == "tempotokens":
        if cls != "volleyball" or text_prompt:
            raise ConfigError("the TempoTokens baseline is the report's volleyball, audio-only run: "
                              "use cls='volleyball' and no text_prompt with mapper='tempotokens'")
        return "tempotokens"
    if text_prompt and cls != "dog":
        raise ConfigError(f"the report pairs a text prompt with the dog set only (dog_text); "
                          f"drop text_prompt for cls='{cls}' or pass it in overrides as 'prompt'")
    return "dog_text" if cls == "dog" and text_prompt else cls


def train_config(cls: str = "dog", encoder: str | None = None, text_prompt: str | None = None,
                 epochs: int | None = None, lr: float | None = None, profile: str = "tiny",
                 mapper: str = "audiovisgen",
                 overrides: Mapping[str, Any] | None = None, scheduler: str | None = None,
                 frame_attention: bool = False) -> ExperimentConfig:
    """04_train's parameters -> a validated config (``None`` keeps the experiment's value).

    ``frame_attention`` adds the report text's self-attention across frames to the report
    repository's mapper; ``scheduler`` (``dpm-multistep`` | ``ddim``) is the run's sampler.

    Raises :class:`ConfigError` naming the bad parameter and what is allowed.
    """
    check_epochs_and_lr(epochs, lr, names=("epochs", "lr"))
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError(f"overrides={overrides!r} must be a dict of config keys, e.g. {{'train.max_steps': 5}}")
    if encoder is not None and encoder not in ENCODERS:
        raise ConfigError(f"encoder='{encoder}' is not one of: {', '.join(ENCODERS)}")
    experiment = experiment_name(cls, text_prompt, mapper)
    given = {"encoder": encoder, "text_prompt": text_prompt or None, "epochs": epochs, "lr": lr,
             "inference.scheduler": scheduler, "mapper.frame_attention": frame_attention or None}
    merged = {key: value for key, value in given.items() if value is not None}
    merged.update(overrides or {})
    return load_config(experiment, profile, merged)


def config_summary(config: ExperimentConfig) -> str:
    """The experiment as the report describes it, then what this profile runs (tiny clips are
    shorter than the report's, so its description alone misleads)."""
    data, train = config.data, config.train
    length = f"{train.max_steps} training steps" if train.max_steps else f"{train.epochs} epochs"
    return (f"{config.name}: {config.description}\n{config.profile} profile: {data.clip_seconds:g} s clips, "
            f"{data.num_frames} frames of {data.height}x{data.width}, {length}")


def notebook_parameters(experiment: str, profile: str = "tiny") -> dict[str, Any]:
    """04_train's parameters that select a report experiment (the inverse of :func:`experiment_name`)."""
    config = load_config(experiment, profile)
    cls = {"dog_text": "dog", "tempotokens": "volleyball"}.get(experiment, experiment)
    parameters = {"cls": cls, "text_prompt": config.prompt or "", "mapper": config.mapper.kind}
    if cls not in REPORT_DATASETS or experiment_name(cls, config.prompt, config.mapper.kind) != experiment:
        raise ConfigError(f"experiment '{experiment}' is not one notebook 04 trains (it trains: dog, "
                          "dog_text, thunder, volleyball, multiclass, tempotokens)")
    return parameters


def own_run_dir(config: ExperimentConfig, run_dir: str | Path | None = None, name: str | None = None) -> Path:
    """The folder 00 and 04 train into: ``run_dir`` as given, else the default
    ``runs/{name or experiment}_{profile}`` (:func:`avlib.run.experiment_run_dir`), the folder
    05-08 read. A re-run trains into the same folder (:func:`train_or_reuse`), so there is one
    default run per experiment and profile, never a ``_2``. The folder is printed, and also
    written to the terminal that started a headless kernel (papermill, nbval)."""
    run_dir = check_writable_path("run_dir", run_dir) if run_dir is not None else experiment_run_dir(config, name=name)
    announce(f"run folder: {run_dir}")
    return run_dir


def train_or_reuse(config: ExperimentConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` and print what it did; or, where ``run_dir`` already holds
    a finished run of the same settings (this notebook ran before), reuse it and say so. A run of
    other settings there is refused with the fix, never overwritten."""
    from avlib.data.splits import training_clips
    from avlib.run import resolve_run_paths
    from avlib.train import train

    run = Run(run_dir)
    if run.config_file.is_file():
        if not run.has(TRAINED) or run.read_config().to_dict() != resolve_run_paths(config).to_dict():
            raise ConfigError(f"{run.root} already holds a run of other settings (or an unfinished one): "
                              "delete that folder, or set run_dir to a new folder")
        announce(f"{run.root} already holds this run, trained before with the same settings: reusing it "
                 "(delete the folder to train again)")
        summary = read_json(run.summary_file, "training summary")
    else:
        summary = train(config, training_clips(config), run.root)
    print(f"{summary['steps']} training steps, final loss {number(summary['final_loss'])}")
    return summary


def announce(message: str) -> None:
    """Print ``message``; in a headless kernel (papermill, nbval) also on the terminal that
    started it, whose user sees nothing of the notebook's output until it ends. Where ipykernel
    copies the process's own stderr into the notebook, the terminal copy goes to the duplicate of
    the original stderr that ipykernel keeps for its echo, so the notebook shows it once."""
    import sys

    print(message)
    if not is_headless() or sys.stderr is sys.__stderr__ or sys.__stderr__ is None:
        return  # a script's print already reached the terminal
    terminal = getattr(sys.stderr, "_original_stdstream_copy", None)
    os.write(sys.__stderr__.fileno() if terminal is None else terminal, f"{message}\n".encode())


def require_run(run_dir: str | Path | None, needs: str = TRAINED) -> ExperimentConfig:
    """The config of a run folder that got as far as ``needs`` (a stage of :data:`avlib.run.STAGES`);
    a clear error if ``run_dir`` is unset or not such a run."""
    example = runs_dir() / "dog_tiny"
    if run_dir is None:
        raise ConfigError("set the run_dir parameter to a run folder written by notebook 04 / `avlib train` "
                          f"(e.g. papermill ... -p run_dir {example})")
    run = Run(run_dir)
    if not run.has(needs):
        raise ConfigError(f"{run.root} is not a finished run: it lacks {run.config_file.name} or {needs} "
                          f"(train it with notebook 04 first, or leave run_dir unset: {example.parent}/CLASS_PROFILE)")
    return run.read_config()


def prepared_run(experiment: str, profile: str = "tiny", needs: str = TRAINED) -> Path:
    """The default run of ``experiment`` (``runs/{experiment}_{profile}``), trained, sampled and
    scored first as far as ``needs`` (a stage of :data:`avlib.run.STAGES`) asks and the folder
    lacks, with one line saying so.

    This is what 05-08 use when no run folder is given, so each runs as it comes.
    """
    config = load_config(experiment, profile)
    run_dir = experiment_run_dir(config)
    missing = Run(run_dir).missing_stages(needs)
    if not missing:
        return run_dir
    announce(f"{run_dir} lacks {missing[-1][0]}: {' and '.join(doing for _, doing in missing)} "
             f"the default {experiment} run now ({profile} profile)")
    for name, _ in missing:
        _make_stage(name, config, run_dir)
    return run_dir


def _make_stage(stage: str, config: ExperimentConfig, run_dir: Path) -> None:
    if stage == TRAINED:
        from avlib.data.splits import training_clips
        from avlib.train import train

        train(config, training_clips(config), run_dir)
    elif stage == SAMPLED:
        from avlib.generate import sample_test_set

        sample_test_set(run_dir)
    else:
        evaluate_quietly(run_dir)


def notebook_run(run_dir: str | Path | None, cls: str = "dog", profile: str = "tiny",
                 needs: str = TRAINED, mapper: str = "audiovisgen") -> tuple[Path, ExperimentConfig]:
    """05/06's run: ``run_dir`` as given (it must have ``needs``), else the default run of
    ``cls`` with ``mapper``."""
    if run_dir is None:
        run_dir = prepared_run(experiment_name(cls, mapper=mapper), profile, needs)
    config = require_run(run_dir, needs)
    return Path(run_dir), config


def notebook_runs(run_dirs, experiments=("dog", "dog_text"), profile: str = "tiny") -> tuple[list[Path], str]:
    """07/08's scored runs and their one profile: ``run_dirs`` as given, else the default runs
    of ``experiments`` (dog and dog_text score the same test clips, so 08 can pair them)."""
    if run_dirs is None:
        run_dirs = [prepared_run(name, profile, SCORED) for name in experiments]
    if not isinstance(run_dirs, (list, tuple)):
        raise ConfigError(f"run_dirs={run_dirs!r} must be a list of run folders (papermill -y "
                          "'run_dirs: [runs/dog_tiny, runs/thunder_tiny]'), or None for the default runs")
    run_dirs = [check_path(f"run_dirs[{i}]", d) for i, d in enumerate(run_dirs)]
    return run_dirs, runs_profile(run_dirs)


def table2_files(table_dir: str | Path, profile: str) -> list[Path]:
    """07's Table 2 files: ``table2.{profile}.md`` and ``.csv`` in ``table_dir`` (created if missing)."""
    folder = check_writable_path("table_dir", table_dir)
    return [folder / f"table2.{profile}.md", folder / f"table2.{profile}.csv"]


def runs_profile(run_dirs) -> str:
    """The one profile that all ``run_dirs`` were trained in (mixing profiles is refused)."""
    if not run_dirs:
        raise ConfigError("set the run_dirs parameter to a list of run folders (papermill -y "
                          "'run_dirs: [runs/dog_tiny, runs/thunder_tiny]'), or None for the default runs")
    profiles = {require_run(d).profile for d in run_dirs}
    if len(profiles) > 1:
        raise ConfigError(f"run_dirs mix profiles {sorted(profiles)}: tabulate one profile at a time")
    return profiles.pop()


def evaluate_quietly(run_dir: str | Path) -> dict[str, Any]:
    """:func:`avlib.evaluate.evaluate_run` as one printed line instead of four progress bars and
    warning boxes: the small-N MetricWarnings are recorded in each metric's ``warnings`` and
    become the ``note`` column of :func:`metric_rows`."""
    import warnings

    from avlib.evaluate import evaluate_run
    from avlib.metrics import MetricWarning

    print(f"scoring {len(read_samples(run_dir))} videos of {run_dir}: AV-Align, CLIPSIM, FVD features")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        return evaluate_run(run_dir, progress=False)


def metric_groups(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A ``metrics.json``'s groups by name: ``all``, each class, then the same for each control
    (``shuffled: all``, ``shuffled: dog``...)."""
    groups = {"all": metrics["metrics"], **metrics["per_class"]}
    for name, control in metrics.get("controls", {}).items():
        groups.update({f"{name}: all": control["metrics"],
                       **{f"{name}: {label}": values for label, values in control["per_class"].items()}})
    return groups


def metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """06's table: one row per group and metric, a one-line note where the metric warned."""
    groups = metric_groups(metrics)
    return [{"group": group, "metric": name, "value": entry["value"], "95% CI": entry["ci95"], "n": entry["n"],
             "note": "N below the feature size: biased upward, noisy" if entry.get("warnings") else ""}
            for group, values in groups.items() for name, entry in values.items()]


def markdown_table(rows, columns=None):
    """A list of dicts as a Markdown table (for ``display``); floats in one format (:func:`avlib.figures.number`)."""
    from IPython.display import Markdown

    rows = list(rows)
    columns = list(columns or (rows[0] if rows else []))

    def cell(value):
        if isinstance(value, float):
            return number(value)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
            return "[" + ", ".join(number(v) for v in value) + "]"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return Markdown("\n".join(lines))


def is_headless() -> bool:
    """True without a notebook front end to click in (scripts, papermill with AVLIB_HEADLESS=1)."""
    if os.environ.get(HEADLESS_ENV, "") not in ("", "0"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or type(shell).__name__ != "ZMQInteractiveShell"


def video_html(path: str | Path, width: int = 256, label: str = "") -> str:
    """An HTML ``<video>`` with the file embedded (plays inline, sound included, no server)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    caption = f"<figcaption>{label}</figcaption>" if label else ""
    return (f'<figure style="display:inline-block;margin:4px"><video width="{width}" controls loop '
            f'src="data:video/mp4;base64,{data}"></video>{caption}</figure>')


def show_videos(paths, labels=None, width: int = 256):
    """Display videos side by side in a notebook (returns the IPython HTML object)."""
    from IPython.display import HTML

    labels = labels or [Path(p).stem for p in paths]
    return HTML("".join(video_html(p, width, label) for p, label in zip(paths, labels)))


# -- 01 / 03: datasets and the synthetic world ---------------------------------------------------
class Manifests(dict):
    """Manifest rows by dataset; an unknown dataset (01's ``dataset`` parameter) is one clear error."""

    def __missing__(self, dataset):
        raise ConfigError(f"dataset={dataset!r} has no shipped manifest (choose from: {', '.join(self)})")


def shipped_manifests() -> Manifests:
    """The rows of every dataset manifest shipped in ``data_manifests/``, by dataset."""
    from avlib.data.manifests import SHIPPED_DATASETS, default_manifest, read_manifest

    return Manifests({name: read_manifest(default_manifest(name)) for name in SHIPPED_DATASETS})


MAX_SYNTHETIC_PER_CLASS = 1000  # each clip is held in memory (03 also encodes each twice)


def synthetic_examples(config: ExperimentConfig, classes=None, per_class: int = 1, seed: int = 0) -> list:
    """Synthetic clips (:class:`~avlib.data.synthetic.SynthClip`) at ``config``'s data sizes."""
    from avlib.config import check_whole_number
    from avlib.data.synthetic import CLASSES, clip_seed, synth_clip

    check_whole_number("per_class", per_class, maximum=MAX_SYNTHETIC_PER_CLASS)
    data = config.data
    seconds = max(data.clip_seconds, data.num_frames / data.fps)
    return [synth_clip(label, clip_seed(seed, label, i), seconds=seconds, fps=data.fps,
                       size=max(data.height, data.width, 16), layout=data.synth_layout)
            for label in (classes or CLASSES) for i in range(per_class)]


def principal_components(vectors: dict[str, Any], count: int = 2) -> dict[str, Any]:
    """``{encoder: (N, D)}`` -> ``{encoder: (N, count)}``: each set projected onto its first
    ``count`` principal components (centred SVD; each component's largest loading is positive,
    scikit-learn's sign convention, so a figure does not flip between runs)."""
    import numpy as np

    projected = {}
    for name, x in vectors.items():
        centred = x - x.mean(0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)        # (min(N, D), D)
        components = components[:count]
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(1)])
        projected[name] = centred @ (components * signs[:, None]).T           # (N, count)
    return projected


# -- 02: model assembly --------------------------------------------------------------------------
def mapper_readings(config: ExperimentConfig, pipeline) -> list[dict[str, Any]]:
    """The report's mapper as its repository builds it, beside what its text describes (the
    same mapper plus a self-attention across frames): sizes and what mixes the frames."""
    import dataclasses

    from avlib.mapper import build_mapper

    rows = []
    for reading, frame_attention in (("the report's code (repository)", False),
                                     ("the report's text (+ frame self-attention)", True)):
        variant = dataclasses.replace(config.mapper, frame_attention=frame_attention, checkpoint=None)
        mapper = build_mapper(variant, in_dim=pipeline.audio_encoder.output_dim)
        rows.append({"reading": reading, "parameters": sum(p.numel() for p in mapper.parameters()),
                     "placeholders per frame": " ".join(mapper.placeholder_names),
                     "frames mixed by": "windows 1/2/4/8, <class> pooling"
                                        + (", self-attention" if frame_attention else "")})
    return rows


# -- 05 / 06: a run's samples --------------------------------------------------------------------
def loss_curve(run_dir: str | Path) -> dict[str, Any]:
    """A run's training loss per step and its running mean over a fifth of the steps (at most 50)."""
    import numpy as np

    losses = Run(run_dir).read_losses()
    window = max(1, min(50, len(losses["loss"]) // 5))
    return {"step": losses["step"], "loss": losses["loss"], "window": window,
            "mean_step": losses["step"][window - 1:],
            "mean": np.convolve(losses["loss"], np.ones(window) / window, mode="valid")}


def read_samples(run_dir: str | Path) -> list[dict[str, str]]:
    """The sample index of a run (written by :func:`avlib.generate.sample_test_set`)."""
    return Run(run_dir).sample_rows()


def _grid_row(run: Run, sample, title: str) -> dict[str, Any]:
    """One row of :func:`avlib.figures.plot_frame_grid`: a sample (:class:`avlib.run.Sample`), its
    real clip and its audio with the onsets."""
    from avlib.media import SAMPLE_RATE, load_audio, read_video
    from avlib.metrics.av_align import load_onset_audio, onset_times

    return {"frames": read_video(sample.video)[0],
            "reference": read_video(run.reference_video(sample.clip_id))[0],
            "wave": load_audio(run.sample_audio(sample.clip_id), SAMPLE_RATE), "sample_rate": SAMPLE_RATE,
            "onsets_s": onset_times(load_onset_audio(sample.video)), "title": title}


def frame_grid_rows(run_dir: str | Path, limit: int = 3) -> list[dict[str, Any]]:
    """Inputs of :func:`avlib.figures.plot_frame_grid` for a run's first sampled clips."""
    run = Run(run_dir)
    return [_grid_row(run, sample, f"{sample.clip_id} ({sample.label}); red: audio onsets")
            for sample in run.samples(limit)]


def right_and_wrong(labels, verdicts) -> dict[str, int]:
    """Indices of the first clip whose video was judged its own class (``"right"``) and of the
    first judged another (``"wrong"``), reading ``verdicts`` (an iterable, maybe lazy) only
    until both are found; a kind no clip has is left out."""
    picks: dict[str, int] = {}
    for index, (label, verdict) in enumerate(zip(labels, verdicts)):
        picks.setdefault("right" if verdict == label else "wrong", index)
        if len(picks) == 2:
            break
    return dict(sorted(picks.items(), key=lambda item: item[0] != "right"))


def figure2_rows(run_dir: str | Path, profile: str) -> list[dict[str, Any]]:
    """05's Figure 2: in the tiny profile a clip judged right and one judged wrong
    (:func:`judged_grid_rows`); elsewhere, with no judge of the class, the first three clips."""
    return judged_grid_rows(run_dir) if profile == "tiny" else frame_grid_rows(run_dir, limit=3)


def judged_grid_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Figure 2 of a tiny-profile run: the first clip whose generated video shows its audio's
    class and the first whose video shows another, as the toy world's frame classifier judges
    them; when every clip is of one kind, a printed line says so."""
    from avlib.media import read_video
    from avlib.toyworld.frame_classifier import toy_class_judge

    run = Run(run_dir)
    judge, samples = toy_class_judge(), run.samples()
    judged: list[str] = []

    def verdicts():  # videos are read and judged only until a right and a wrong one are found
        for sample in samples:
            judged.append(judge.classify_video(read_video(sample.video)[0]))
            yield judged[-1]

    picks = right_and_wrong([s.label for s in samples], verdicts())
    for kind in {"right", "wrong"} - set(picks):
        print(f"{run.root.name}: none of the {len(samples)} generated videos was judged {kind} "
              "by the frame classifier")
    return [_grid_row(run, samples[i], f"{samples[i].clip_id} ({samples[i].label}): generated video "
                                       f"judged {judged[i]}, {kind.upper()}; red: audio onsets")
            for kind, i in picks.items()]


def sample_videos(run_dir: str | Path, limit: int | None = None) -> list[Path]:
    """The generated videos of a run, in the order of its sample index."""
    return [sample.video for sample in Run(run_dir).samples(limit)]


def dataset_summary(manifests: Mapping[str, list]) -> list[dict[str, Any]]:
    """Per dataset: classes, clips per split, distinct clips, clips in both splits, durations."""
    from avlib.data.manifests import distinct_clips, leaked_clips

    rows = []
    for name, clips in manifests.items():
        durations = sorted({row.duration_s for row in clips})
        rows.append({"dataset": name, "classes": ", ".join(sorted({row.label for row in clips})),
                     "train rows": sum(row.split == "train" for row in clips),
                     "test rows": sum(row.split == "test" for row in clips),
                     "distinct clips": len(distinct_clips(clips)), "in both splits": len(leaked_clips(clips)),
                     "durations (s)": ", ".join(f"{d:g}" for d in durations[:3]) + (" ..." if len(durations) > 3 else "")})
    return rows
