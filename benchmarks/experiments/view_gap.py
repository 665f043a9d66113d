"""How well a distilled student matches the teacher on the maps it trained on, against the
maps it is evaluated on, for the same photos.

    python -m benchmarks.experiments.view_gap [CHECKPOINT ...] [--source imagenette-train.tar.gz]
        [--limit 1000] [--pool ../shared/data/imagenet-pool]
        # default: every checkpoints/imagenet-lite0-* student

``distill`` trains on crops of each photo's trunk map at ``bank_size`` (288 px: 18x18),
resampled to 14x14 by ``roi_align``; ``eval``, ``holdout_compare.py`` and the app give the
student the trunk's own map of the 224-px photo. For a fixed sample of a source's photos
(by default ones the students were trained on) this prints, per student, top-1 agreement
with the teacher and the KL divergence ``KL(p_teacher || p_student)`` on four views:

* the trunk's own 224-px map (what every evaluation measures);
* the whole 288-px map resized to 14x14 (the largest training view);
* the central 14x14 cells of the 288-px map (no resampling, a closer zoom);
* training views: random-resized crops of the 288-px map (area 8-100%, flips; seed 0).

and the mean per-channel variance of each kind of map. A student that agrees far better on
the resampled views than on the 224-px maps of the same photos is limited by that gap, not
by its fit to the training views (``distill --real-share`` puts the photos' own maps in each
batch). The features come from the trunk cache (computed on a first run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.ops import roi_align

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.distill import (
    held_out_sample,
    kd_loss,
    random_views,
    source_features,
    teacher_model,
)

ROOT = Path(__file__).resolve().parents[2]


@torch.no_grad()
def agreement_and_kl(student, teacher, x: torch.Tensor, bs: int = 250) -> tuple[float, float]:
    """Top-1 agreement of ``student.head`` with ``teacher.tail`` on maps ``x`` and their mean
    KL divergence (T = 1)."""
    student.eval()
    agree, kl = 0, 0.0
    for i in range(0, len(x), bs):
        s, t = student.head(x[i : i + bs]).logits, teacher.tail(x[i : i + bs])
        agree += int((s.argmax(1) == t.argmax(1)).sum())
        kl += float(kd_loss(s, t, 1.0)) * len(s)
    return agree / len(x), kl / len(x)


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
    p.add_argument("--source", default="imagenette-train.tar.gz", help="a source in --pool")
    p.add_argument("--limit", type=int, default=1000, help="photos (a fixed sample)")
    p.add_argument("--bank-size", type=int, default=288, help="the training bank's size (288)")
    p.add_argument(
        "--pool",
        type=Path,
        default=ROOT.parent / "shared/data/imagenet-pool",
        help="the imagenet-pool folder",
    )
    args = p.parse_args()
    if not args.checkpoints:
        p.error("no checkpoints given and none in checkpoints/")
    device = torch.device("cpu")
    teacher = teacher_model(device)
    first = load_checkpoint(args.checkpoints[0].with_suffix("")).model
    src = str(args.pool / args.source)
    size = first.cfg.input_size
    own = held_out_sample(
        source_features(first, src, size, device, False), args.limit
    ).features.float()
    bank = held_out_sample(
        source_features(first, src, args.bank_size, device, False), args.limit
    ).features
    n, side, big = len(bank), own.shape[-1], bank.shape[-1]
    whole = torch.stack([torch.arange(n).float(), *torch.zeros(2, n), *torch.full((2, n), big)], 1)
    lo = (big - side) // 2
    views = {
        f"trunk's own {size}-px map (evaluated)": own,
        f"whole {args.bank_size}-px map resized to {side}x{side}": roi_align(
            bank.float(), whole, side, 1.0, 2, True
        ),
        f"central {side}x{side} cells of the {args.bank_size}-px map": bank.float()[
            :, :, lo : lo + side, lo : lo + side
        ],
        "training views (crops 8-100%, flips)": random_views(
            bank, torch.arange(n), side, 0.08, torch.Generator().manual_seed(0)
        ),
    }
    print(f"{n} photos of {args.source}; agreement with the teacher / KL(teacher || student)\n")
    print("| checkpoint | " + " | ".join(views) + " |")
    print("|---|" + "---|" * len(views))
    print(
        "| (mean per-channel variance of the maps) | "
        + " | ".join(f"{float(v.var((0, 2, 3)).mean()):.1f}" for v in views.values())
        + " |"
    )
    for ck in args.checkpoints:
        student = load_checkpoint(ck.with_suffix("")).model
        cells = [agreement_and_kl(student, teacher, x) for x in views.values()]
        print(
            f"| {ck.with_suffix('')} | "
            + " | ".join(f"{a:.1%} / {kl:.3f}" for a, kl in cells)
            + " |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
