#!/usr/bin/env bash
# Train the shipped VT-Lite0 checkpoints (ImageNet EfficientNet-Lite0 trunk, frozen, + VT
# head) on CIFAR-10 at 224x224, one after the other. The trunk's features are computed once
# and cached (~/.cache/vt_explorer/features); only the VT head trains. Resumable: re-run
# after an interruption and it continues.
# Usage: bash scripts/train_lite0.sh [EPOCHS]   (default 15)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-15}
DATA=${CIFAR10:-../shared/data/cifar10}
for pair in "vt_lite0:cifar10-lite0-vt-recurrent" "vt_lite0_filter:cifar10-lite0-vt-filter"; do
  config=${pair%%:*}; name=${pair##*:}
  if [ -f "checkpoints/$name.json" ] && [ ! -f "checkpoints/$name.resume.pt" ]; then
    echo "checkpoints/$name exists; skipping"; continue
  fi
  .venv/bin/vt-explorer train --config "$config" --train "$DATA/train.tar.gz" \
    --val "$DATA/test.tar.gz" --out "checkpoints/$name" --epochs "$EPOCHS" \
    --no-tta --resume
done
