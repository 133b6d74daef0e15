"""``avlib metrics``: one metric on a set of videos, written as JSON.

    avlib metrics av-align VIDEO_OR_DIR... [--version 2025|2023] [--segment-seconds S] --json OUT.json
    avlib metrics seam VIDEO_OR_DIR... [--window FRAMES] --json OUT.json
    avlib metrics fvd --real DIR --fake DIR [--protocol avlib|stylegan-v|videogpt] [--i3d PATH_OR_URL] --json OUT.json
    avlib metrics clipsim --videos DIR --text T [--protocol clip|report] [--model ID] --json OUT.json

Each command imports only its own metric (no diffusers or transformers for AV-Align).
Folders and files can be mixed wherever videos are asked for.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from avlib.cli.args import check_output, nonblank_text, positive_float, positive_int, seed_int
from avlib.errors import CheckpointError
from avlib.io import run_record, write_json
from avlib.metrics.stats import mean_with_ci
from avlib.metrics import AV_ALIGN_VERSIONS, CLIPSIM_PROTOCOLS, FVD_PROTOCOLS, FVD_RESIZE_MODES, video_paths
from avlib.named_weights import TOY_METRICS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics", help="compute AV-Align, FVD or CLIPSIM on videos (JSON with 95%% CIs)",
        description="Compute one metric with its pinned definition, N and a seeded 95% "
                    "bootstrap CI, and write it as JSON.")
    metrics = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)
    for register_metric in (_register_av_align, _register_seam, _register_fvd, _register_clipsim):
        register_metric(metrics)


def _register_av_align(metrics) -> None:
    align = metrics.add_parser("av-align", help="AV-Align (TempoTokens) of each video",
                               description="Audio comes from {stem}.wav beside each video, "
                                           "else from the video's own audio track.")
    align.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR",
                       help="mp4 files, or folders of them (each paired with {stem}.wav by name)")
    align.add_argument("--version", choices=AV_ALIGN_VERSIONS, default="2025",
                       help="upstream definition (default: 2025, one-to-one matching, threshold 0.1)")
    align.add_argument("--workers", type=positive_int, default=None, help="threads (default: one per CPU)")
    align.add_argument("--segment-seconds", type=positive_float, default=None, metavar="S",
                       help="long videos: also score each S-second piece of every video, with the "
                            "pieces' mean and 95%% CI")
    _common(align)
    align.set_defaults(func=run_av_align)


def _register_seam(metrics) -> None:
    seam = metrics.add_parser("seam", help="seam score of long videos (1.0 = seamless)",
                              description="Frame change across window boundaries over frame change "
                                          "inside windows, pooled over the videos, with a 95% CI.")
    seam.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="mp4 files, or folders of them")
    seam.add_argument("--window", type=positive_int, default=None, metavar="FRAMES",
                      help="frames per window (default: from each video's .json sidecar)")
    _common(seam)
    seam.set_defaults(func=run_seam)


def _register_fvd(metrics) -> None:
    fvd = metrics.add_parser("fvd", help="Frechet Video Distance between two folders")
    fvd.add_argument("--real", required=True, nargs="+", metavar="DIR",
                     help="folder(s) or files of real .mp4 clips")
    fvd.add_argument("--fake", required=True, nargs="+", metavar="DIR",
                     help="folder(s) or files of generated .mp4 clips")
    fvd.add_argument("--protocol", choices=FVD_PROTOCOLS, default="avlib",
                     help="whose conventions: avlib (default: short side + centre crop, covariance "
                          "/ (N-1)); stylegan-v (StyleGAN-V and cd-fvd: squash, covariance / N); "
                          "videogpt (VideoGPT and TATS: square crop, squash, / (N-1))")
    fvd.add_argument("--i3d", metavar="PATH_OR_URL",
                     help="i3d_pretrained_400.pt (plain state dict) or StyleGAN-V's "
                          "i3d_torchscript.pt; 'toy' for the toy world's TOY network (tiny profile), "
                          "'tiny' for a random test network")
    fvd.add_argument("--frames", type=positive_int, default=16, help="frames per video (default: 16)")
    fvd.add_argument("--resize", choices=FVD_RESIZE_MODES, default=None,
                     help="override the protocol's resize rule (recorded in the output)")
    fvd.add_argument("--no-cache", action="store_true", help="do not read or write cached features")
    _common(fvd)
    fvd.set_defaults(func=run_fvd)


def _register_clipsim(metrics) -> None:
    clip = metrics.add_parser("clipsim", help="CLIP similarity of each video's frames to a text")
    clip.add_argument("--videos", required=True, nargs="+", metavar="DIR",
                      help="folder(s) or files of .mp4 videos")
    clip.add_argument("--text", required=True, type=nonblank_text, help="text to compare with (e.g. the class name)")
    clip.add_argument("--model", default=None, metavar="ID",
                      help="CLIP hub id or folder (default: openai/clip-vit-base-patch32); "
                           "'toy' for the toy world's TOY CLIP (tiny profile), 'tiny' for a random test network")
    clip.add_argument("--protocol", choices=CLIPSIM_PROTOCOLS, default="clip",
                      help="clip (default): RGB, CLIP's preprocessing; report: the report "
                           "repository's CLIP_Score.py (BGR, squash, mean=std=0.5)")
    _common(clip)
    clip.set_defaults(func=run_clipsim)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, metavar="OUT.json", help="where to write the result")
    parser.add_argument("--seed", type=seed_int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _finish(args, result: dict, line: str) -> int:
    result["run_record"] = run_record(seed=args.seed, command=f"metrics {args.metric}")
    write_json(args.json, result)
    print(f"{line} -> {args.json}")
    return 0


def run_av_align(args) -> int:
    from avlib.metrics import av_align

    check_output(args.json)
    av_align.keep_freed_memory()  # this process only computes AV-Align
    results = av_align.av_align_videos(video_paths(args.videos), args.version, args.workers,
                                       not args.quiet)
    summary = av_align.summarize(results, args.version, args.seed)
    if args.segment_seconds:
        from avlib.metrics.long_video import segment_scores

        for result in results:
            scores = segment_scores(result, args.segment_seconds, len(result.flow_trajectory) / result.fps,
                                    args.version)
            summary["videos"][Path(result.video).stem]["segments"] = {
                "segment_seconds": args.segment_seconds, "scores": scores, **mean_with_ci(scores, args.seed)}
    low, high = summary["ci95"]
    return _finish(args, summary, f"AV-Align ({args.version}) {summary['mean']:.3f} "
                                  f"[{low:.3f}, {high:.3f}], n={summary['n']}")


def run_seam(args) -> int:
    from avlib.metrics.long_video import seam_score_files

    check_output(args.json)
    result = seam_score_files(video_paths(args.videos), args.window, args.seed)
    low, high = result["ci95"]
    return _finish(args, result, f"seam score {result['seam_score']:.3f} [{low:.3f}, {high:.3f}], "
                                 f"{result['n_boundaries']} boundaries")


def run_fvd(args) -> int:
    from avlib.cache import default_root
    from avlib.metrics import fvd

    check_output(args.json)
    if args.i3d is None:
        raise CheckpointError("FVD needs the Kinetics-400 I3D: pass --i3d PATH_OR_URL "
                              "(i3d_pretrained_400.pt, or --i3d tiny for a random test network)")
    named = {"tiny": fvd.tiny_backbone, TOY_METRICS: fvd.toy_backbone}
    backbone = (named[args.i3d](frames=args.frames, protocol=args.protocol, resize=args.resize)
                if args.i3d in named
                else fvd.pretrained_backbone(args.i3d, args.frames, args.protocol, args.resize))
    cache = None if args.no_cache else fvd.FeatureCache(default_root("fvd"))
    result = fvd.compute_fvd(video_paths(args.real), video_paths(args.fake), backbone, cache,
                             seed=args.seed, progress=not args.quiet, protocol=args.protocol)
    low, high = result["ci95"]
    return _finish(args, result, f"FVD ({args.protocol}) {result['fvd']:.4g} [{low:.4g}, {high:.4g}], "
                                 f"n_real={result['n_real']}, n_fake={result['n_fake']}")


def run_clipsim(args) -> int:
    from avlib.metrics import clipsim

    check_output(args.json)
    named = {"tiny": clipsim.ClipScorer.tiny, TOY_METRICS: clipsim.toy_clip_scorer}
    scorer = (named[args.model](protocol=args.protocol) if args.model in named
              else clipsim.ClipScorer.from_pretrained(args.model or clipsim.DEFAULT_MODEL,
                                                      protocol=args.protocol))
    videos = video_paths(args.videos)
    texts = [args.text] * len(videos)
    scores = clipsim.clipsim_videos(videos, texts, scorer, not args.quiet)
    summary = clipsim.summarize(videos, texts, scores, scorer, args.seed)
    low, high = summary["ci95"]
    return _finish(args, summary, f"CLIPSIM ({scorer.model_id}, {args.protocol}) {summary['mean']:.4f} "
                                  f"[{low:.4f}, {high:.4f}], n={summary['n']}")
