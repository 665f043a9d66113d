"""How far ``distill --nudge-share`` moves the teacher: its probability of the random target
class, before and after the nudge, on held-out photos' own trunk maps.

    python -m benchmarks.experiments.nudge_calibration [--source caltech101.tar.gz] [--limit 256]
        [--pool ../shared/data/imagenet-pool]

For a fixed sample of a source's photos (the 224-px maps of the trunk cache, computed on a
first run) and a random target class per map (seed 0), prints for several (steps, size)
settings of :func:`vt_explorer.distill.nudge_views`: the teacher's mean probability of the
target, how often the target becomes its top-1, how often its top-1 changes at all, its mean
top probability, and the relative size of the change to the map. The default nudge
(``--nudge-steps 2 --nudge-size 0.05``) is one of the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vt_explorer.distill import (
    held_out_sample,
    label_views,
    nudge_views,
    source_features,
    teacher_model,
)
from vt_explorer.model import create_model

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = [(1, 0.05), (2, 0.05), (2, 0.1), (3, 0.1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="caltech101.tar.gz", help="a source in --pool")
    p.add_argument("--limit", type=int, default=256, help="maps (a fixed sample)")
    p.add_argument(
        "--pool",
        type=Path,
        default=ROOT.parent / "shared/data/imagenet-pool",
        help="the imagenet-pool folder",
    )
    args = p.parse_args()
    cpu = torch.device("cpu")
    student = create_model("vt_lite0_imagenet_filter")
    student.load_pretrained()  # the trunk whose maps the students read
    fs = source_features(student, str(args.pool / args.source), student.cfg.input_size, cpu, True)
    x = held_out_sample(fs, args.limit).features.float()
    teacher = teacher_model(cpu, fold=True)
    target = torch.randint(0, 1000, (len(x),), generator=torch.Generator().manual_seed(0))
    rows = torch.arange(len(x))
    _, before = label_views(teacher, x)
    p0 = before.softmax(-1)
    print(f"{len(x)} maps of {args.source}, a random target class each")
    print(
        "| nudge | p(target) | top-1 = target | top-1 changed | top probability | |change| / |map| |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| none | {p0[rows, target].mean():.4f} | {(before.argmax(-1) == target).float().mean():.1%}"
        f" | - | {p0.max(-1).values.mean():.3f} | - |"
    )
    for steps, size in SETTINGS:
        xn = nudge_views(teacher, x, target, steps, size)
        _, after = label_views(teacher, xn)
        p1 = after.softmax(-1)
        print(
            f"| {steps} x {size} std | {p1[rows, target].mean():.4f} "
            f"| {(after.argmax(-1) == target).float().mean():.1%} "
            f"| {(after.argmax(-1) != before.argmax(-1)).float().mean():.1%} "
            f"| {p1.max(-1).values.mean():.3f} | {(xn - x).norm() / x.norm():.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
