"""Print the README's results table from the shipped model cards (checkpoints/*.json).

    python -m benchmarks.figures.results_table [--group all|cifar|pretrained]

Every number comes from a card: top-1 (as `vt-explorer eval` reproduces it), parameters and
multiply-adds in total and of the last stage, training wall time and hardware.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vt_explorer.explore import list_checkpoints

ROOT = Path(__file__).resolve().parents[2]


def _row(card_path: Path, card: dict, pretrained: bool) -> str:
    cx = card["complexity"]
    stages = cx["stages"]
    last = "vt" if "vt" in stages else max(k for k in stages if k.startswith("layer"))
    ls = stages[last]
    config = f"`{card['config']['name']}`"
    vt = card["config"].get("vt") or {}
    if vt.get("variant") == "recurrent" and vt.get("recurrent_norm"):
        config += " + `recurrent_norm`"
    tta = " (flip TTA)" if card["metrics"].get("flip_tta") else ""
    cells = [f"`{card_path.stem}`", config]
    if pretrained:
        size = card["config"]["input_size"]
        cells += [f"{size}x{size}", "fine-tuned" if card["recipe"].get("finetune") else "frozen"]
    cells += [
        str(card["recipe"]["epochs"]),
        f"{card['metrics']['accuracy']:.2%}{tta}",
        f"{cx['params'] / 1e6:.3f}M",
        f"{cx['flops'] / 2e9:.4f}",
        f"{last}: {ls['params'] / 1e6:.3f}M / {ls['flops'] / 2e9:.4f}",
        f"{card['train_seconds'] / 60:.1f} min",
        card["hardware"],
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--group",
        choices=["all", "cifar", "pretrained"],
        default="all",
        help="CIFAR-scale models trained from scratch, models on a pretrained backbone "
        "(VT-Lite0: with input size and whether the trunk was fine-tuned), or both tables",
    )
    args = p.parse_args(argv)
    cards = []
    for stem in list_checkpoints(ROOT / "checkpoints"):
        card_path = Path(stem + ".json")
        card = json.loads(card_path.read_text())
        cards.append((card_path, card, bool(card.get("backbone"))))
    for pretrained in (False, True):
        if args.group == ("pretrained" if not pretrained else "cifar"):
            continue
        head = ["checkpoint", "config"] + (["input", "trunk"] if pretrained else [])
        head += ["epochs", "top-1", "params", "GMACs", "last stage params / GMACs"]
        head += ["train time", "hardware"]
        if args.group == "all":
            print("VT on a pretrained backbone:" if pretrained else "From scratch, 32x32:")
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for card_path, card, is_pre in cards:
            if is_pre == pretrained:
                print(_row(card_path, card, pretrained))
        print()


if __name__ == "__main__":
    main()
