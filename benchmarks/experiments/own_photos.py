"""The README's "train a VT on your own photos" walk-through, timed: build a small
ImageFolder dataset from three CIFAR-10 classes, train VT-Lite0's head with one command,
evaluate it, and print the times.

    python -m benchmarks.experiments.own_photos [--classes cat dog ship] [--train-per-class 300]
        [--val-per-class 100] [--out /tmp/own-photos] [--input-size 224]

The dataset is written as JPEG files under OUT/data/{train,val}/<class>/ (nothing is kept in
the repository); the checkpoint goes to OUT/my-vt (open it in the app's sidebar).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "cifar10"


def extract(archive: Path, dest: Path, classes: list[str], per_class: int, skip: int = 0) -> None:
    """Copy ``per_class`` images of each class (after skipping ``skip``) into dest/<class>/."""
    counts = dict.fromkeys(classes, 0)
    with tarfile.open(archive) as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
            cls = Path(m.name).parent.name
            if cls not in counts or counts[cls] >= per_class + skip:
                continue
            counts[cls] += 1
            if counts[cls] <= skip:
                continue
            (dest / cls).mkdir(parents=True, exist_ok=True)
            f = tar.extractfile(m)
            assert f is not None
            (dest / cls / Path(m.name).name).write_bytes(f.read())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", nargs="+", default=["cat", "dog", "ship"])
    p.add_argument("--train-per-class", type=int, default=300)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="/tmp/own-photos")
    p.add_argument(
        "--input-size",
        type=int,
        default=224,
        help="VT-Lite0's input size (224; 128: a third of the multiply-adds, via --set input_size)",
    )
    args = p.parse_args()
    out = Path(args.out)
    train, val = out / "data" / "train", out / "data" / "val"
    if not train.is_dir():
        extract(DATA / "train.tar.gz", train, args.classes, args.train_per_class)
        extract(DATA / "test.tar.gz", val, args.classes, args.val_per_class)
    exe = str(Path(sys.executable).with_name("vt-explorer"))
    cmd = [
        exe,
        "train",
        "--config",
        "vt_lite0",
        "--train",
        str(train),
        "--val",
        str(val),
        "--out",
        str(out / "my-vt"),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--no-tta",
    ]
    if args.input_size != 224:
        cmd += ["--set", f"input_size={args.input_size}"]
    print("$", " ".join(cmd[1:]).replace(exe, "vt-explorer"))
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"train (features + head + final evaluation): {time.perf_counter() - t:.0f} s")
    card = json.loads((out / "my-vt.json").read_text())
    print(f"top-1 on {card['metrics']['n']} val images: {card['metrics']['accuracy']:.4f}")
    print(f"hardware: {card['hardware']}")


if __name__ == "__main__":
    main()
