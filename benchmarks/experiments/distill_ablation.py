"""Each ingredient of the distillation recipe, measured on the held-out learning curve.

    python -m benchmarks.experiments.distill_ablation [--samples 50000] [--student vt_lite0_imagenet_filter]
        [--pool ../shared/data/imagenet-pool] [--holdout-limit 1000] [--out /tmp/distill-ablation]

Runs `vt-explorer distill` once per variant, from the same seed and feature bank, and prints
held-out top-1 agreement with the teacher (Imagenette-val, Tiny-ImageNet-val, Caltech-101)
after ``--samples`` training views:

* full recipe: random-resized crops down to 8% of the map, flips, MixUp/CutMix on half the
  batches (``--min-scale 0.08 --mix 0.5``);
* no mixing (``--mix 0``);
* no crops: each view is the whole map, flipped at random (``--min-scale 1``);
* neither: whole maps, no mixing (the "one view per photo" baseline of the issue);
* full recipe + the token-diversity term (``--diversity-weight 1``);
* full recipe + classifier reuse (``--reuse-classifier``: SimKD, the teacher's classifier);
* full recipe + feature matching (``--reuse-classifier --feature-weight 10``: the projected
  feature matches the teacher's pooled 1280-d feature, MSE, beside the KL term);
* feature matching alone (``--kd-weight 0``: SimKD's own loss);
* full recipe + Caltech-101 in the pool: Caltech-101 minus its held-out sample (the source is
  given both as data and as held-out, so ``distill`` splits it); the Caltech column then
  measures photos of categories the pool has seen, the other two columns are unchanged;
* that + feature matching;
* that with twice the token width (``--set token_dim=512``; the paper's ImageNet VTs use
  1024): is the student's capacity the limit?
* that in bfloat16 (``--bf16``: the teacher labels and the student's forward pass in
  bfloat16 autocast), with batches of 64 (twice the optimiser steps for the same views), and
  both: what the faster arithmetic costs, and whether more steps per view help a student
  that does not yet fit the teacher on its own training photos.

Run with ``--samples 300000`` (a student that underfits: is it held back by capacity, step
size or its regularisers?), each beside the bfloat16 row:

* bfloat16 at twice the token width, and at twice the peak learning rate;
* bfloat16 without weight decay, and without mixing (``--mix 0``);
* unmixed with crops only down to 25% of the map;
* unmixed in batches of 512 at lr 3e-3 (towards ``scripts/distill_gpu.sh``'s 1024 and 3e-3:
  do 4x fewer, larger steps learn as much per view?);
* unmixed at twice the token width (once mixing no longer holds the student back, is
  capacity the limit?);
* unmixed with the token-diversity term as a hinge (``--diversity-weight 1
  --diversity-margin 0.3`` or ``0.4``): only each image's map similarity above the margin is
  penalised. Run these with ``--student vt_lite0_imagenet`` (the recurrent student, whose
  maps are too alike), beside its own unmixed row.
* unmixed with half of each batch the photos' own 224-px maps from the first step
  (``--real-share 0.5``), beside the unmixed row: the finishing stage's ingredient, from
  scratch;
* that with a quarter of each batch whole-cell 14x14 windows of the 288-px maps
  (``--window-share 0.25``: crops of a 224-px square, not resampled), and with a quarter
  real maps and half windows: do unresampled crops close the gap further?
* that with a quarter of each batch nudged towards random classes by the teacher's gradient
  (``--nudge-share 0.25``: two signed steps of 0.05 std): do views that show the teacher's
  answers for classes the pool lacks help on held-out photos?
* that with the other half fresh random-resized crops of the photos in image space, each
  through the trunk (``--image-share 0.5``), instead of crops of the bank maps: no
  feature-space views at all. Is the view gap of resampled maps what holds the crops back?

Pool-val accuracy is not reported on purpose: it measures the pool, not the teacher.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vt_explorer.distill import DistillArgs, distill

ROOT = Path(__file__).resolve().parents[2]

# the bases the later rows share: Caltech-101 (minus its held-out sample) in the pool, then
# bfloat16, then unmixed
CALTECH = {"extra_data": ["caltech101.tar.gz"]}
BF16 = {**CALTECH, "bf16": True}
UNMIXED = {**BF16, "mix": 0.0}
VARIANTS = {
    "full recipe": {},
    "no mixing": {"mix": 0.0},
    "no crops": {"min_scale": 1.0},
    "neither": {"mix": 0.0, "min_scale": 1.0},
    "full + diversity term": {"diversity_weight": 1.0},
    "full + classifier reuse": {"reuse_classifier": True},
    "full + feature matching": {"reuse_classifier": True, "feature_weight": 10.0},
    "feature matching alone": {"reuse_classifier": True, "feature_weight": 10.0, "kd_weight": 0.0},
    "full + Caltech in the pool": CALTECH,
    "full + Caltech + feature matching": {
        **CALTECH,
        "reuse_classifier": True,
        "feature_weight": 10.0,
    },
    "full + Caltech, token_dim 512": {**CALTECH, "overrides": {"token_dim": 512}},
    "full + Caltech, bf16": BF16,
    "full + Caltech, batch 64": {**CALTECH, "batch_size": 64},
    "full + Caltech, bf16, batch 64": {**BF16, "batch_size": 64},
    "full + Caltech, bf16, token_dim 512": {**BF16, "overrides": {"token_dim": 512}},
    "full + Caltech, bf16, lr 4e-3": {**BF16, "lr": 4e-3},
    "full + Caltech, bf16, no mixing": UNMIXED,
    "full + Caltech, bf16, no weight decay": {**BF16, "weight_decay": 0.0},
    "full + Caltech, bf16, no mixing, crops to 25%": {**UNMIXED, "min_scale": 0.25},
    "full + Caltech, bf16, no mixing, batch 512, lr 3e-3": {
        **UNMIXED,
        "batch_size": 512,
        "lr": 3e-3,
    },
    "full + Caltech, bf16, no mixing, token_dim 512": {**UNMIXED, "overrides": {"token_dim": 512}},
    "full + Caltech, bf16, no mixing, diversity hinge 0.3": {
        **UNMIXED,
        "diversity_weight": 1.0,
        "diversity_margin": 0.3,
    },
    "full + Caltech, bf16, no mixing, diversity hinge 0.4": {
        **UNMIXED,
        "diversity_weight": 1.0,
        "diversity_margin": 0.4,
    },
    "full + Caltech, bf16, no mixing, real share 0.5": {**UNMIXED, "real_share": 0.5},
    "full + Caltech, bf16, no mixing, real share 0.5, windows 0.25": {
        **UNMIXED,
        "real_share": 0.5,
        "window_share": 0.25,
    },
    "full + Caltech, bf16, no mixing, real share 0.25, windows 0.5": {
        **UNMIXED,
        "real_share": 0.25,
        "window_share": 0.5,
    },
    "full + Caltech, bf16, no mixing, real share 0.5, nudged 0.25": {
        **UNMIXED,
        "real_share": 0.5,
        "nudge_share": 0.25,
    },
    "full + Caltech, bf16, no mixing, real share 0.5, image crops 0.5": {
        **UNMIXED,
        "real_share": 0.5,
        "image_share": 0.5,
    },
}
HOLDOUT = ["imagenette-val.tar.gz", "tiny-imagenet-val.tar.gz", "caltech101.tar.gz"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=50_000, help="training views per variant")
    p.add_argument("--student", default="vt_lite0_imagenet_filter", help="student config")
    p.add_argument(
        "--pool",
        type=Path,
        default=ROOT.parent / "shared/data/imagenet-pool",
        help="the imagenet-pool folder",
    )
    p.add_argument("--holdout-limit", type=int, default=1000, help="images per held-out source")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("/tmp/distill-ablation"),
        help="where the variants' checkpoints go",
    )
    p.add_argument("--only", nargs="*", default=None, help="run only these variants")
    args = p.parse_args()
    rows = []
    for name, change in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        change = dict(change)
        extra = change.pop("extra_data", [])
        run = DistillArgs(
            data=[
                str(args.pool / d)
                for d in ["imagenette-train.tar.gz", "tiny-imagenet-train.tar.gz", *extra]
            ],
            holdout=[str(args.pool / h) for h in HOLDOUT],
            holdout_limit=args.holdout_limit,
            out=str(args.out / name.replace(" ", "-").replace("+", "plus")),
            student=args.student,
            samples=args.samples,
            eval_every=args.samples,
            **change,
        )
        card = distill(run, progress=True)
        last = card["learning_curve"][-1]
        rows.append((name, [last[h]["agreement"] for h in HOLDOUT], card["train_seconds"]))
        print(f"{name}: {rows[-1][1]}", flush=True)
    print(f"\n{args.student}, {args.samples} views, held-out agreement with the teacher")
    print("| variant | Imagenette-val | Tiny-ImageNet-val | Caltech-101 | seconds |")
    print("|---|---|---|---|---|")
    for name, agree, seconds in rows:
        print(f"| {name} | " + " | ".join(f"{a:.1%}" for a in agree) + f" | {seconds:.0f} |")


if __name__ == "__main__":
    main()
