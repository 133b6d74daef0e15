#!/usr/bin/env bash
# The one prepared GPU check of issue 4, for a session lent a device machine:
#   run: bash benchmarks/gpu_check.sh   (after `make setup` there)
# Paper-size UNet3D with random weights, 24 frames 320x576, 25 steps with guidance 25, bf16,
# PyTorch SDPA: time and peak memory of AudioToVideoPipeline vs diffusers' TextToVideoSDPipeline,
# then one training step (cached vs uncached features). Record the output in RESULTS.md.
set -euo pipefail
python benchmarks/bench_pipeline.py --size paper --device cuda --dtype bfloat16 \
  --frames 24 --height 320 --width 576 --steps 25 --repeats 1
python benchmarks/bench_train_step.py --size paper --device cuda --frames 24 \
  --height 320 --width 576 --seconds 2 --steps 3
