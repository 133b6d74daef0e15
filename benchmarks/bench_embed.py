"""Embedding throughput of the audio encoders at their official sizes: batched vs one by one.

    .venv/bin/python benchmarks/bench_embed.py [--clips 8] [--seconds 2] [--batch 8] [--repeats 2]

Weights are random (speed does not depend on their values), so no checkpoint is needed.
Both ways run in the same process on the same clips; the ratio is what to compare across
machines, since absolute clips/s depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from avlib.audio import AudioEncoder, BEATsEncoder, CAVPEncoder

SR = 16000


def clips_per_second(encoder: AudioEncoder, clips: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(clips), batch_size):
        encoder.encode(clips[i:i + batch_size])
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    return len(clips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (TempoTokens infers on 2 s)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    clips = (0.3 * np.random.default_rng(0).standard_normal(
        (args.clips, round(args.seconds * SR)))).astype(np.float32)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; "
          f"{args.clips} clips of {args.seconds:g} s; load average {os.getloadavg()[0]:.1f}")
    for encoder in (CAVPEncoder(), BEATsEncoder(output_layers="all")):
        encoder = encoder.eval().to(args.device)
        encoder.encode(clips[:1])  # warm-up: allocator, kernels
        # Interleaved repeats, best of each: the least disturbed by other load on the machine.
        runs = [(clips_per_second(encoder, clips, 1), clips_per_second(encoder, clips, args.batch))
                for _ in range(args.repeats)]
        one_by_one, batched = (max(r) for r in zip(*runs))
        print(f"{encoder.name:>5}: one by one {one_by_one:6.2f} clips/s, batch {args.batch} "
              f"{batched:6.2f} clips/s, ratio {batched / one_by_one:.2f}x")


if __name__ == "__main__":
    main()
