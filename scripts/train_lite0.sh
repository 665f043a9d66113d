#!/usr/bin/env bash
# Train VT-Lite0 on CIFAR-10 on a CPU (the shipped checkpoints/cifar10-lite0-vt-recurrent-cpu):
# the ImageNet EfficientNet-Lite0 trunk stays frozen, its features are computed once at
# SIZExSIZE (images decoded at 32x32 and enlarged in torch) and cached
# (~/.cache/vt_explorer/features); only the VT head trains on them. Resumable: re-run after
# an interruption and it continues.
# Usage: bash scripts/train_lite0.sh [EPOCHS] [SIZE] [CONFIG]   (default 10 128 vt_lite0)
#   CONFIG vt_lite0_filter trains the filter-tokenizer twin (cifar10-lite0-vt-filter-cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
SIZE=${2:-128}
CONFIG=${3:-vt_lite0}
DATA=${CIFAR10:-../shared/data/cifar10}
case "$CONFIG" in
  vt_lite0) name=cifar10-lite0-vt-recurrent-cpu ;;
  vt_lite0_filter) name=cifar10-lite0-vt-filter-cpu ;;
  *) echo "CONFIG must be vt_lite0 or vt_lite0_filter, not $CONFIG" >&2; exit 2 ;;
esac
if [ -f "checkpoints/$name.json" ] && [ ! -f "checkpoints/$name.resume.pt" ]; then
  echo "checkpoints/$name exists; delete it to train again"; exit 0
fi
.venv/bin/vt-explorer train --config "$CONFIG" --set "input_size=$SIZE" --decode-size 32 \
  --train "$DATA/train.tar.gz" --val "$DATA/test.tar.gz" --out "checkpoints/$name" \
  --epochs "$EPOCHS" --no-tta --resume
