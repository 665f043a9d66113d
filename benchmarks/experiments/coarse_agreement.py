"""The app's CIFAR-10 pair against the ImageNet students, on one scale: CIFAR-10's ten words.

    python -m benchmarks.experiments.coarse_agreement [CHECKPOINT ...] [--limit 1000]
        [--pool ../shared/data/imagenet-pool] [--sources FILE ...]
        # default: cifar10-lite0-vt-{recurrent,filter} and imagenet-lite0-vt-{recurrent,filter}

A CIFAR-10 model names one of ten classes, so its agreement with the ImageNet teacher over
1000 classes is undefined. On CIFAR-10's scale it is defined (:mod:`vt_explorer.coarse`):
the teacher's answer for a held-out photo counts when it is one of the ImageNet classes a
CIFAR-10 class covers (any dog breed is "dog", a container ship is "ship"); a model agrees
when its own answer is the same CIFAR-10 word (an ImageNet model's answer through the same
sets; one outside every set is a disagreement). That is the CIFAR-10 model's own ground, and
the harder test for a 1000-class model, which can also go astray among the 900 classes no
CIFAR-10 word covers.

For each held-out source (the same fixed samples ``distill --holdout-limit`` holds out:
:func:`~vt_explorer.data.fixed_sample`): how many photos the teacher puts in a CIFAR-10
class, each model's agreement with it there ("coarse"), and its agreement on every photo of
the sample ("all": a 1000-class model's exact top-1 agreement, the issue's held-out measure;
a CIFAR-10 model credited wherever its word covers the teacher's answer, the most it can
get, since on the other photos no CIFAR-10 word can agree). Then the nine demo photos, scored on CIFAR-10's scale against
their file names, for every model and the teacher. Each model sees the photos as its card
says (the CIFAR-10 VT-Lite0 pair: the whole photo stretched to 224x224; the students and the
teacher: a 224 centre crop).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.coarse import coarse_labels
from vt_explorer.data import decode_image, fixed_sample, load_image_folder
from vt_explorer.distill import teacher_model
from vt_explorer.evaluate import predict
from vt_explorer.preprocess import Preprocess

ROOT = Path(__file__).resolve().parents[2]

SOURCES = ["imagenette-val.tar.gz", "tiny-imagenet-val.tar.gz", "caltech101.tar.gz"]
DEFAULT = [
    "cifar10-lite0-vt-recurrent",
    "cifar10-lite0-vt-filter",
    "imagenet-lite0-vt-recurrent",
    "imagenet-lite0-vt-filter",
]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


@functools.lru_cache(maxsize=4)
def sample(src: Path, size: int, resize: str, interpolation: str, limit: int) -> torch.Tensor:
    """The fixed sample of ``src`` as uint8 images, read once per preprocessing (the students
    and the teacher share one, the CIFAR-10 pair another)."""
    ds = load_image_folder(src, size, resize, progress=False, interpolation=interpolation)
    return ds.images[fixed_sample(len(ds), limit)]


def top1(model: torch.nn.Module, pre: Preprocess, src: Path, limit: int) -> torch.Tensor:
    """The model's top-1 class index on the fixed sample of ``src``, preprocessed as ``pre``."""
    images = sample(src, pre.input_size, pre.resize, pre.interpolation, limit)
    return predict(model, images, pre.mean, pre.std, torch.device("cpu")).argmax(1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "checkpoints", nargs="*", type=Path, default=[ROOT / "checkpoints" / n for n in DEFAULT]
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
    p.add_argument("--photos", type=Path, default=PHOTOS, help="the nine demo photos' folder")
    args = p.parse_args()
    torch.manual_seed(0)
    teacher = teacher_model(torch.device("cpu"))
    t_pre = Preprocess(224, teacher.cfg.mean, teacher.cfg.std, "center_crop", "bilinear")
    t_classes = list(teacher.cfg.classes)
    cks = [(c.name, load_checkpoint(c)) for c in args.checkpoints]

    head = "| model | " + " | ".join(f"{s}: all / coarse" for s in args.sources) + " |"
    rows: dict[str, list[str]] = {name: [] for name, _ in cks}
    counts = []
    for s in args.sources:
        src = args.pool / s
        t_pred = top1(teacher, t_pre, src, args.limit)
        t_coarse = coarse_labels(t_pred.tolist(), t_classes)
        keep = [i for i, c in enumerate(t_coarse) if c is not None]
        counts.append(f"{s}: {len(keep)} of {len(t_pred)}")
        for name, ck in cks:
            pred = top1(ck.model, ck.preprocess, src, args.limit)
            mine = coarse_labels(pred.tolist(), list(ck.classes))
            hits = sum(mine[i] == t_coarse[i] for i in keep)
            coarse = hits / max(1, len(keep))
            if len(ck.classes) == 1000:  # exact agreement on every photo of the sample
                every = float((pred == t_pred).float().mean())
            else:  # credited where its word covers the teacher's answer; elsewhere it cannot agree
                every = hits / len(t_pred)
            rows[name].append(f"{every:.1%} / {coarse:.1%}")
            print(f"{name} on {s}: all photos {every:.1%}, coarse {coarse:.1%}", flush=True)
    print("\nphotos the teacher puts in a CIFAR-10 class: " + "; ".join(counts))
    print(
        "agreement with the teacher on every photo of the sample (an ImageNet model: its exact "
        "class; a CIFAR-10 model: credited where its word covers the teacher's answer) / on "
        "the photos in a CIFAR-10 class, on CIFAR-10's scale\n"
    )
    print(head)
    print("|---|" + "---|" * len(args.sources))
    for name, cells in rows.items():
        print(f"| `{name}` | " + " | ".join(cells) + " |")

    photos = sorted(args.photos.glob("*.JPEG"))
    if photos:
        from photos import truth_of  # the nine photos' CIFAR-10 classes, by file name

        print(f"\nthe {len(photos)} demo photos on CIFAR-10's scale (truth from the file name)")
        models = [(n, ck.model, ck.preprocess, list(ck.classes)) for n, ck in cks]
        models.append(("efficientnet_lite0 (teacher)", teacher, t_pre, t_classes))
        for name, model, pre, classes in models:
            x = torch.stack([pre(decode_image(f.read_bytes(), f.name)) for f in photos])
            with torch.no_grad():
                pred = model.eval()(x).argmax(1).tolist()
            words = coarse_labels(pred, classes)
            right = [w == truth_of(f) for w, f in zip(words, photos, strict=True)]
            misses = [
                f"{truth_of(f)} -> {w or classes[i]}"
                for f, w, i, ok in zip(photos, words, pred, right, strict=True)
                if not ok
            ]
            print(
                f"{name}: {sum(right)}/{len(photos)}"
                + (f"  ({'; '.join(misses)})" if misses else "")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
