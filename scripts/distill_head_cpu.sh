#!/usr/bin/env bash
# Distil the app's default pair on a CPU: VT modules on Lite0's whole pretrained trunk run at
# output stride 16, in place of its global average pooling (configs vt_lite0_os16_pool and
# vt_lite0_os16_pool_filter; docs/head_vt.md), two runs per student: SAMPLES views of
# function matching (imagenet-lite0-CUT-vt-VARIANT, the students without diversity terms),
# and the app's default pair, imagenet-lite0-CUT-vt-VARIANT-diverse, trained with the
# token-diversity hinge (--diversity-weight 1 --diversity-margin 0.3) held to Lite0's own
# average-pooled feature (--feature-weight 10): the filter student as a second stage of
# DIVERSE_SAMPLES views from its first stage (lr 1e-3), the recurrent one from the start
# (RECURRENT_SAMPLES views; its recurrent module keeps distinct groups only when the maps never settle
# near uniform first: docs/head_vt.md). Resumable: re-running
# continues each run after its last evaluation and skips a finished one.
# Usage: bash scripts/distill_head_cpu.sh [SAMPLES] [POOL]
#   SAMPLES  training views per student (default 100000)
#   POOL     the imagenet-pool folder (default ../shared/data/imagenet-pool)
#   OUT      (environment) where the checkpoints go (default checkpoints)
#   CUT      (environment) the placement: pool (default), head_conv or block15
#   DIVERSE_SAMPLES (environment) views of the filter student's second stage (default 40000;
#            0 skips it)
#   RECURRENT_SAMPLES (environment) views of the diverse recurrent student, trained from the
#            start (default 200000)
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
DIVERSE_SAMPLES=${DIVERSE_SAMPLES:-40000}
RECURRENT_SAMPLES=${RECURRENT_SAMPLES:-200000}
BF16=${BF16-auto}
if [ "$BF16" = auto ]; then
  BF16=""
  if .venv/bin/python -c "import sys, torch; from vt_explorer.device import bf16_supported as s
sys.exit(not s(torch.device('cpu')))"; then BF16="--bf16"; fi
fi
run() {  # NAME, then distill's flags: resume or skip a finished run
  local name=$1; shift
  local resume=""
  [ -f "$OUT/$name.resume.pt" ] && resume="--resume"
  if [ -z "$resume" ] && [ -f "$OUT/$name.json" ]; then
    echo "[distill] $OUT/$name exists; delete it to train again"; return 0
  fi
  # shellcheck disable=SC2086
  .venv/bin/python -m vt_explorer distill \
    --data "$POOL/imagenette-train.tar.gz" "$POOL/tiny-imagenet-train.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout "$POOL/imagenette-val.tar.gz" "$POOL/tiny-imagenet-val.tar.gz" "$POOL/caltech101.tar.gz" \
    --holdout-limit 1000 --bank-size 224 --real-share 0.5 --mix 0 --out "$OUT/$name" \
    $resume $BF16 "$@"
}
# the feature term reads the token average Lite0's classifier takes: the pool cut only
FEATURE=""
[ "$CUT" = pool ] && FEATURE="--feature-weight 10"
for variant in recurrent filter; do
  student=vt_lite0_os16_$CUT
  [ "$variant" = filter ] && student=${student}_filter
  name=imagenet-lite0-$CUT-vt-$variant
  run "$name" --student "$student" --samples "$SAMPLES" --eval-every 25000
  if [ "$variant" = recurrent ]; then
    # shellcheck disable=SC2086
    run "$name-diverse" --student "$student" --samples "$RECURRENT_SAMPLES" --eval-every 50000 \
      --diversity-weight 1.0 --diversity-margin 0.3 $FEATURE
  elif [ "$DIVERSE_SAMPLES" -gt 0 ]; then
    # shellcheck disable=SC2086
    run "$name-diverse" --student "$student" --init "$OUT/$name" --samples "$DIVERSE_SAMPLES" \
      --eval-every 20000 --diversity-weight 1.0 --diversity-margin 0.3 $FEATURE --lr 1e-3
  fi
done
