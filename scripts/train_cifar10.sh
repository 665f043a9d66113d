#!/usr/bin/env bash
# Train the three shipped CIFAR-10 checkpoints, one after the other, on this machine.
# Each is resumable: re-run this script after an interruption and it continues.
# Usage: bash scripts/train_cifar10.sh [EPOCHS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-8}
DATA=${CIFAR10:-../shared/data/cifar10}
for pair in "vt_resnet20:cifar10-vt-recurrent" "vt_resnet20_filter:cifar10-vt-filter" "resnet20:cifar10-resnet"; do
  config=${pair%%:*}; name=${pair##*:}
  if [ -f "checkpoints/$name.json" ] && [ ! -f "checkpoints/$name.resume.pt" ]; then
    echo "checkpoints/$name exists; skipping"; continue
  fi
  .venv/bin/vt-explorer train --config "$config" --train "$DATA/train.tar.gz" \
    --val "$DATA/test.tar.gz" --out "checkpoints/$name" --epochs "$EPOCHS" --resume
done
