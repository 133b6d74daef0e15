"""The toy world's acceptance experiment: does the trained AudioVisGen mapper put the events
where the sound is?

1. Train the multiclass mapper (dog, thunder, volleyball) on toy-world clips with the frozen
   stand-ins, through :func:`avlib.train.train` -- the method's own loop.
2. On held-out clips, generate one video per clip under three conditions, with the same
   initial noise per clip (:func:`avlib.generate.clip_noise`): the trained mapper fed the
   clip's audio (``trained``), fed another held-out clip's audio (``shuffled``, the run's
   shuffled-audio control), and an untrained mapper fed the clip's audio (``untrained``, a run
   of its own). Both runs are sampled by :func:`avlib.generate.sample_test_set`, as any run is.
   Every video is written with the clip's own soundtrack.
3. Score AV-Align (2025 definition) with 95% bootstrap CIs through
   :func:`avlib.evaluate.evaluate_run`, and judge each ``trained`` and ``untrained`` video's
   class with :class:`~avlib.toyworld.frame_classifier.FrameClassifier`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from avlib.config import GenerationSettings, check_path, check_whole_number, check_writable_path
from avlib.data.synthetic import CLASSES
from avlib.errors import AvlibError, ConfigError
from avlib.evaluate import evaluate_run
from avlib.generate import clip_noise, sample_test_set
from avlib.io import read_json, run_record, write_json
from avlib.mapper import build_mapper
from avlib.media import SAMPLE_RATE, iter_videos, write_videos
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
    The trained mapper's run (``mapper_run``) and the untrained mapper's (``untrained_run``) are
    sampled by :func:`avlib.generate.sample_test_set` and scored by
    :func:`avlib.evaluate.evaluate_run`, as any run is; ``captions/`` holds the caption ceiling.
    """
    for name, value in (("test_per_class", test_per_class), ("train_per_class", train_per_class),
                        ("mapper_steps", mapper_steps)):
        check_whole_number(name, value)
    out_dir, weights = check_writable_path("out_dir", out_dir), Path(weights)
    config = toyworld_config(weights, {"train.max_steps": mapper_steps, "train.epochs": 10_000,
                                       "train.checkpoint_every": mapper_steps,
                                       **(overrides or {})}, classes)
    if test_per_class * len(config.data.classes) < 2:
        raise ConfigError(f"test_per_class={test_per_class} gives one held-out clip: the shuffled-audio condition "
                          "feeds each clip another clip's audio, so give two or more (--test-per-class 2)")
    timings, started = {}, time.perf_counter()
    lap = lambda name: timings.__setitem__(name, time.perf_counter() - started - sum(timings.values()))
    train_clips = toy_clips(config.data.classes, per_class=train_per_class, seed=seed)
    test_clips = toy_clips(config.data.classes, per_class=test_per_class, split="test", seed=seed)
    lap("data_s")
    trained = Run(out_dir / "mapper_run")
    summary = train(config, train_clips, trained.root, progress=progress)
    lap("mapper_training_s")
    untrained = untrained_run(trained, out_dir / "untrained_run", config, seed)
    for run, shuffled_control in ((trained, True), (untrained, False)):
        sample_test_set(run.root, seed=seed, progress=progress, shuffled_control=shuffled_control,
                        clips=test_clips, crf=VIDEO_CRF)
    captions = write_caption_videos(trained, test_clips, out_dir / CAPTIONS, seed)
    lap("generation_s")
    per_video = score_conditions(trained, untrained, captions, seed, progress)
    av_align = {name: mean_with_ci(list(scores.values()), seed=seed) for name, scores in per_video.items()}
    lap("av_align_s")
    class_match, real_accuracy = judge_classes(config, train_clips, test_clips,
                                               {"trained": trained, "untrained": untrained},
                                               train_per_class, seed, progress)
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
        per_video=per_video, spec=ToySpec().__dict__)
    write_json(out_dir / "toyworld_eval.json", result)
    return result


