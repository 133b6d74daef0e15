"""The toy world's acceptance experiment: does the trained AudioVisGen mapper put the events
where the sound is?

1. Train the multiclass mapper (dog, thunder, volleyball) on toy-world clips with the frozen
   stand-ins, through :func:`avlib.train.train` -- the method's own loop.
2. On held-out clips, generate one video per clip under three conditions, with the same
   initial noise per clip: the trained mapper fed the clip's audio (``trained``), fed another
   held-out clip's audio (``shuffled``), and an untrained mapper fed the clip's audio
   (``untrained``). Every video is written with the clip's own soundtrack.
3. Score AV-Align (2025 definition) with 95% bootstrap CIs, and judge each ``trained`` and
   ``untrained`` video's class with :class:`~avlib.toyworld.frame_classifier.FrameClassifier`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from avlib.config import GenerationSettings, check_path, check_whole_number, check_writable_path
from avlib.data.synthetic import CLASSES, derangement
from avlib.errors import AvlibError, ConfigError
from avlib.generate import clip_noise
from avlib.io import read_json, run_record, write_json
from avlib.mapper import build_mapper
from avlib.media import SAMPLE_RATE, write_video
from avlib.metrics.av_align import av_align_videos
from avlib.metrics.stats import mean_with_ci
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.pipeline.t2v import load_t2v
from avlib.run import Run
from avlib.toyworld import WEIGHTS_DIR
from avlib.toyworld.build import caption_contexts
from avlib.toyworld.data import ToySpec, rgb_frames, toy_clips, toyworld_config
from avlib.toyworld.frame_classifier import train_frame_classifier
from avlib.train import train

CONDITIONS = ("trained", "shuffled", "untrained")
SHIPPED_EVALUATIONS = Path(__file__).parent / "evaluations"  # {experiment}.json: the runs RESULTS.md reports
OLD_MAPPER_EVALUATIONS = SHIPPED_EVALUATIONS / "old_mapper"  # the same runs with the mapper before the report's
ROBUST_T2V_EVALUATIONS = SHIPPED_EVALUATIONS / "robust_t2v"  # a t2v trained on noised caption contexts
TEXT_ENCODER_EVALUATIONS = SHIPPED_EVALUATIONS / "text_encoder"  # a t2v whose text encoder trained with it
CAPTIONS = "captions"  # the t2v fed the clip's true per-frame captions: the ceiling for a mapper
REFERENCE = "real"  # the held-out clips themselves: the score a perfect generator gets
AV_ALIGN_VERSION = "2025"
VIDEO_CRF = 10  # x264 at crf 18 flickers on still frames: flow peaks that are not events
CONDITION_NOTES = {
    REFERENCE: "the held-out clips themselves (the metric's ceiling)",
    CAPTIONS: "video model fed the true per-frame captions (a mapper's ceiling)",
    "trained": "trained mapper, the clip's own audio",
    "shuffled": "trained mapper, another clip's audio",
    "untrained": "untrained mapper, the clip's own audio",
}


@torch.no_grad()
def caption_videos(pipeline, clips: list[dict], seed: int) -> list[np.ndarray]:
    """Frames (F, H, W, 3) per clip generated from the clip's own per-frame captions, with the
    noise the audio conditions use."""
    contexts, _ = caption_contexts(pipeline.text_encoder, pipeline.tokenizer, clips)   # (N, F*77, D)
    return [pipeline(prompt_embeds=context[None], generator=clip_noise(seed, i)).frames[0]
            for i, context in enumerate(contexts)]


def check_profile(profile: str) -> None:
    """Notebook 09's ``profile`` parameter: the toy world is the tiny profile's stand-in only."""
    if profile != "tiny":
        raise ConfigError(f"profile='{profile}': the toy world exists in the tiny profile only "
                          "(the paper profile uses the real zeroscope and CAVP; see notebooks 04-07)")


def caption_examples(weights: str | Path = WEIGHTS_DIR, seed: int = 0) -> list[dict]:
    """One held-out clip per class beside the stand-in t2v's video from the clip's true
    per-frame captions: rows for :func:`avlib.figures.plot_frame_grid`."""
    config = toyworld_config(Path(weights))
    pipeline = AudioToVideoPipeline.from_t2v(load_t2v(config.model.pretrained), settings=GenerationSettings.of(config))
    pipeline.set_progress_bar_config(disable=True)
    clips = toy_clips(per_class=1, split="test", seed=seed)
    videos = caption_videos(pipeline, clips, seed)
    return [{"frames": frames, "reference": rgb_frames(clip), "wave": clip["waveform"].numpy(),
             "sample_rate": SAMPLE_RATE, "onsets_s": clip["event_frames"] / config.inference.fps,
             "title": f"{clip['label']}: captions " + " | ".join(clip["captions"])}
            for clip, frames in zip(clips, videos)]


def separated(a: dict, b: dict) -> bool:
    """True when ``a``'s 95% CI lies entirely above ``b``'s."""
    return a["ci95"][0] > b["ci95"][1]


def load_evaluation(path: str | Path) -> dict:
    """The record :func:`evaluate_toyworld` wrote: a folder holding ``toyworld_eval.json``, or the file."""
    path = check_path("evaluation", path)
    if path.is_dir():
        path = path / "toyworld_eval.json"
    if not path.is_file():
        raise AvlibError(f"no toy-world evaluation at {path}: run `avlib toyworld evaluate --out DIR` "
                         "and pass DIR")
    return read_json(path, "toy-world evaluation record")


def shipped_evaluations(folder: Path = SHIPPED_EVALUATIONS) -> dict[str, dict]:
    """The records of the runs ``RESULTS.md`` reports, by experiment (multiclass first);
    ``OLD_MAPPER_EVALUATIONS``: those made with the mapper before the report's;
    ``ROBUST_T2V_EVALUATIONS``: those made with a t2v trained on noised caption contexts;
    ``TEXT_ENCODER_EVALUATIONS``: with a t2v whose text encoder trained with its UNet."""
    paths = sorted(folder.glob("*.json"), key=lambda p: (p.stem != "multiclass", p.stem))
    return {path.stem: load_evaluation(path) for path in paths}


def evaluation_summary(records: dict[str, dict]) -> list[dict]:
    """One row per record: AV-Align of each condition, the class match and the verdict."""
    rows = []
    for name, record in records.items():
        row = {"experiment": name, "seed": record["seed"],
               "frame attention": record["config"]["mapper"].get("frame_attention"), "n": record["n_test_clips"]}
        row.update({f"{c} AV-Align": record["av_align"][c]["mean"] for c in CONDITION_NOTES})
        row["trained 95% CI"] = record["av_align"]["trained"]["ci95"]
        row["class match"] = record["class_match"]["trained"]["mean"]
        row["passed"] = record["acceptance"]["passed"]
        rows.append(row)
    return rows


def evaluation_heading(name: str, record: dict) -> str:
    """One Markdown line above a record's table: the experiment, its verdict, the training time."""
    verdict = "criterion met" if record["acceptance"]["passed"] else "criterion not met"
    return f"### {name}: {verdict} (mapper training {record['timings']['mapper_training_s']:.0f} s)"


