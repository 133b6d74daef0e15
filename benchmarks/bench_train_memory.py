"""Peak memory and time of a paper-size training step, by the frozen models' dtype.

    .venv/bin/python benchmarks/bench_train_memory.py [--device cpu|cuda] [--dtypes float32 bfloat16]
        [--frames 8] [--height 64] [--width 64] [--steps 2]

Each dtype runs in its own process (peak memory is per process): zeroscope's architecture
(UNet3D, VAE, 1024-wide CLIP text encoder) with random weights, frozen in that dtype, and the
report's mapper in float32 trained through them by ``avlib.train.denoising_loss`` (the loop's
objective) with AdamW, from cached-style latents and CAVP features. Peak memory: CUDA's
``max_memory_allocated``; on the CPU the process's peak resident set (weights are built
directly in the dtype, so it is not the float32 build's peak).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

DEFAULT_DTYPES = {"cuda": ["float32", "float16", "bfloat16"], "cpu": ["float32", "bfloat16"]}


def one_dtype(args) -> dict:
    """Run ``args.steps`` training steps with the frozen parts in ``args.dtype``; measure them."""
    import torch
    from diffusers import DDPMScheduler

    from avlib.config import MapperConfig
    from avlib.mapper import build_mapper
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.pipeline.t2v import DTYPES, T2VComponents
    from avlib.pipeline.tiny import random_t2v_components
    from avlib.train import checkpoint_unet_blocks, denoising_loss

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.set_default_dtype(dtype)   # build the frozen weights in their dtype
    parts = random_t2v_components("paper")
    torch.set_default_dtype(torch.float32)
    for name in ("unet", "vae", "text_encoder"):
        parts[name].eval().requires_grad_(False).to(device, dtype)
    # the pipeline installs the per-frame conditioning; training conditions through it
    pipeline = AudioToVideoPipeline.from_t2v(T2VComponents(**parts, source="random-paper"))
    checkpoint_unet_blocks(pipeline.unet)
    mapper = build_mapper(MapperConfig(num_frames=args.frames), in_dim=512).to(device)  # the report's, float32
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=1e-5)
    schedule = DDPMScheduler.from_config(pipeline.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, args.frames, args.height // 8, args.width // 8, generator=generator).to(device)
    audio = torch.randn(1, 8, 512, generator=generator).to(device)              # 2 s of CAVP vectors
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(0, 1000, (1,), generator=generator).to(device)
        loss, _, _ = denoising_loss(pipeline, mapper, schedule, audio, latents, noise, timesteps, None, 0.01)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)          # bytes
    frozen = sum(p.numel() * p.element_size() for m in (pipeline.unet, pipeline.vae, pipeline.text_encoder)
                 for p in m.parameters())
    return {"dtype": args.dtype, "device": args.device, "frozen_gb": frozen / 1e9, "peak_gb": peak / 1e9,
            "s_per_step": sorted(times)[len(times) // 2], "loss_dtype": str(loss.dtype),
            "mapper_dtype": str(next(mapper.parameters()).dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=None)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)  # one child process's dtype
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    if args.dtype:
        print(json.dumps(one_dtype(args)))
        return
    import torch

    print(f"{platform.machine()}, torch {torch.__version__}, {args.device}; paper-size random weights, "
          f"{args.frames} frames {args.height}x{args.width}, gradient checkpointing, median of {args.steps} steps")
    print("| frozen dtype | frozen weights | peak memory | peak / first row's | s/step | mapper / loss |")
    print("|---|---|---|---|---|---|")
    baseline = None   # the first dtype's peak (float32 by default): the ratio's denominator
    for dtype in args.dtypes or DEFAULT_DTYPES[args.device]:
        child = [sys.executable, __file__, "--dtype", dtype] + sys.argv[1:]
        row = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        baseline = baseline or row["peak_gb"]
        print(f"| {dtype} | {row['frozen_gb']:.2f} GB | {row['peak_gb']:.2f} GB | {row['peak_gb'] / baseline:.2f}x | "
              f"{row['s_per_step']:.1f} | {row['mapper_dtype']} / {row['loss_dtype']} |", flush=True)


if __name__ == "__main__":
    main()
