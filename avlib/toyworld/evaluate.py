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

from avlib.data.synthetic import CLASSES
from avlib.io import run_record, write_json
from avlib.toyworld import CAVP_FILE, T2V_SUBDIR, WEIGHTS_DIR
from avlib.toyworld.data import ToySpec, rgb_frames, toy_clips

CONDITIONS = ("trained", "shuffled", "untrained")
CAPTIONS = "captions"  # the t2v fed the clip's true per-frame captions: the ceiling for a mapper
REFERENCE = "real"  # the held-out clips themselves (mirrored): the score a perfect generator gets
AV_ALIGN_VERSION = "2025"
VIDEO_CRF = 10  # x264 at crf 18 flickers on still frames: flow peaks that are not events


def toyworld_config(weights: Path, overrides: dict | None = None):
    """The multiclass experiment's tiny profile on the toy world's stand-ins."""
    from avlib.config import load_config

    return load_config("multiclass", "tiny", {
        "data.classes": list(CLASSES), "model.pretrained": str(weights / T2V_SUBDIR),
        "encoder.name": "cavp", "encoder.checkpoint": str(weights / CAVP_FILE),
        **(overrides or {})})


@torch.no_grad()
def caption_videos(pipeline, clips: list[dict], inf, seed: int) -> list[np.ndarray]:
    """Frames (F, H, W, 3) per clip generated from the clip's own per-frame captions, with the
    noise the audio conditions use."""
    from avlib.toyworld.build import caption_contexts

    contexts, _ = caption_contexts(pipeline.text_encoder, pipeline.tokenizer, clips)   # (N, F*77, D)
    original = pipeline.encode_conditioning
    try:
        out = []
        for i, context in enumerate(contexts):
            pipeline.encode_conditioning = lambda *args, _c=context[None], **kwargs: _c
            out.append(pipeline(None, prompt="", num_inference_steps=inf.num_inference_steps,
                                guidance_scale=inf.guidance_scale, num_frames=inf.num_frames,
                                height=inf.height, width=inf.width, progress=False,
                                generator=torch.Generator().manual_seed(seed * 10_000 + i))[0])
        return out
    finally:
        pipeline.encode_conditioning = original


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: clip i gets the audio of clip result[i]."""
    order = np.random.default_rng(seed).permutation(n)
    result = np.empty(n, dtype=int)
    result[order] = np.roll(order, -1)
    return result


def separated(a: dict, b: dict) -> bool:
    """True when ``a``'s 95% CI lies entirely above ``b``'s."""
    return a["ci95"][0] > b["ci95"][1]


def evaluate_toyworld(out_dir: str | Path, weights: str | Path = WEIGHTS_DIR, test_per_class: int = 10,
                      train_per_class: int = 32, mapper_steps: int = 1000, seed: int = 0,
                      overrides: dict | None = None, progress: bool = True) -> dict:
    """Run the experiment into ``out_dir``; returns (and writes ``toyworld_eval.json``) the numbers.

    ``av_align`` also holds ``real``: the held-out clips themselves, the ceiling of the metric here.
    """
    from avlib.mapper import build_mapper
    from avlib.media import write_video
    from avlib.metrics.av_align import av_align_videos
    from avlib.metrics.stats import mean_with_ci
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.toyworld.frame_classifier import train_frame_classifier
    from avlib.train import train

    out_dir, weights = Path(out_dir), Path(weights)
    # No feature cache: its keys name the weights' path, and a rebuilt toy world keeps the path.
    config = toyworld_config(weights, {"train.max_steps": mapper_steps, "train.epochs": 10_000,
                                       "train.checkpoint_every": mapper_steps, "train.cache_features": False,
                                       **(overrides or {})})
    timings, started = {}, time.perf_counter()
    train_clips = toy_clips(per_class=train_per_class, seed=seed)
    test_clips = toy_clips(per_class=test_per_class, split="test", seed=seed)
    timings["data_s"] = time.perf_counter() - started

    summary = train(config, train_clips, out_dir / "mapper_run", progress=progress)
    timings["mapper_training_s"] = time.perf_counter() - started - sum(timings.values())

    trained = AudioToVideoPipeline.from_pretrained(out_dir / "mapper_run" / "pipeline")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        fresh = build_mapper(config.mapper, in_dim=trained.audio_encoder.output_dim).eval()
    untrained = AudioToVideoPipeline(trained.unet, trained.vae, trained.text_encoder, trained.tokenizer,
                                     trained.scheduler, trained.audio_encoder, fresh)
    shuffle = derangement(len(test_clips), seed)
    inf = config.inference
    plan = {"trained": (trained, np.arange(len(test_clips))), "shuffled": (trained, shuffle),
            "untrained": (untrained, np.arange(len(test_clips)))}
    videos = {name: [] for name in CONDITIONS}
    generated = {name: [] for name in CONDITIONS}
    for name, (pipeline, audio_of) in plan.items():
        for i, clip in enumerate(test_clips):
            frames = pipeline(test_clips[audio_of[i]]["waveform"], prompt=config.prompt,
                              num_inference_steps=inf.num_inference_steps, guidance_scale=inf.guidance_scale,
                              num_frames=inf.num_frames, height=inf.height, width=inf.width,
                              generator=torch.Generator().manual_seed(seed * 10_000 + i), progress=False)[0]
            path = write_video(out_dir / name / f"{clip['clip_id']}.mp4", frames, inf.fps,
                               audio=clip["waveform"].numpy(), crf=VIDEO_CRF)
            videos[name].append(path)
            generated[name].append(frames)
    # The caption ceiling: the t2v fed each clip's true per-frame captions (no audio, no mapper),
    # with the same noise. A mapper can at best steer as well as the captions it imitates.
    videos[CAPTIONS] = [write_video(out_dir / CAPTIONS / f"{clip['clip_id']}.mp4", frames, inf.fps,
                                    audio=clip["waveform"].numpy(), crf=VIDEO_CRF)
                        for clip, frames in zip(test_clips, caption_videos(trained, test_clips, inf, seed))]
    timings["generation_s"] = time.perf_counter() - started - sum(timings.values())
    videos[REFERENCE] = [write_video(out_dir / REFERENCE / f"{c['clip_id']}.mp4", rgb_frames(c), inf.fps,
                                     audio=c["waveform"].numpy(), crf=VIDEO_CRF) for c in test_clips]

    scores = {name: av_align_videos(paths, AV_ALIGN_VERSION, workers=1, progress=progress)
              for name, paths in videos.items()}
    av_align = {name: mean_with_ci([r.score for r in results], seed=seed) for name, results in scores.items()}
    timings["av_align_s"] = time.perf_counter() - started - sum(timings.values())

    classifier = train_frame_classifier(train_clips, CLASSES, seed=seed, progress=progress)
    labels = [c["label"] for c in test_clips]
    real_accuracy = np.mean([classifier.classify_video(rgb_frames(c)) == c["label"] for c in test_clips])
    class_match = {name: mean_with_ci([float(classifier.classify_video(f) == labels[i])
                                       for i, f in enumerate(generated[name])], seed=seed)
                   for name in ("trained", "untrained")}
    timings["classifier_s"] = time.perf_counter() - started - sum(timings.values())

    acceptance = {
        "av_align_trained_above_shuffled": separated(av_align["trained"], av_align["shuffled"]),
        "av_align_trained_above_untrained": separated(av_align["trained"], av_align["untrained"]),
        "class_match_above_chance": class_match["trained"]["ci95"][0] > 1 / len(CLASSES),
    }
    result = run_record(
        config, seed=seed, weights=str(weights), n_test_clips=len(test_clips), av_align_version=AV_ALIGN_VERSION,
        av_align=av_align, class_match=class_match, class_chance=1 / len(CLASSES),
        classifier_accuracy_on_real_test_frames=float(real_accuracy), mapper_training=summary,
        acceptance={**acceptance, "passed": all(acceptance.values())}, timings=timings,
        per_video={name: {Path(r.video).stem: r.score for r in results} for name, results in scores.items()},
        spec=ToySpec().__dict__)
    write_json(out_dir / "toyworld_eval.json", result)
    return result