def evaluation_rows(record: dict) -> list[dict]:
    """One row per condition: AV-Align mean, its 95% CI and n, and the class match where judged."""
    rows = []
    for name, note in CONDITION_NOTES.items():
        score, match = record["av_align"][name], record["class_match"].get(name)
        rows.append({"condition": name, "what": note, "AV-Align": score["mean"], "95% CI": score["ci95"],
                     "n": score["n"], "class match": None if match is None else match["mean"],
                     "class 95% CI": None if match is None else match["ci95"]})
    return rows


def evaluate_toyworld(out_dir: str | Path, weights: str | Path = WEIGHTS_DIR, test_per_class: int = 10,
                      train_per_class: int = 32, mapper_steps: int = 1000, seed: int = 0,
                      overrides: dict | None = None, classes=CLASSES, progress: bool = True) -> dict:
    """Run the experiment into ``out_dir``; returns (and writes ``toyworld_eval.json``) the numbers.

    ``classes``: all three (the multiclass mapper, the default) or one (that class's experiment).
    ``av_align`` also holds ``real``: the held-out clips themselves, the ceiling of the metric here.
    The frame classifier always learns all three classes, so the class match's chance is 1/3.
    """
    for name, value in (("test_per_class", test_per_class), ("train_per_class", train_per_class),
                        ("mapper_steps", mapper_steps)):
        check_whole_number(name, value)
    out_dir, weights = check_writable_path("out_dir", out_dir), Path(weights)
    config = toyworld_config(weights, {"train.max_steps": mapper_steps, "train.epochs": 10_000,
                                       "train.checkpoint_every": mapper_steps,
                                       **(overrides or {})}, classes)
    timings, started = {}, time.perf_counter()
    lap = lambda name: timings.__setitem__(name, time.perf_counter() - started - sum(timings.values()))
    train_clips = toy_clips(config.data.classes, per_class=train_per_class, seed=seed)
    test_clips = toy_clips(config.data.classes, per_class=test_per_class, split="test", seed=seed)
    lap("data_s")
    mapper_run = Run(out_dir / "mapper_run")
    summary = train(config, train_clips, mapper_run.root, progress=progress)
    lap("mapper_training_s")
    videos, generated = generate_conditions(mapper_run, config, test_clips, out_dir, seed)
    lap("generation_s")
    videos[REFERENCE] = [write_video(out_dir / REFERENCE / f"{c['clip_id']}.mp4", rgb_frames(c), config.inference.fps,
                                     audio=c["waveform"].numpy(), crf=VIDEO_CRF) for c in test_clips]
    scores = {name: av_align_videos(paths, AV_ALIGN_VERSION, workers=1, progress=progress)
              for name, paths in videos.items()}
    av_align = {name: mean_with_ci([r.score for r in results], seed=seed) for name, results in scores.items()}
    lap("av_align_s")
    class_match, real_accuracy = judge_classes(config, train_clips, test_clips, generated, train_per_class,
                                               seed, progress)
    lap("classifier_s")
    acceptance = {
        "av_align_trained_above_shuffled": separated(av_align["trained"], av_align["shuffled"]),
        "av_align_trained_above_untrained": separated(av_align["trained"], av_align["untrained"]),
        "class_match_above_chance": class_match["trained"]["ci95"][0] > 1 / len(CLASSES),
    }
    result = run_record(
        config, seed=seed, weights=str(weights), weights_build=_weights_build(weights), n_test_clips=len(test_clips),
        av_align_version=AV_ALIGN_VERSION,
        av_align=av_align, class_match=class_match, class_chance=1 / len(CLASSES),
        classifier_accuracy_on_real_test_frames=float(real_accuracy), mapper_training=summary,
        acceptance={**acceptance, "passed": all(acceptance.values())}, timings=timings,
        per_video={name: {Path(r.video).stem: r.score for r in results} for name, results in scores.items()},
        spec=ToySpec().__dict__)
    write_json(out_dir / "toyworld_eval.json", result)
    return result


