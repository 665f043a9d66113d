#!/usr/bin/env bash
# Both ImageNet students on one CUDA GPU (H100/H200), the same recipe as distill_cpu.sh at
# GPU scale: bigger batches, millions of fresh feature-space views, more frequent held-out
# points. Resumable. Usage: bash scripts/distill_gpu.sh [SAMPLES] [POOL]
#   SAMPLES  training views per student (default 4000000: about 4 minutes each on an H100,
#            estimated from the CPU's per-sample cost; not yet measured on a GPU)
#   POOL     the imagenet-pool folder (default ../shared/data/imagenet-pool)
# DEVICE=cpu SAMPLES=2048 bash scripts/distill_gpu.sh runs the same script as a smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMPLES=${1:-${SAMPLES:-4000000}}
POOL=${2:-../shared/data/imagenet-pool}
OUT=${OUT:-checkpoints}
DEVICE=${DEVICE:-cuda}
for student in vt_lite0_imagenet vt_lite0_imagenet_filter; do
  name=imagenet-lite0-vt-recurrent
  [ "$student" = vt_lite0_imagenet_filter ] && name=imagenet-lite0-vt-filter
  resume=""
  [ -f "$OUT/$name.resume.pt" ] && resume="--resume"
  .venv/bin/python -m vt_explorer distill --student "$student" --device "$DEVICE" \
    --data "$POOL/imagenette-train.tar.gz" "$POOL/tiny-imagenet-train.tar.gz" \
    --holdout "$POOL/imagenette-val.tar.gz" "$POOL/tiny-imagenet-val.tar.gz" "$POOL/caltech101.tar.gz" \
    --samples "$SAMPLES" --batch-size 1024 --lr 3e-3 --eval-every $((SAMPLES / 8 > 1024 ? SAMPLES / 8 : 1024)) \
    --out "$OUT/$name" $resume
done
