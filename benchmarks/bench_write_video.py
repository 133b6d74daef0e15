"""Video writing: :func:`avlib.media.write_video` (one ffmpeg process per file, fed raw frames and
samples) and :func:`avlib.media.write_videos` (16 files per process, what sampling and the
synthetic world use) against the moviepy route they replaced (a ``VideoClip`` with a mono ``AudioClip`` through
:func:`avlib.media.write_clip`: ffmpeg for the audio, then ffmpeg for the video), in one process
that holds what a generation kernel holds (torch, diffusers, touched memory).

    .venv/bin/python benchmarks/bench_write_video.py [--videos 40] [--size 32] [--frames 8] [--rounds 3]

Writes ``--videos`` clips (random frames, one second of sound each) with each writer, alternating,
``--rounds`` times; checks that the files decode to the same frames; prints the median seconds
per video of each and the ratios against moviepy. ``make demo`` writes about 1,000 such files.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from media_bench import kernel_sized, parse_args, print_medians, seconds_per_video


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


def main() -> None:
    args = parse_args(__doc__)
    ballast = kernel_sized(args.ballast_mb)  # noqa: F841  (held while timing)

    from avlib.media import read_video, write_video, write_videos

    rng = np.random.default_rng(0)
    fps = 8.0
    clips = [(rng.integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8),
              (0.3 * rng.uniform(-1, 1, round(16000 * args.frames / fps))).astype(np.float32))
             for _ in range(args.videos)]
    writers = {"moviepy": lambda paths, clips, fps: [moviepy_write(p, f, fps, a) for p, (f, a) in zip(paths, clips)],
               "write_video": lambda paths, clips, fps: [write_video(p, f, fps, audio=a) for p, (f, a) in zip(paths, clips)],
               "write_videos": lambda paths, clips, fps: write_videos(paths, [f for f, _ in clips], fps,
                                                                      [a for _, a in clips])}
    times: dict[str, list[float]] = {name: [] for name in writers}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        written = {name: write_all([folder / f"{name}.mp4"], clips[:1], fps)[0] for name, write_all in writers.items()}
        decoded = [read_video(path)[0] for path in written.values()]
        assert all(np.array_equal(decoded[0], frames) for frames in decoded)  # the same H.264 stream
        for _ in range(args.rounds):
            for name, write_all in writers.items():
                times[name].append(seconds_per_video(write_all, [folder / f"{i}.mp4" for i in range(len(clips))],
                                                      clips, fps))
    print_medians(times, " with 1 s of sound", args)

if __name__ == "__main__":
    main()
