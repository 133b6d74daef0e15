"""``avlib stream``: audio in as it arrives (a file or a pipe), a growing mp4 out, with timing stats."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from avlib.cli.args import check_device, check_output, positive_int, seed_int
from avlib.config import LONG_MODES
from avlib.run import Run


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stream", help="stream audio through a trained mapper into a growing video",
        description="Read audio as it arrives (a file, or a PCM WAV stream on stdin with --audio -), "
                    "turn it into frames in order and write them into a fragmented mp4 that plays "
                    "while it grows; STATS.json records the real-time factor, first-frame latency and "
                    "peak memory. With the same seed the frames are those of `avlib generate`.")
    p.add_argument("--mapper", type=Path, required=True, help="run folder written by `avlib train`")
    p.add_argument("--audio", required=True, metavar="FILE|-", help="audio file, or - for a WAV stream on stdin")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 (fragmented)")
    p.add_argument("--stats", type=Path, required=True, metavar="STATS.json", help="where to write the timing stats")
    p.add_argument("--realtime", action="store_true",
                   help="pace the input as a live source would (a file is read no faster than it plays)")
    p.add_argument("--prompt", default=None, help="text around the audio tokens")
    p.add_argument("--long-mode", choices=LONG_MODES, default="diagonal",
                   help="diagonal (windows denoised together; default) or independent windows")
    p.add_argument("--seed", type=seed_int, default=None, help="random seed (default: the run's)")
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default: the run's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the run's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from diffusers.utils import logging as diffusers_logging

    from avlib.io import run_record, write_json
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.pipeline.long_video import require_audio_mapper
    from avlib.streaming import audio_chunks, run_stream

    check_output(args.output, ".mp4")
    check_output(args.stats, ".json")
    given = {"inference.seed": args.seed, "inference.num_inference_steps": args.steps}
    overrides = [f"{key}={value}" for key, value in given.items() if value is not None]
    config = Run(args.mapper).read_config(overrides)
    device = check_device(args.device or config.model.device,
                          "--device" if args.device else f"the {config.profile} profile's device")
    chunks = audio_chunks(args.audio)             # a missing file fails here, before any model loads
    diffusers_logging.disable_progress_bar()      # stderr keeps to one line on an error
    load_start = time.perf_counter()
    pipeline = AudioToVideoPipeline.from_run(args.mapper, overrides, device=device)
    require_audio_mapper(pipeline)
    load_seconds = time.perf_counter() - load_start
    settings = pipeline.settings
    stats = run_stream(pipeline, chunks, args.output, prompt=args.prompt or config.prompt,
                       realtime=args.realtime, long_mode=args.long_mode)
    write_json(args.stats, {**stats, "load_seconds": round(load_seconds, 3),
                            **run_record(config, seed=settings.seed, audio=str(args.audio), output=str(args.output),
                                         settings=dataclasses.asdict(settings), long_mode=args.long_mode,
                                         device=device)})
    print(f"wrote {args.output} ({stats['frames']} frames, real-time factor {stats['real_time_factor']:.2f}, "
          f"first frame after {stats['first_frame_latency_s']} s) and {args.stats}")
    return 0
