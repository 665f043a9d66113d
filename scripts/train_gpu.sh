#!/usr/bin/env bash
# Train the shipped CIFAR-10 checkpoints on one CUDA GPU, all at once (the small CIFAR-scale
# models leave most of a large GPU idle, so they share it with the two VT-Lite0 fine-tunes).
#
#   bash scripts/train_gpu.sh [DEADLINE_SECONDS]
#
# CIFAR-scale (32x32, from scratch; SMALL_EPOCHS, default 40, batch 256, lr 0.2):
#   cifar10-vt-recurrent         vt_resnet20 with recurrent_norm (LayerNorm on eq. 2's T_in)
#   cifar10-vt-recurrent-plain   vt_resnet20 exactly as eq. 2 (no norm; its tokens collapse)
#   cifar10-vt-filter            vt_resnet20_filter
#   cifar10-resnet               resnet20, the conv baseline
#   cifar10-vit-seed             vit_resnet_seed, the seed's ViTResNet design (fixed; AdamW
#                                lr 1e-3, weight decay 0.05: SGD at 0.2 suits no ViT)
# VT-Lite0 (224x224, ImageNet trunk fine-tuned with --finetune; LITE_EPOCHS, default 5,
# batch 256, lr 0.05, weight decay 1e-4):
#   cifar10-lite0-vt-recurrent, cifar10-lite0-vt-filter
#
# Every run is resumable (--resume): run the script again after an interruption and each
# continues from its last finished epoch. DEADLINE_SECONDS (default: none) stops every run
# that is still going when the script has run that long; re-run to finish them.
# Environment: CIFAR10 (folder with train.tar.gz and test.tar.gz, default
# ../shared/data/cifar10), VT_EXPLORER (command, default .venv/bin/vt-explorer), PYTHON
# (default .venv/bin/python), LOG_DIR (default logs), SMALL_EPOCHS, LITE_EPOCHS.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${CIFAR10:-../shared/data/cifar10}
VT=${VT_EXPLORER:-.venv/bin/vt-explorer}
PY=${PYTHON:-.venv/bin/python}
LOGS=${LOG_DIR:-logs}
SMALL_EPOCHS=${SMALL_EPOCHS:-40}
LITE_EPOCHS=${LITE_EPOCHS:-5}
DEADLINE=${1:-0}
mkdir -p "$LOGS" checkpoints
start=$SECONDS

left() {  # seconds before the deadline, as a timeout(1) duration (0 = no limit)
  if [ "$DEADLINE" -le 0 ]; then echo 0; return; fi
  local s=$((DEADLINE - (SECONDS - start)))
  echo $((s > 1 ? s : 1))
}

job() {  # NAME ARGS...: one resumable training run, logged to $LOGS/NAME.log
  local name=$1
  shift
  # shellcheck disable=SC2086
  timeout "$(left)" $VT train --train "$DATA/train.tar.gz" --val "$DATA/test.tar.gz" \
    --out "checkpoints/$name" --resume --threads 2 "$@" >"$LOGS/$name.log" 2>&1
  echo "$name: exit $? at $((SECONDS - start)) s"
}

small=(--epochs "$SMALL_EPOCHS" --batch-size 256 --lr 0.2)
job cifar10-vt-recurrent --config vt_resnet20 --set recurrent_norm=true "${small[@]}" &
job cifar10-vt-recurrent-plain --config vt_resnet20 "${small[@]}" &
job cifar10-vt-filter --config vt_resnet20_filter "${small[@]}" &
job cifar10-resnet --config resnet20 "${small[@]}" &
job cifar10-vit-seed --config vit_resnet_seed --epochs "$SMALL_EPOCHS" --batch-size 256 \
  --optimizer adamw --lr 1e-3 --weight-decay 0.05 &

# decode CIFAR-10 at 224x224 once (both fine-tunes then read the cache)
timeout "$(left)" "$PY" - "$DATA" <<'EOF' >"$LOGS/decode-224.log" 2>&1
import sys
from vt_explorer.data import load_image_folder
for split in ("train", "test"):
    ds = load_image_folder(f"{sys.argv[1]}/{split}.tar.gz", 224, "stretch", workers=16,
                           progress=False, interpolation="bilinear")
    print(split, tuple(ds.images.shape))
EOF
echo "decoded at 224: exit $? at $((SECONDS - start)) s"

lite=(--epochs "$LITE_EPOCHS" --batch-size 256 --lr 0.05 --weight-decay 1e-4 --finetune
  --workers 16 --no-tta)
job cifar10-lite0-vt-recurrent --config vt_lite0 "${lite[@]}" &
job cifar10-lite0-vt-filter --config vt_lite0_filter "${lite[@]}" &
wait
echo "all done at $((SECONDS - start)) s"
