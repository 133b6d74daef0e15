"""Video writing: :func:`avlib.media.write_video` (one ffmpeg process fed raw frames and samples)
against the moviepy route it replaced (a ``VideoClip`` with a mono ``AudioClip`` through
:func:`avlib.media.write_clip`: ffmpeg for the audio, then ffmpeg for the video), in one process
that holds what a generation kernel holds (torch, diffusers, touched memory).

    .venv/bin/python benchmarks/bench_write_video.py [--videos 40] [--size 32] [--frames 8] [--rounds 3]

Writes ``--videos`` clips (random frames, one second of sound each) with each writer, alternating,
``--rounds`` times; checks that both files decode to the same frames; prints the median seconds
per video of each and the ratio (moviepy / avlib). ``make demo`` writes about 1,000 such files.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def moviepy_write(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray) -> Path:
    """The writer before: moviepy samples frames and sound through Python callbacks."""
    from moviepy import VideoClip
    from moviepy.audio.AudioClip import AudioClip

    from avlib.media import SAMPLE_RATE, write_clip

    n = len(frames)

    def sound_at(t):                                           # (len(t), 1) or (1,): one channel
        index = np.round(np.atleast_1d(t) * SAMPLE_RATE).astype(int)
        out = np.zeros((index.size, 1), np.float32)
        inside = (index >= 0) & (index < audio.size)
        out[inside, 0] = audio[index[inside]]
        return out if np.ndim(t) else out[0]

    clip = VideoClip(lambda t: frames[min(round(t * fps), n - 1)], duration=n / fps)
    clip = clip.with_audio(AudioClip(sound_at, duration=audio.size / SAMPLE_RATE, fps=SAMPLE_RATE))
    return write_clip(clip, path, fps=fps)


def seconds_per_video(write, folder: Path, clips: list[tuple[np.ndarray, np.ndarray]], fps: float) -> float:
    start = time.perf_counter()
    for i, (frames, audio) in enumerate(clips):
        write(folder / f"{i}.mp4", frames, fps, audio=audio)
    return (time.perf_counter() - start) / len(clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ballast-mb", type=int, default=1024)
    args = parser.parse_args()

    import diffusers  # noqa: F401  (a generation kernel's imports)
    import torch

    from avlib.media import read_video, write_video

    ballast = torch.ones(args.ballast_mb * 2**20, dtype=torch.uint8)  # noqa: F841  (touched memory)
    rng = np.random.default_rng(0)
    fps = 8.0
    clips = [(rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8),
              (0.3 * rng.uniform(-1, 1, round(16000 * args.frames / fps))).astype(np.float32))
             for _ in range(args.videos)]
    times: dict[str, list[float]] = {"moviepy": [], "avlib": []}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        theirs, ours = (moviepy_write(folder / "a.mp4", *clips[0][:1], fps, clips[0][1]),
                        write_video(folder / "b.mp4", *clips[0][:1], fps, audio=clips[0][1]))
        assert np.array_equal(read_video(theirs)[0], read_video(ours)[0])  # the same H.264 stream
        for _ in range(args.rounds):
            times["moviepy"].append(seconds_per_video(moviepy_write, folder, clips, fps))
            times["avlib"].append(seconds_per_video(write_video, folder, clips, fps))
    baseline, ours = (statistics.median(times[name]) for name in ("moviepy", "avlib"))
    print(f"{args.videos} videos {args.frames}x{args.size}x{args.size} with 1 s of sound, {args.ballast_mb} MB "
          f"ballast, median of {args.rounds} rounds: moviepy {1000 * baseline:.1f} ms/video, "
          f"avlib {1000 * ours:.1f} ms/video; ratio (moviepy / avlib) {baseline / ours:.2f}x")


if __name__ == "__main__":
    main()
