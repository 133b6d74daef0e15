"""What ``bench_read_video.py`` and ``bench_write_video.py`` share: their options, and a process
that holds what a notebook kernel holds when it reads or writes videos (forking and spawning cost
more in a bigger process)."""
from __future__ import annotations

import argparse
import statistics
import time


def parse_args(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ballast-mb", type=int, default=1024)
    return parser.parse_args()


def kernel_sized(ballast_mb: int):
    """Import torch and diffusers (a generation or evaluation kernel's imports) and return
    ``ballast_mb`` of touched memory, to be held while timing."""
    import diffusers  # noqa: F401
    import torch

    return torch.ones(ballast_mb * 2**20, dtype=torch.uint8)


def seconds_per_video(run_all, paths: list, *args) -> float:
    """Wall seconds of ``run_all(paths, *args)`` per path."""
    start = time.perf_counter()
    run_all(paths, *args)
    return (time.perf_counter() - start) / len(paths)


def print_medians(times: dict[str, list[float]], what: str, args: argparse.Namespace) -> None:
    """Each way's median seconds per video, then the ratio of the first (the baseline) to each other."""
    median = {name: statistics.median(values) for name, values in times.items()}
    baseline, *ours = median
    print(f"{args.videos} videos {args.frames}x{args.size}x{args.size}{what}, {args.ballast_mb} MB ballast, "
          f"median of {args.rounds} rounds: " + ", ".join(f"{name} {1000 * value:.1f} ms/video"
                                                          for name, value in median.items()))
    print(f"ratio ({baseline} / avlib): " + ", ".join(f"{name} {median[baseline] / median[name]:.2f}x"
                                                      for name in ours))
