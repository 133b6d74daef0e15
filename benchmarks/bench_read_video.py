"""Video decoding: :func:`avlib.media.read_video` against imageio-ffmpeg's frame reader, which
it replaced, in one process that holds what an evaluation holds (torch, diffusers, a UNet).

    .venv/bin/python benchmarks/bench_read_video.py [--videos 40] [--size 32] [--frames 8] [--rounds 3]

Writes ``--videos`` synthetic mp4s (with a soundtrack, as avlib's samples have), then reads them
all with each reader, alternating, ``--rounds`` times; prints the median seconds per video of
each and the ratio (imageio-ffmpeg / avlib). Both readers must give the same bytes and fps.
A process that holds more memory forks more slowly: imageio-ffmpeg starts ffmpeg with a
``preexec_fn``, which rules out ``vfork``, so its cost grows with the process; ``--ballast-mb``
adds touched memory to show it (an evaluation kernel holds 1-2 GB).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def imageio_read(path: Path) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]), meta["fps"]


def seconds_per_video(read, videos: list[Path]) -> float:
    start = time.perf_counter()
    for video in videos:
        read(video)
    return (time.perf_counter() - start) / len(videos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ballast-mb", type=int, default=1024)
    args = parser.parse_args()

    import diffusers  # noqa: F401  (an evaluation kernel's imports)
    import torch

    from avlib.media import read_video, write_video

    ballast = torch.ones(args.ballast_mb * 2**20, dtype=torch.uint8)  # noqa: F841  (touched memory)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        videos = [write_video(Path(folder) / f"v{i}.mp4",
                              rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8),
                              fps=8, audio=np.zeros(16000 * args.frames // 8, np.float32))
                  for i in range(args.videos)]
        for video in videos:
            ours, theirs = read_video(video), imageio_read(video)
            assert np.array_equal(ours[0], theirs[0]) and ours[1] == theirs[1], video
        times: dict[str, list[float]] = {"imageio-ffmpeg": [], "avlib": []}
        for _ in range(args.rounds):
            times["imageio-ffmpeg"].append(seconds_per_video(imageio_read, videos))
            times["avlib"].append(seconds_per_video(read_video, videos))
    baseline, ours = (statistics.median(times[name]) for name in ("imageio-ffmpeg", "avlib"))
    print(f"{args.videos} videos {args.frames}x{args.size}x{args.size}, {args.ballast_mb} MB ballast, "
          f"median of {args.rounds} rounds: imageio-ffmpeg {1000 * baseline:.1f} ms/video, "
          f"avlib {1000 * ours:.1f} ms/video; ratio (imageio-ffmpeg / avlib) {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
