#!/usr/bin/env bash
# Distil ImageNet's 1000 classes from the Lite0 classifier into both VT students on a CPU
# (vt-explorer distill), resumable: re-running continues each run after its last
# evaluation. Usage: bash scripts/distill_cpu.sh [SAMPLES] [POOL]
#   SAMPLES  training views per student (default 2000000)
#   POOL     the imagenet-pool folder (default ../shared/data/imagenet-pool)
#   OUT      (environment) where the checkpoints go (default checkpoints)
#   DISTILL_ARGS (environment) more flags for vt-explorer distill (distill_gpu.sh sets them)
#   BF16     (environment) auto (default), --bf16, or empty for float32
#   INIT     (environment) a folder of finished students to start from (a further stage with
#            its own schedule: --init INIT/NAME), e.g. INIT=checkpoints OUT=/tmp/stage2
#   MIX      (environment) probability that a batch is MixUp/CutMix-mixed (default 0: at
#            300,000 views mixing cost 2-3 points of held-out agreement on Tiny-ImageNet and
#            Caltech-101, benchmarks/distill_ablation.py; 0.5 is Beyer et al.'s recipe)
# Trains on Imagenette-train, Tiny-ImageNet-train and Caltech-101 minus its held-out sample;
# never on the held-out samples (1000 fixed images each) of Imagenette-val, Tiny-ImageNet-val
# and Caltech-101 (unlabelled for ImageNet: agreement only). Caltech-101 is given both as data
# and as held-out, so distill splits it (its held-out sample never enters the bank).
# On a CPU with native bfloat16 (AVX-512 BF16 or AMX) the views are labelled and the student
# runs in bfloat16 (--bf16: ~40 min per student on the 2-core VM); elsewhere in float32
# (~1.6x longer). The card records which.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SAMPLES=${1:-2000000}
POOL=${2:-../shared/data/imagenet-pool}
OUT=${OUT:-checkpoints}
EVERY=$((SAMPLES / 8 > 1024 ? SAMPLES / 8 : 1024))
MIX=${MIX-0}
BF16=${BF16-auto}  # auto: --bf16 where this CPU has native bfloat16; "--bf16" or "" to choose
if [ "$BF16" = auto ]; then
  BF16=""
  if .venv/bin/python -c "import sys, torch; from vt_explorer.distill import bf16_supported as s
sys.exit(not s(torch.device('cpu')))"; then BF16="--bf16"; fi
fi
for student in vt_lite0_imagenet vt_lite0_imagenet_filter; do
  name=imagenet-lite0-vt-recurrent
  [ "$student" = vt_lite0_imagenet_filter ] && name=imagenet-lite0-vt-filter
  resume=""
  init=""
  [ -n "${INIT:-}" ] && init="--init $INIT/$name"
  [ -f "$OUT/$name.resume.pt" ] && resume="--resume"
  if [ -f "$OUT/$name.json" ] && [ -z "$resume" ]; then
    echo "[distill] $OUT/$name exists; delete it to train again"; continue
  fi
  # shellcheck disable=SC2086
  .venv/bin/python -m vt_explorer distill --student "$student" \
    --data "$POOL/imagenette-train.tar.gz" "$POOL/tiny-imagenet-train.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout "$POOL/imagenette-val.tar.gz" "$POOL/tiny-imagenet-val.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout-limit 1000 \
    --samples "$SAMPLES" --eval-every "$EVERY" --out "$OUT/$name" --mix "$MIX" $resume $init $BF16 ${DISTILL_ARGS:-}
done
