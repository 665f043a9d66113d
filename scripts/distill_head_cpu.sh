#!/usr/bin/env bash
# Distil the app's default pair on a CPU: VT modules on Lite0's whole pretrained trunk run at
# output stride 16, in place of its global average pooling (configs vt_lite0_os16_pool and
# vt_lite0_os16_pool_filter; docs/head_vt.md), resumable: re-running continues each run
# after its last evaluation and skips a finished one.
# Usage: bash scripts/distill_head_cpu.sh [SAMPLES] [POOL]
#   SAMPLES  training views per student (default 100000)
#   POOL     the imagenet-pool folder (default ../shared/data/imagenet-pool)
#   OUT      (environment) where the checkpoints go (default checkpoints)
#   CUT      (environment) the placement: pool (default), head_conv or block15
#   BF16     (environment) auto (default: --bf16 where the CPU has native bfloat16), --bf16,
#            or empty for float32
# Trains on Imagenette-train, Tiny-ImageNet-train and Caltech-101 minus its held-out sample;
# never on the held-out samples (1000 fixed images each) of Imagenette-val, Tiny-ImageNet-val
# and Caltech-101. The trunk maps are computed once (14x14 at 224 px, cached); half of each
# batch is a photo's own map, half random-resized crops of it. Times: docs/head_vt.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMPLES=${1:-100000}
POOL=${2:-../shared/data/imagenet-pool}
OUT=${OUT:-checkpoints}
CUT=${CUT:-pool}
BF16=${BF16-auto}
if [ "$BF16" = auto ]; then
  BF16=""
  if .venv/bin/python -c "import sys, torch; from vt_explorer.device import bf16_supported as s
sys.exit(not s(torch.device('cpu')))"; then BF16="--bf16"; fi
fi
for variant in recurrent filter; do
  student=vt_lite0_os16_$CUT
  [ "$variant" = filter ] && student=${student}_filter
  name=imagenet-lite0-$CUT-vt-$variant
  resume=""
  [ -f "$OUT/$name.resume.pt" ] && resume="--resume"
  if [ -z "$resume" ] && [ -f "$OUT/$name.json" ]; then
    echo "[distill] $OUT/$name exists; delete it to train again"; continue
  fi
  # shellcheck disable=SC2086
  .venv/bin/python -m vt_explorer distill --student "$student" \
    --data "$POOL/imagenette-train.tar.gz" "$POOL/tiny-imagenet-train.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout "$POOL/imagenette-val.tar.gz" "$POOL/tiny-imagenet-val.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout-limit 1000 --samples "$SAMPLES" --eval-every 25000 --bank-size 224 \
    --real-share 0.5 --mix 0 --out "$OUT/$name" $resume $BF16
done
