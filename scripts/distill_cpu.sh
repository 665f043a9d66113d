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
#            Caltech-101, benchmarks/experiments/distill_ablation.py; 0.5 is Beyer et al.'s recipe)
#   FINISH   (environment) views of a finishing stage (default 300000; 0: none): from each
#            finished student (kept in OUT/main/), at lr 5e-4, with half of each batch the
#            photos' own 224-px trunk maps (--real-share 0.5) instead of resampled crops,
#            which the students are evaluated on (benchmarks/experiments/view_gap.py): +7 to +9 points
#            of held-out agreement in ~7 min per student on the 2-core VM (README)
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
MIX=${MIX-0}
BF16=${BF16-auto}  # auto: --bf16 where this CPU has native bfloat16; "--bf16" or "" to choose
if [ "$BF16" = auto ]; then
  BF16=""
  if .venv/bin/python -c "import sys, torch; from vt_explorer.device import bf16_supported as s
sys.exit(not s(torch.device('cpu')))"; then BF16="--bf16"; fi
fi
FINISH=${FINISH-300000}
# stage OUT_DIR INIT_DIR SAMPLES EXTRA_FLAGS: both students, each skipped when finished (or
# when the last stage's checkpoint in OUT is)
stage() {
  local out=$1 from=$2 samples=$3 extra=$4 every=$(($3 / 8 > 1024 ? $3 / 8 : 1024))
  for student in vt_lite0_imagenet vt_lite0_imagenet_filter; do
    name=imagenet-lite0-vt-recurrent
    [ "$student" = vt_lite0_imagenet_filter ] && name=imagenet-lite0-vt-filter
    resume=""
    init=""
    [ -n "$from" ] && init="--init $from/$name"
    [ -f "$out/$name.resume.pt" ] && resume="--resume"
    if [ -z "$resume" ] && { [ -f "$out/$name.json" ] ||
      { [ -f "$OUT/$name.json" ] && [ ! -f "$OUT/$name.resume.pt" ]; }; }; then
      echo "[distill] $out/$name or $OUT/$name exists; delete it to train again"; continue
    fi
    # shellcheck disable=SC2086
    .venv/bin/python -m vt_explorer distill --student "$student" \
      --data "$POOL/imagenette-train.tar.gz" "$POOL/tiny-imagenet-train.tar.gz" "$POOL/caltech101.tar.gz" \
      --holdout "$POOL/imagenette-val.tar.gz" "$POOL/tiny-imagenet-val.tar.gz" "$POOL/caltech101.tar.gz" \
      --holdout-limit 1000 \
      --samples "$samples" --eval-every "$every" --out "$out/$name" --mix "$MIX" $resume $init $BF16 $extra
  done
}
if [ "$FINISH" -gt 0 ]; then
  stage "$OUT/main" "${INIT:-}" "$SAMPLES" "${DISTILL_ARGS:-}"
  stage "$OUT" "$OUT/main" "$FINISH" "${DISTILL_ARGS:-} --lr 5e-4 --real-share 0.5"
else
  stage "$OUT" "${INIT:-}" "$SAMPLES" "${DISTILL_ARGS:-}"
fi
