"""Distilled students side by side on the same held-out samples.

    python -m benchmarks.experiments.holdout_compare [CHECKPOINT ...] [--limit 1000]
        [--pool ../shared/data/imagenet-pool] [--sources FILE ...]
        # default: every checkpoints/imagenet-lite0-* student

Cards written with different ``--holdout-limit`` values measured different samples; this
re-measures every checkpoint on one fixed sample per source (``data.fixed_sample``, the
sample ``distill --holdout-limit LIMIT`` holds out): top-1 agreement with the teacher and,
for wnid-labelled sources, top-1 of student and teacher. Features come from the trunk cache
(the first run computes them). A student whose card lists a source in its pool has seen
that source's categories (its held-out sample never entered the bank): marked "seen".

``--sources`` may name a training source too (``imagenette-train.tar.gz``): the same
measure on photos the student was trained on (a fixed sample of their centre views), marked
"trained on". Agreement there against agreement on held-out photos separates a student that
does not fit the teacher at all from one that fits the pool but does not generalise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.distill import holdout_metrics, holdout_sets, teacher_model

ROOT = Path(__file__).resolve().parents[2]

SOURCES = ["imagenette-val.tar.gz", "tiny-imagenet-val.tar.gz", "caltech101.tar.gz"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "checkpoints",
        nargs="*",
        type=Path,
        default=sorted(
            p for p in (ROOT / "checkpoints").glob("imagenet-lite0-*") if p.suffix == ".safetensors"
        ),
    )
    p.add_argument("--limit", type=int, default=1000, help="held-out images per source")
    p.add_argument(
        "--pool",
        type=Path,
        default=ROOT.parent / "shared/data/imagenet-pool",
        help="the imagenet-pool folder",
    )
    p.add_argument(
        "--sources",
        nargs="+",
        default=SOURCES,
        metavar="FILE",
        help="sources in --pool to measure (default: the three held-out ones)",
    )
    args = p.parse_args()
    device = torch.device("cpu")
    teacher = teacher_model(device)
    print(f"| checkpoint | {' | '.join(args.sources)} |")
    print("|---|" + "---|" * len(args.sources))
    sets = None
    for ck_path in args.checkpoints:
        ck = load_checkpoint(ck_path.with_suffix(""))
        wnids = ck.card["wnids"]
        if sets is None:  # one trunk for all: the students share the teacher's frozen trunk
            srcs = [str(args.pool / s) for s in args.sources]
            sets = holdout_sets(ck.model, srcs, args.limit, wnids, device, progress=False)
        pool = {Path(d["source"]).name for d in ck.card["dataset"]["pool"]}
        held = {Path(d["source"]).name for d in ck.card["dataset"]["holdout"]}
        cells = []
        for src, fs, labels in sets:
            m = holdout_metrics(ck.model, teacher, fs, labels, device)
            cell = f"{m['agreement']:.1%}"
            if m["top1"] is not None:
                cell += f" / top-1 {m['top1']:.1%} (teacher {m['teacher_top1']:.1%})"
            if Path(src).name in pool:
                cell += " (seen)" if Path(src).name in held else " (trained on)"
            cells.append(cell)
        print(f"| {ck_path.with_suffix('')} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nagreement with the teacher on fixed samples of {args.limit} images per source")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