def generate_conditions(mapper_run: Run, config, test_clips: list[dict], out_dir: Path,
                        seed: int) -> tuple[dict[str, list[Path]], dict[str, list[np.ndarray]]]:
    """Every held-out clip's video under each condition (:data:`CONDITIONS`, then the caption
    ceiling), clip ``i`` with :func:`avlib.generate.clip_noise`'s noise and its own soundtrack:
    (videos written per condition, frames (F, H, W, 3) per condition)."""
    trained = AudioToVideoPipeline.from_run(mapper_run.root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        fresh = build_mapper(config.mapper, in_dim=trained.audio_encoder.output_dim).eval()
    untrained = AudioToVideoPipeline(**{**trained.components, "mapper": fresh}, t2v_source=trained.t2v_source,
                                     settings=dict(trained.config.settings))
    for pipeline in (trained, untrained):
        pipeline.set_progress_bar_config(disable=True)
    own = np.arange(len(test_clips))
    plan = {"trained": (trained, own), "shuffled": (trained, derangement(len(test_clips), seed)),
            "untrained": (untrained, own)}
    generated = {name: [pipeline(test_clips[audio_of[i]]["waveform"], config.prompt,
                                 generator=clip_noise(seed, i)).frames[0] for i in range(len(test_clips))]
                 for name, (pipeline, audio_of) in plan.items()}
    # The caption ceiling: the t2v fed each clip's true per-frame captions (no audio, no mapper),
    # with the same noise. A mapper can at best steer as well as the captions it imitates.
    generated[CAPTIONS] = caption_videos(trained, test_clips, seed)
    videos = {name: [write_video(out_dir / name / f"{clip['clip_id']}.mp4", frames, config.inference.fps,
                                 audio=clip["waveform"].numpy(), crf=VIDEO_CRF)
                     for clip, frames in zip(test_clips, generated[name])] for name in generated}
    return videos, {name: generated[name] for name in CONDITIONS}


def judge_classes(config, train_clips: list[dict], test_clips: list[dict], generated: dict[str, list[np.ndarray]],
                  train_per_class: int, seed: int, progress: bool) -> tuple[dict, float]:
    """The frame classifier's verdicts: class match (mean, CI) of the ``trained`` and
    ``untrained`` videos, and its accuracy on the real held-out clips."""
    # The classifier learns all three classes; a one-class run's training clips hold only one.
    classifier_clips = (train_clips if set(config.data.classes) == set(CLASSES)
                        else toy_clips(per_class=train_per_class, seed=seed))
    classifier = train_frame_classifier(classifier_clips, CLASSES, seed=seed, progress=progress)
    labels = [c["label"] for c in test_clips]
    real_accuracy = np.mean([classifier.classify_video(rgb_frames(c)) == c["label"] for c in test_clips])
    class_match = {name: mean_with_ci([float(classifier.classify_video(f) == labels[i])
                                       for i, f in enumerate(generated[name])], seed=seed)
                   for name in ("trained", "untrained")}
    return class_match, real_accuracy


def _weights_build(weights: Path) -> dict | None:
    """How the t2v was trained: the config in the weights' build record, for rebuilt weights."""
    build_record = weights / "build.json"
    return read_json(build_record, "weights' build record")["config"] if build_record.is_file() else None
