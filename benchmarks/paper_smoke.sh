#!/usr/bin/env bash
# make paper-smoke: the paper profile end to end on a CPU, with full-size random stand-ins in the
# official file layouts (benchmarks/paper_standins.py), at 64x64, 8 frames, 2 steps:
# train, sample, generate, evaluate, report for `dog` and `tempotokens_baseline`, trained in one
# working folder (with relative paths) and used from another. Not part of `make test`.
# Measured on a clean clone: 23 min 9 s and 10.0 GiB peak resident set on 2 cores under load 5.5-9
# (about 15 min idle); 4.8 GiB of disk for the stand-ins. Needs nothing beside the repository.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
STANDINS="${AVLIB_CACHE:-$HOME/.cache/avlib}/paper-standins"
WORK="$(mktemp -d -t avlib-paper-smoke.XXXXXX)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HF_HUB_OFFLINE=1
avlib() { "$PYTHON" -m avlib "$@"; }
start=$SECONDS

"$PYTHON" "$REPO/benchmarks/paper_standins.py" --out "$STANDINS"

# 64x64, 8 frames at 4 fps = the 2 s window, 2 training and 2 sampling steps, on the CPU.
SMALL=(--profile paper --set model.device=cpu --set data.dataset=synth --set data.synth_clips_per_class=6
       --set data.height=64 --set data.width=64 --set data.num_frames=8 --set data.fps=4
       --set mapper.num_frames=8 --set inference.height=64 --set inference.width=64
       --set inference.num_frames=8 --set inference.fps=4 --set inference.num_inference_steps=2
       --set model.pretrained=standins/zeroscope_v2_576w)

mkdir -p "$WORK/trained_here" "$WORK/used_here"
cd "$WORK/trained_here"
ln -s "$STANDINS" standins   # relative paths below: the run folders record them absolute
avlib train --experiment dog --out runs/dog "${SMALL[@]}" --set data.classes=[dog] \
  --set encoder.checkpoint=standins/cavp_epoch66.ckpt --set train.max_steps=2
avlib train --experiment tempotokens_baseline --out runs/tempotokens_baseline "${SMALL[@]}" \
  --set data.classes=[volleyball] \
  --set encoder.checkpoint=standins/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt \
  --set mapper.checkpoint=standins/learned_embeds.pth
echo "trained: $((SECONDS - start)) s"

cd "$WORK/used_here"
RUNS="$WORK/trained_here/runs"
avlib data synth --out clips --clips-per-class 1 --classes dog --size 64 --fps 4 --seconds 2
for run in dog tempotokens_baseline; do
  avlib sample --run "$RUNS/$run" --limit 2
  avlib generate --mapper "$RUNS/$run" --audio "$(ls clips/*.wav | head -1)" -o "$run.mp4"
  avlib evaluate --run "$RUNS/$run" --workers 1 --quiet \
    --i3d "$STANDINS/i3d_pretrained_400.pt" --clip-model "$STANDINS/clip-vit-base-patch32"
done
avlib report --runs "$RUNS/dog" "$RUNS/tempotokens_baseline" -o table.csv table.md
cat table.md
echo "paper-smoke passed in $((SECONDS - start)) s; outputs in $WORK"
