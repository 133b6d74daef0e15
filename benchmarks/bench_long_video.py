"""Long videos and streams, tiny profile: cost, real-time factor, latency and memory ratios, in one run.

    .venv/bin/python benchmarks/bench_long_video.py [--seconds 10] [--long-seconds 60] [--threads 1]

1. Whole-audio (diagonal) vs independent windows: generation time per video second, both
   on the same audio, pipeline and seed, alternated over ``--repeats`` (median).
2. Streaming: real-time factor (video seconds per wall second, first audio in to last frame
   out, models loaded) and first-frame latency, with the audio read as fast as it decodes and
   with ``--realtime`` pacing (then also the largest lag of a frame behind its audio).
3. Peak memory (max RSS of a fresh child process each) streaming ``--seconds`` vs
   ``--long-seconds`` of audio.

The pipeline is the thunder experiment's (toy-world text-to-video and CAVP) with an
untrained mapper: the mapper's weights do not change the cost.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(threads: int):
    import torch

    from avlib.config import load_config
    from avlib.pipeline.assemble import assemble

    torch.set_num_threads(threads)
    config = load_config("thunder", "tiny")
    pipeline = assemble(config, seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, pipeline.settings


def storm(seconds: float) -> np.ndarray:
    """A toy-world thunderstorm: rain with a clap every 2.7 s."""
    from avlib.data.synthetic import render_audio

    return render_audio("thunder", np.arange(0.8, seconds, 2.7), seconds, np.random.default_rng(0))


def whole_vs_independent(pipeline, seconds: float, repeats: int) -> dict:
    audio = storm(seconds)
    times = {"diagonal": [], "independent": []}
    pipeline.generate_long(storm(2.0), None)                     # warm-up
    for _ in range(repeats):
        for mode in times:
            start = time.perf_counter()
            pipeline.generate_long(audio, None, long_mode=mode)
            times[mode].append((time.perf_counter() - start) / seconds)
    per_second = {mode: float(np.median(values)) for mode, values in times.items()}
    return {"seconds_of_video": seconds, "s_per_video_second": per_second,
            "ratio_diagonal_over_independent": per_second["diagonal"] / per_second["independent"]}


def stream_stats(pipeline, seconds: float, realtime: bool) -> dict:
    from avlib.streaming import run_stream

    audio = storm(seconds)
    chunks = [audio[i:i + 4000] for i in range(0, audio.size, 4000)]       # 0.25 s chunks
    with tempfile.TemporaryDirectory() as scratch:
        return run_stream(pipeline, chunks, Path(scratch) / "live.mp4", realtime=realtime)


def child_peak(seconds: float, threads: int) -> dict:
    """Stream ``seconds`` of audio in a fresh process; its stats (peak memory included)."""
    out = subprocess.run([sys.executable, __file__, "--child-stream", str(seconds), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child-stream", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pipeline, settings = build(args.threads)
    if args.child_stream is not None:
        print(json.dumps(stream_stats(pipeline, args.child_stream, realtime=False)))
        return
    print(f"tiny profile, {settings.num_frames} frames/window, {settings.num_inference_steps} steps, guidance "
          f"{settings.guidance_scale}, {args.threads} torch thread(s), load {os.getloadavg()[0]:.1f}")
    cost = whole_vs_independent(pipeline, args.seconds, args.repeats)
    print(f"1. s per video second: diagonal {cost['s_per_video_second']['diagonal']:.3f}, independent "
          f"{cost['s_per_video_second']['independent']:.3f}; ratio {cost['ratio_diagonal_over_independent']:.3f} "
          "(target <= 1.2)")
    fast = stream_stats(pipeline, args.seconds, realtime=False)
    live = stream_stats(pipeline, args.seconds, realtime=True)
    print(f"2. stream, input as fast as it decodes: real-time factor {fast['real_time_factor']:.2f} (target >= 1.0), "
          f"first-frame latency {fast['first_frame_latency_s']:.2f} s; per CPU second of this process "
          f"{fast['cpu_real_time_factor']:.2f} video s")
    print(f"   stream, --realtime input: real-time factor {live['real_time_factor']:.2f}, first-frame latency "
          f"{live['first_frame_latency_s']:.2f} s (target <= 3), largest lag of a frame {live['max_lag_s']:.2f} s")
    short, long = child_peak(args.seconds, args.threads), child_peak(args.long_seconds, args.threads)
    print(f"3. peak memory streaming {args.seconds:g} s: {short['peak_memory_mb']:.0f} MB, {args.long_seconds:g} s: "
          f"{long['peak_memory_mb']:.0f} MB; ratio {long['peak_memory_mb'] / short['peak_memory_mb']:.3f} (target <= 1.2)")
    print(json.dumps({"cost": cost, "stream": fast, "stream_realtime": live,
                      "peak_memory_mb": {str(args.seconds): short["peak_memory_mb"],
                                         str(args.long_seconds): long["peak_memory_mb"]}}))


if __name__ == "__main__":
    main()
