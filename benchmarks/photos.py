"""How many of the nine real photos in ../shared/data/photos each checkpoint gets right.

    python benchmarks/photos.py [CHECKPOINT ...]    # default: every checkpoint in checkpoints/

The photos are ImageNet-style pictures (300-600 px) of nine CIFAR-10 classes (no horse);
their class comes from the file name. Prints one row per checkpoint: correct / 9, and the
predicted class of each photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.data import decode_image
from vt_explorer.explore import list_checkpoints

ROOT = Path(__file__).resolve().parent.parent
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="default: checkpoints/*.json")
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of the photos")
    args = parser.parse_args()
    cks = args.checkpoints or list_checkpoints(ROOT / "checkpoints")
    photos = sorted(args.photos.glob("*.JPEG"))
    for ck_path in cks:
        ck = load_checkpoint(ck_path)
        right, preds = 0, []
        for p in photos:
            x = ck.preprocess(decode_image(p.read_bytes(), p.name))[None]
            with torch.no_grad():
                pred = ck.classes[int(ck.model(x).argmax())]
            ok = pred == truth_of(p)
            right += ok
            preds.append(f"{truth_of(p)}->{pred}{'' if ok else ' x'}")
        print(f"{Path(ck_path).name}: {right}/{len(photos)}  ({'; '.join(preds)})")


if __name__ == "__main__":
    main()
