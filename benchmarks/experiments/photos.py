"""How many of the nine real photos in ../shared/data/photos each checkpoint gets right.

    python -m benchmarks.experiments.photos [CHECKPOINT ...]    # default: every checkpoint in checkpoints/

The photos are ImageNet-style pictures (300-600 px) of nine CIFAR-10 classes (no horse);
their class comes from the file name. Prints one row per checkpoint: correct / 9, and the
predicted class of each photo. A 1000-class ImageNet checkpoint (its card lists ``wnids``)
is scored on the exact ImageNet class (the synset id the file name starts with), and on
that class being among its top 5;
``--teacher`` adds the EfficientNet-Lite0 classifier the ImageNet students learned from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.data import decode_image
from vt_explorer.explore import list_checkpoints

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
TRUTH = {
    "goldfinch": "bird",
    "tree_frog": "frog",
    "golden_retriever": "dog",
    "tabby": "cat",
    "impala": "deer",
    "airliner": "airplane",
    "container_ship": "ship",
    "fire_engine": "truck",
    "sports_car": "automobile",
}


def truth_of(path: Path) -> str:
    """CIFAR-10 class of a photo from its file name (n01531178_goldfinch.JPEG -> bird)."""
    return TRUTH[path.stem.split("_", 1)[1]]


def score(name: str, model, pre, classes: list[str], wnids: list[str] | None, photos) -> None:
    """Print one row: how many photos the model names right (for an ImageNet model also how
    many have the right class among its top 5), and each prediction."""
    right, top5, preds = 0, 0, []
    for p in photos:
        x = pre(decode_image(p.read_bytes(), p.name))[None]
        with torch.no_grad():
            best = model(x)[0].topk(5).indices.tolist()
        i = best[0]
        # an ImageNet model must name the exact synset of the file name
        want = classes[wnids.index(p.stem.split("_", 1)[0])] if wnids else truth_of(p)
        ok = classes[i] == want
        right += ok
        top5 += want in [classes[j] for j in best]
        preds.append(f"{want}->{classes[i]}{'' if ok else ' x'}")
    in5 = f", top-5 {top5}/{len(photos)}" if wnids else ""
    print(f"{name}: {right}/{len(photos)}{in5}  ({'; '.join(preds)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="default: checkpoints/*.json")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of the photos")
    parser.add_argument("--teacher", action="store_true", help="also the Lite0 teacher")
    args = parser.parse_args()
    cks = args.checkpoints or list_checkpoints(ROOT / "checkpoints")
    photos = sorted(args.photos.glob("*.JPEG"))
    for ck_path in cks:
        ck = load_checkpoint(ck_path)
        score(Path(ck_path).name, ck.model, ck.preprocess, ck.classes, ck.card.get("wnids"), photos)
    if args.teacher:
        from vt_explorer.distill import read_wnids, teacher_model
        from vt_explorer.preprocess import Preprocess

        t = teacher_model(torch.device("cpu"))
        pre = Preprocess(224, t.cfg.mean, t.cfg.std, "center_crop", "bilinear")
        wnids = read_wnids(ROOT.parent / "shared" / "data" / "imagenet-pool" / "imagenet_wnids.txt")
        score("efficientnet_lite0 (teacher)", t, pre, list(t.cfg.classes), wnids, photos)


if __name__ == "__main__":
    main()
