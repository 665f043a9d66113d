#!/usr/bin/env bash
# Train the CIFAR-scale checkpoints (32x32, from scratch) on this machine's CPU, one after
# the other, with the shipped rows' configs (the shipped ones came from
# scripts/train_gpu.sh: 40 epochs, batch 256, lr 0.2 on one GPU). On two CPU cores one
# epoch takes 3-4 minutes per model, so the default is 8 epochs (about 30 minutes each).
# Each is resumable: re-run this script after an interruption and it continues; an
# existing finished checkpoint is skipped.
# Usage: bash scripts/train_cifar10.sh [EPOCHS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-8}
DATA=${CIFAR10:-../shared/data/cifar10}
run() {  # NAME ARGS...
  local name=$1
  shift
  if [ -f "checkpoints/$name.json" ] && [ ! -f "checkpoints/$name.resume.pt" ]; then
    echo "checkpoints/$name exists; skipping"
    return
  fi
  .venv/bin/vt-explorer train --train "$DATA/train.tar.gz" --val "$DATA/test.tar.gz" \
    --out "checkpoints/$name" --epochs "$EPOCHS" --resume "$@"
}
run cifar10-vt-recurrent --config vt_resnet20 --set recurrent_norm=true
run cifar10-vt-recurrent-plain --config vt_resnet20
run cifar10-vt-filter --config vt_resnet20_filter
run cifar10-resnet --config resnet20
run cifar10-vit-seed --config vit_resnet_seed --optimizer adamw --lr 1e-3 --weight-decay 0.05
