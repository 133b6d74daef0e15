"""AV-Align throughput: avlib's process pool vs a straightforward sequential loop.

    .venv/bin/python benchmarks/bench_av_align.py [--clips 8] [--seconds 4] [--size 128] [--workers N]

The clips come from the synthetic world (known events), written to a temporary folder.
The sequential baseline is the definition written out plainly (one file after another,
Python loops for peaks and matching, as upstream's script runs it); both must give the
same scores, then their throughput is compared. Absolute videos/s depend on the machine
and its load; the ratio is what to compare.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import librosa

from avlib.data.synthetic import write_synthetic_dataset
from avlib.metrics.av_align import av_align_videos, default_workers


def sequential_score(video: Path) -> float:
    """AV-Align 2025 of one video, written out plainly."""
    audio, sr = librosa.load(video.with_suffix(".wav"))
    envelope = librosa.onset.onset_strength(y=audio, sr=sr)
    audio_peaks = librosa.frames_to_time(librosa.onset.onset_detect(onset_envelope=envelope, sr=sr), sr=sr)

    capture = cv2.VideoCapture(str(video))
    fps, grays = capture.get(cv2.CAP_PROP_FPS), []
    while (frame := capture.read())[0]:
        grays.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    motion = []
    for prev, curr in zip(grays[:-1], grays[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, curr, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        motion.append(cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0])
    motion = [motion[0]] + motion
    video_peaks = [i / fps for i in range(1, len(motion) - 1)
                   if motion[i - 1] < motion[i] > motion[i + 1] and motion[i] >= 0.1]

    matched, used = 0, [False] * len(video_peaks)
    for a in audio_peaks:
        for j, v in enumerate(video_peaks):
            if not used[j] and v - 1 / fps < a < v + 1 / fps:
                matched, used[j] = matched + 1, True
                break
    union = len(audio_peaks) + len(video_peaks) - matched
    return matched / union if union else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips per synthetic class (3 classes)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_dataset(folder, clips_per_class=args.clips, seconds=args.seconds,
                                size=args.size)
        videos = sorted(Path(folder).glob("*.mp4"))
        workers = args.workers or default_workers(len(videos))
        print(f"{len(videos)} clips of {args.seconds:g} s, {args.size}x{args.size} at 12 fps; "
              f"{os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        sequential_score(videos[0])  # warm-up: imports, numba compilation

        start = time.perf_counter()
        expected = [sequential_score(v) for v in videos]
        sequential_s = time.perf_counter() - start

        start = time.perf_counter()  # includes starting the worker processes
        results = av_align_videos(videos, "2025", workers=workers, progress=False)
        parallel_s = time.perf_counter() - start

    assert [r.score for r in results] == expected, "parallel scores differ from the sequential ones"
    print(f"sequential loop    : {len(videos) / sequential_s:6.2f} videos/s ({sequential_s:.1f} s)")
    print(f"avlib, {workers} processes: {len(videos) / parallel_s:6.2f} videos/s ({parallel_s:.1f} s)")
    print(f"ratio {sequential_s / parallel_s:.2f}x, identical scores (mean {sum(expected) / len(expected):.3f})")


if __name__ == "__main__":
    main()
