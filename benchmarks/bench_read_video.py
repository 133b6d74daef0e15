"""Video decoding: :func:`avlib.media.read_video` (one file per ffmpeg process) and
:func:`avlib.media.iter_videos` (16 files per process, what evaluation and the human-eval oracle
use) against imageio-ffmpeg's frame reader, which they replaced, in one process that holds what
an evaluation holds (torch, diffusers, a UNet).

    .venv/bin/python benchmarks/bench_read_video.py [--videos 40] [--size 32] [--frames 8] [--rounds 3]

Writes ``--videos`` synthetic mp4s (with a soundtrack, as avlib's samples have), then reads them
all with each reader, alternating, ``--rounds`` times; prints the median seconds per video of
each and the ratios against imageio-ffmpeg. Every reader must give the same bytes and fps.
A process that holds more memory forks more slowly: imageio-ffmpeg starts ffmpeg with a
``preexec_fn``, which rules out ``vfork``, so its cost grows with the process; ``--ballast-mb``
adds touched memory to show it (an evaluation kernel holds 1-2 GB).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from media_bench import kernel_sized, parse_args, print_medians, seconds_per_video


def imageio_read(path: Path) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader]), meta["fps"]


def main() -> None:
    args = parse_args(__doc__)
    ballast = kernel_sized(args.ballast_mb)  # noqa: F841  (held while timing)

    from avlib.media import iter_videos, read_video, write_video

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        videos = [write_video(Path(folder) / f"v{i}.mp4",
                              rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8),
                              fps=8, audio=np.zeros(16000 * args.frames // 8, np.float32))
                  for i in range(args.videos)]
        batched = list(iter_videos(videos))
        for video, together in zip(videos, batched):
            ours, theirs = read_video(video), imageio_read(video)
            assert np.array_equal(ours[0], theirs[0]) and ours[1] == theirs[1], video
            assert np.array_equal(together[0], theirs[0]) and together[1] == theirs[1], video
        readers = {"imageio-ffmpeg": lambda paths: [imageio_read(p) for p in paths],
                   "read_video": lambda paths: [read_video(p) for p in paths],
                   "iter_videos": lambda paths: list(iter_videos(paths))}
        times: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, read_all in readers.items():
                times[name].append(seconds_per_video(read_all, videos))
    print_medians(times, "", args)

if __name__ == "__main__":
    main()