def untrained_run(trained: Run, root: Path, config, seed: int) -> Run:
    """A run at ``root`` holding ``trained``'s pipeline with a fresh mapper (initialised from
    ``seed + 1``, not the trained mapper's start): the untrained-mapper condition, sampled and
    scored like any run."""
    pipeline = AudioToVideoPipeline.from_run(trained.root)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        fresh = build_mapper(config.mapper, in_dim=pipeline.audio_encoder.output_dim).eval()
    run = Run(root)
    run.write_config(trained.read_config(), seed=config.train.seed)
    untrained = AudioToVideoPipeline(**{**pipeline.components, "mapper": fresh}, t2v_source=pipeline.t2v_source,
                                     settings=dict(pipeline.config.settings))
    untrained.save_pretrained(run.pipeline_dir, save_unet=config.train.train_unet)
    return run


def write_caption_videos(trained: Run, clips: list[dict], folder: Path, seed: int) -> list[Path]:
    """The caption ceiling: the t2v fed each clip's true per-frame captions (no audio, no
    mapper), with the noise the audio conditions use, written with the clip's own soundtrack.
    A mapper can at best steer as well as the captions it imitates."""
    pipeline = AudioToVideoPipeline.from_run(trained.root)
    pipeline.set_progress_bar_config(disable=True)
    return write_videos([folder / f"{clip['clip_id']}.mp4" for clip in clips], caption_videos(pipeline, clips, seed),
                        pipeline.settings.fps, [clip["waveform"].numpy() for clip in clips], crf=VIDEO_CRF)


def score_conditions(trained: Run, untrained: Run, captions: list[Path], seed: int,
                     progress: bool) -> dict[str, dict[str, float]]:
    """AV-Align of every video, by condition and clip id: the runs' samples and the trained
    run's shuffled-audio control through :func:`avlib.evaluate.evaluate_run`, the caption
    videos and the real held-out clips (the trained run's references) directly."""
    own, fresh = (evaluate_run(run.root, av_align_version=AV_ALIGN_VERSION, workers=1, seed=seed,
                               progress=progress, metrics=["av-align"]) for run in (trained, untrained))
    entries = {"trained": own["per_video"], "shuffled": own["controls"]["shuffled"]["per_video"],
               "untrained": fresh["per_video"]}
    scores = {name: {clip_id: entry["score"] for clip_id, entry in videos.items()} for name, videos in entries.items()}
    references = [trained.reference_video(sample.clip_id) for sample in trained.samples()]
    for name, paths in ((CAPTIONS, captions), (REFERENCE, references)):
        results = av_align_videos(paths, AV_ALIGN_VERSION, workers=1, progress=progress)
        scores[name] = {Path(result.video).stem: result.score for result in results}
    return scores


def judge_classes(config, train_clips: list[dict], test_clips: list[dict], runs: dict[str, Run],
                  train_per_class: int, seed: int, progress: bool) -> tuple[dict, float]:
    """The frame classifier's verdicts: class match (mean, CI) of the ``runs``' samples (the
    videos as written), and its accuracy on the real held-out clips."""
    # The classifier learns all three classes; a one-class run's training clips hold only one.
    classifier_clips = (train_clips if set(config.data.classes) == set(CLASSES)
                        else toy_clips(per_class=train_per_class, seed=seed))
    classifier = train_frame_classifier(classifier_clips, CLASSES, seed=seed, progress=progress)
    real_accuracy = np.mean([classifier.classify_video(rgb_frames(c)) == c["label"] for c in test_clips])
    class_match = {}
    for name, run in runs.items():
        samples = run.samples()
        videos = iter_videos([s.video for s in samples])            # (F, H, W, 3) uint8 each
        class_match[name] = mean_with_ci([float(classifier.classify_video(frames / 255.0) == s.label)
                                          for s, (frames, _) in zip(samples, videos)], seed=seed)
    return class_match, real_accuracy


def _weights_build(weights: Path) -> dict | None:
    """How the t2v was trained: the config in the weights' build record, for rebuilt weights."""
    build_record = weights / "build.json"
    return read_json(build_record, "weights' build record")["config"] if build_record.is_file() else None
