"""``avlib generate``: text and/or audio in, mp4 (audio muxed) + JSON sidecar out."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from avlib.cli.args import (check_device, check_output, nonnegative_float,
                            positive_float, positive_int, seed_int)
from avlib.config import LONG_MODES, PROFILES, SCHEDULERS, check_frame_size, check_windows, load_config
from avlib.errors import AvlibError
from avlib.io import remove_orphaned_temps
from avlib.run import Run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate a video from text and/or audio",
        description="Generate a video through the frozen text-to-video model. With --mapper, the "
                    "audio conditions the frames through a trained mapper; otherwise the prompt "
                    "does and --audio is only muxed into the mp4.")
    p.add_argument("--prompt", default=None, help="text prompt (with --mapper: text around the audio tokens)")
    p.add_argument("--audio", type=Path, default=None, help="audio file (wav/flac/mp3/mp4)")
    p.add_argument("--mapper", type=Path, default=None, help="run folder written by `avlib train`")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .mp4")
    p.add_argument("--profile", choices=PROFILES, default="tiny",
                   help="tiny (CPU, offline, default) or paper (zeroscope on a GPU)")
    p.add_argument("--pretrained", default=None, help="text-to-video weights: hub id or local folder")
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (paper: 25)")
    p.add_argument("--guidance", type=nonnegative_float, default=None, help="guidance scale (paper: 25)")
    p.add_argument("--seed", type=seed_int, default=None, help="random seed (default 64)")
    p.add_argument("--frames", type=positive_int, default=None, help="number of frames (paper: 24)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frame rate (default: the run's or profile's inference.fps); each window of "
                        "frames / fps seconds of audio makes that many frames, and a video from "
                        "audio is as long as the audio")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help="sampler (default: the run's or profile's inference.scheduler)")
    p.add_argument("--height", type=positive_int, default=None,
                   help="frame height, a multiple of the VAE's factor (8 for zeroscope)")
    p.add_argument("--width", type=positive_int, default=None, help="frame width, as --height")
    p.add_argument("--start", type=nonnegative_float, default=0.0,
                   help="with --audio: where in the audio the video starts, in seconds (default 0)")
    p.add_argument("--seconds", type=positive_float, default=None,
                   help="with --audio: how many seconds of it to make video of (default: all of the rest)")
    p.add_argument("--long-mode", choices=LONG_MODES, default="diagonal",
                   help="with --audio: diagonal (windows denoised together, no seams; default) or "
                        "independent (each window apart, the baseline)")
    p.add_argument("--device", default=None, help="cpu or cuda (default from the profile)")
    p.set_defaults(func=run)


def _run_config(args: argparse.Namespace):
    """The experiment config behind the defaults: the mapper run's own, or the profile's."""
    if args.mapper is not None:
        return Run(args.mapper).read_config()
    return load_config("dog", args.profile)


def run(args: argparse.Namespace) -> int:
    from avlib.generate import generate_file, read_conditioning_audio
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.pipeline.t2v import load_t2v, pretrained_vae_scale

    check_output(args.output, ".mp4")
    for target in (args.output, args.output.with_suffix(".json")):  # what a killed generate left
        remove_orphaned_temps(target)
    if args.mapper is not None and args.audio is None:
        raise AvlibError("--mapper needs --audio: the mapper turns audio into the video's conditioning")
    if args.audio is None and not (args.prompt or "").strip():
        raise AvlibError("nothing to generate from: give --prompt TEXT, or --audio FILE with --mapper RUN")
    if args.audio is None and (args.start or args.seconds is not None):
        raise AvlibError("--start and --seconds cut the audio: give --audio too")
    if args.audio is not None:
        read_conditioning_audio(args.audio)  # fail on bad audio before loading any model
    config = _run_config(args)
    given = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "seed": args.seed,
             "num_frames": args.frames, "fps": args.fps, "height": args.height, "width": args.width,
             "scheduler": args.scheduler}
    settings = dataclasses.replace(config.inference, **{k: v for k, v in given.items() if v is not None})
    settings = dataclasses.replace(settings, audio_seconds=settings.num_frames / settings.fps)
    if args.mapper is not None:  # the mapper maps its training window to its frames, and no other
        check_windows(dataclasses.replace(config, inference=settings))
    device = check_device(args.device or config.model.device,
                          "--device" if args.device else f"the {config.profile} profile's device")
    pretrained = args.pretrained or config.model.pretrained
    check_frame_size([(f"--height {settings.height}", settings.height), (f"--width {settings.width}", settings.width)],
                     pretrained_vae_scale(pretrained))  # before any model loads
    if args.mapper is not None:
        pipeline = AudioToVideoPipeline.from_run(args.mapper, [f"model.pretrained={pretrained}"], device=device)
    else:
        pipeline = AudioToVideoPipeline.from_t2v(load_t2v(pretrained, dtype=config.model.dtype, device=device))
        pipeline.enable_vae_slicing(config.model.vae_slicing)
    pipeline.set_settings(settings)
    sidecar = generate_file(pipeline, args.output, prompt=args.prompt, audio_path=args.audio, config=config,
                            start=args.start, seconds=args.seconds, long_mode=args.long_mode)
    frames = sidecar["conditioning"].get("frames", settings.num_frames)
    print(f"wrote {args.output} ({frames} frames, {sidecar['elapsed_s']} s)")
    return 0
