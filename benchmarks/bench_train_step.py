"""Training step time with cached frozen features vs encoding audio and frames every step.

    .venv/bin/python benchmarks/bench_train_step.py [--size tiny|paper] [--frames 8] [--height 32]
        [--width 32] [--steps 4]

Same config, same process, same batch: the cached run reads audio embeddings and VAE latents
from the on-disk cache (filled beforehand); the uncached run recomputes them each step, as a
loop without a cache would. ``--size paper`` uses zeroscope's architecture and the official
CAVP width with random weights (at a reduced resolution so it runs on a CPU).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from avlib.audio import build_audio_encoder
from avlib.config import load_config
from avlib.data.synthetic import synth_clip
from avlib.mapper import build_mapper
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.pipeline.t2v import T2VComponents
from avlib.pipeline.tiny import random_t2v_components
from avlib.train import FrozenFeatures, checkpoint_unet_blocks, denoising_loss


def step_seconds(features: FrozenFeatures, clip: dict, mapper, pipeline, schedule, optimizer, steps: int) -> float:
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        audio, latents = features(clip)
        audio, latents = audio[None].to(mapper.fc1.weight.device), latents[None].to(mapper.fc1.weight.device)
        noise = torch.randn(latents.shape, generator=generator).to(latents.device)
        timesteps = torch.randint(0, 1000, (1,), generator=generator).to(latents.device)
        loss, _, _ = denoising_loss(pipeline, mapper, schedule, audio, latents, noise, timesteps, None, 0.01)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if latents.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "paper"], default="tiny")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    overrides = {"mapper.num_frames": args.frames}
    if args.size == "paper":
        overrides.update({"encoder.width": None, "mapper.token_dim": 1024, "mapper.hidden_dim": 1024,
                          "mapper.attention_heads": 8})
    config = load_config("dog", "tiny", overrides)
    parts = random_t2v_components(args.size)
    for name in ("unet", "vae", "text_encoder"):
        parts[name].eval().requires_grad_(False).to(args.device)
    # the pipeline installs the per-frame conditioning; training conditions through it
    pipeline = AudioToVideoPipeline.from_t2v(T2VComponents(**parts, source=f"random-{args.size}"))
    checkpoint_unet_blocks(pipeline.unet)
    encoder = build_audio_encoder(config.encoder).eval().to(args.device)
    mapper = build_mapper(config.mapper, in_dim=encoder.output_dim).to(args.device)
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=1e-5)
    schedule = DDPMScheduler.from_config(pipeline.scheduler.config)

    synth = synth_clip("dog", 0, seconds=args.seconds, fps=args.frames / args.seconds, size=args.height)
    frames = torch.from_numpy(synth.frames).permute(0, 3, 1, 2).float() / 127.5 - 1
    frames = torch.nn.functional.interpolate(frames, size=(args.height, args.width))
    clip = {"frames": frames, "waveform": torch.from_numpy(synth.wave), "clip_id": "bench"}
    with tempfile.TemporaryDirectory() as root:
        cached = FrozenFeatures(config, pipeline, encoder, Path(root))
        cached(clip)  # fill the cache, as the first epoch does
        uncached = FrozenFeatures(config, pipeline, encoder, None)
        step_seconds(uncached, clip, mapper, pipeline, schedule, optimizer, 1)  # warm-up
        slow = step_seconds(uncached, clip, mapper, pipeline, schedule, optimizer, args.steps)
        fast = step_seconds(cached, clip, mapper, pipeline, schedule, optimizer, args.steps)
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"size {args.size}, {args.frames} frames {args.height}x{args.width}, {args.seconds:g} s audio, "
          f"median of {args.steps} steps")
    print(f"encode every step: {slow:.3f} s/step; cached features: {fast:.3f} s/step; "
          f"ratio cached/uncached {fast / slow:.2f}x")


if __name__ == "__main__":
    main()
