"""Generation time and peak memory: AudioToVideoPipeline vs diffusers' TextToVideoSDPipeline.

    .venv/bin/python benchmarks/bench_pipeline.py [--size tiny|paper] [--frames 8] [--height 32]
        [--width 32] [--steps 4] [--device cpu] [--dtype float32]

Both pipelines run the same components (random weights, zeroscope's architecture at
``--size paper``) with the same settings and seed, each in a fresh child process so that its
peak memory (max RSS on CPU, max allocated on CUDA) is its own. Our pipeline runs its
per-frame conditioning path (audio tokens for every frame), diffusers' a single text context.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch


def run_one(args: argparse.Namespace) -> dict:
    from avlib.pipeline.t2v import DTYPES, T2VComponents
    from avlib.pipeline.tiny import random_t2v_components

    parts = random_t2v_components(args.size)
    dtype = DTYPES[args.dtype]
    for name in ("unet", "vae", "text_encoder"):
        parts[name].to(args.device, dtype).eval().requires_grad_(False)
    settings = dict(num_inference_steps=args.steps, guidance_scale=25.0, num_frames=args.frames,
                    height=args.height, width=args.width, generator=torch.Generator().manual_seed(0))
    if args.which == "ours":
        from avlib.pipeline.audio_to_video import AudioToVideoPipeline

        pipe = AudioToVideoPipeline.from_t2v(T2VComponents(**parts, source=f"random-{args.size}"))
        pipe.set_settings(scheduler="ddim")   # the sampler TextToVideoSDPipeline uses
        pipe.set_progress_bar_config(disable=True)
        dim = parts["text_encoder"].config.hidden_size
        tokens = torch.randn(1, args.frames, 5, dim, dtype=dtype, device=args.device)
        run = lambda: pipe(frame_tokens=tokens, prompt="a dog barking", **settings)
    else:
        from diffusers import TextToVideoSDPipeline

        pipe = TextToVideoSDPipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        run = lambda: pipe(prompt="a dog barking", negative_prompt="", output_type="np", **settings)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):  # best of N: the run least disturbed by other load
        start = time.perf_counter()
        with torch.no_grad():
            run()
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    peak = (torch.cuda.max_memory_allocated() if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": seconds, "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--which", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.which:
        print(json.dumps(run_one(args)))
        return
    results = {}
    for which in ("diffusers", "ours"):
        cmd = [sys.executable, __file__, "--which", which] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[which] = json.loads(out.strip().splitlines()[-1])
    base, ours = results["diffusers"], results["ours"]
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device} {args.dtype}; size {args.size}, {args.frames} frames "
          f"{args.height}x{args.width}, {args.steps} steps, guidance 25")
    for name, r in results.items():
        print(f"{name:>9}: {r['seconds']:7.2f} s, peak {r['peak_bytes'] / 2**20:8.1f} MiB")
    print(f"ratio ours/diffusers: time {ours['seconds'] / base['seconds']:.2f}x, "
          f"peak memory {ours['peak_bytes'] / base['peak_bytes']:.2f}x")


if __name__ == "__main__":
    main()
