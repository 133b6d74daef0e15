"""AV-Align throughput: `avlib metrics av-align` against upstream's `av_align.py`, whole processes.

    .venv/bin/python benchmarks/bench_av_align.py [--clips 8] [--seconds 4] [--size 256] [--pairs 3]

Both run as separate processes on the same folder of synthetic clips (3 classes x ``--clips``,
12 fps, audio in ``{stem}.wav``): upstream's script (``upstream_av_align.py``, its code
verbatim) and avlib's CLI. Each pair runs the two back to back, in alternating order, so
that load from other jobs hits both alike; every pair prints both processes' wall and CPU
time (user + system), the wall-time ratio (upstream / avlib) and the 1-minute load average
before and after. Per-video scores and peak times must be identical (checked with ``==``).

On a loaded machine wall times mostly measure the other jobs; CPU times do not. The last
line therefore also gives the ratio an idle machine would show if avlib's CPU time divided
evenly over the cores it uses (upstream's script runs on one core: its wall time on an idle
machine equals its CPU time).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from avlib.data.synthetic import write_synthetic_dataset

HERE = Path(__file__).resolve().parent


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def per_video(avlib_json: Path) -> dict:
    videos = json.loads(avlib_json.read_text())["videos"]
    return {stem: {key: v[key] for key in ("score", "audio_peaks_s", "video_peaks_s")}
            for stem, v in videos.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="clips per synthetic class (3 classes)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--pairs", type=int, default=3, help="paired runs (default: 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        write_synthetic_dataset(folder, clips_per_class=args.clips, seconds=args.seconds,
                                size=args.size)
        upstream_json, avlib_json = Path(tmp) / "upstream.json", Path(tmp) / "avlib.json"
        commands = {
            "upstream": [sys.executable, str(HERE / "upstream_av_align.py"),
                         "--input_dir", f"{folder}/", "--json", str(upstream_json)],
            "avlib": [sys.executable, "-m", "avlib", "metrics", "av-align", str(folder),
                      "--quiet", "--json", str(avlib_json)],
        }
        count = len(list(folder.glob("*.mp4")))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{count} clips of {args.seconds:g} s, {args.size}x{args.size} at 12 fps; "
              f"{cores} CPUs; python {sys.version.split()[0]}")
        ratios, cpu = [], {"upstream": [], "avlib": []}
        for pair in range(args.pairs):
            load = os.getloadavg()[0]
            order = ("upstream", "avlib") if pair % 2 == 0 else ("avlib", "upstream")
            times = {name: timed(commands[name]) for name in order}
            (up_wall, up_cpu), (av_wall, av_cpu) = times["upstream"], times["avlib"]
            ratios.append(up_wall / av_wall)
            cpu["upstream"].append(up_cpu)
            cpu["avlib"].append(av_cpu)
            print(f"pair {pair + 1} (load average {load:.2f} before, {os.getloadavg()[0]:.2f} after): "
                  f"upstream {up_wall:.2f} s wall / {up_cpu:.2f} s CPU, "
                  f"avlib {av_wall:.2f} s wall / {av_cpu:.2f} s CPU, ratio {up_wall / av_wall:.2f}x")
            upstream, ours = json.loads(upstream_json.read_text()), per_video(avlib_json)
            assert upstream == ours, "per-video scores or peak times differ from upstream's"
    up_cpu, av_cpu = statistics.median(cpu["upstream"]), statistics.median(cpu["avlib"])
    print(f"identical per-video scores and peak times ({count} videos); "
          f"wall-time ratio upstream / avlib: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    print(f"median CPU time: upstream {up_cpu:.2f} s, avlib {av_cpu:.2f} s ({up_cpu / av_cpu:.2f}x less); "
          f"idle-machine estimate with avlib's CPU spread over {cores} cores: "
          f"{up_cpu / (av_cpu / cores):.2f}x")


if __name__ == "__main__":
    main()
