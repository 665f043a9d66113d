"""Print the README's results table from the shipped model cards (checkpoints/*.json).

    python benchmarks/results_table.py

Every number comes from a card: top-1 (as `vt-explorer eval` reproduces it), parameters and
multiply-adds in total and of the last stage, training wall time and hardware.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vt_explorer.explore import list_checkpoints  # noqa: E402


def main() -> None:
    print(
        "| checkpoint | config | epochs | top-1 | params | GMACs | last stage params / GMACs "
        "| train time | hardware |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for stem in list_checkpoints(ROOT / "checkpoints"):
        card_path = Path(stem + ".json")
        card = json.loads(card_path.read_text())
        cx = card["complexity"]
        stages = cx["stages"]
        last = "vt" if "vt" in stages else max(k for k in stages if k.startswith("layer"))
        ls = stages[last]
        config = f"`{card['config']['name']}`"
        vt = card["config"].get("vt") or {}
        if vt.get("variant") == "recurrent" and vt.get("recurrent_norm"):
            config += " + `recurrent_norm`"
        if card["recipe"].get("finetune"):
            config += " (fine-tuned)"
        tta = " (flip TTA)" if card["metrics"].get("flip_tta") else ""
        print(
            f"| `{card_path.stem}` | {config} | {card['recipe']['epochs']} "
            f"| {card['metrics']['accuracy']:.2%}{tta} "
            f"| {cx['params'] / 1e6:.3f}M | {cx['flops'] / 2e9:.4f} "
            f"| {last}: {ls['params'] / 1e6:.3f}M / {ls['flops'] / 2e9:.4f} "
            f"| {card['train_seconds'] / 60:.1f} min | {card['hardware']} |"
        )


if __name__ == "__main__":
    main()
