"""The ImageNet students' results, read from their cards (written by `vt-explorer distill`).

    python -m benchmarks.figures.distill_table [CHECKPOINT ...]
        # default: checkpoints/imagenet-lite0-vt-{recurrent,filter,recurrent-diverse}

Prints, per checkpoint, the learning curve (held-out top-1 agreement with the teacher, and
top-1 against the wnid folder labels, by training samples seen; for a further stage,
``distill --init``, counted on from the views before it) and a final table with the
teacher's numbers beside the student's. Every number comes from the card; `vt-explorer
distill` measured it on held-out sources it never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = [
    ROOT / "checkpoints" / f"imagenet-lite0-vt-{k}"
    for k in ("recurrent", "filter", "recurrent-diverse")
]


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", type=Path, default=DEFAULT)
    args = parser.parse_args()
    for ck in args.checkpoints:
        card_path = ck.with_name(ck.name + ".json")
        if not card_path.is_file():
            print(f"{card_path}: not found", file=sys.stderr)
            return 1
        card = json.loads(card_path.read_text())
        curve = card.get("learning_curve") or []
        if not curve:
            print(f"{card_path}: no learning curve (not a distilled checkpoint)", file=sys.stderr)
            return 1
        sources = [k for k, v in curve[-1].items() if isinstance(v, dict)]
        # a further stage (distill --init) counts on from the views of the stage it started from
        before = int((card.get("init") or {}).get("samples_in_all", 0))
        stage = (
            f"; a further stage from {card['init']['checkpoint']} ({before:,} views before)"
            if before
            else ""
        )
        print(
            f"\n{ck.name} ({card['config']['name']}; {card['hardware']}; "
            f"{card['train_seconds'] / 60:.0f} min incl. the feature bank{stage})"
        )
        print("| samples | " + " | ".join(f"{s} agreement / top-1" for s in sources) + " |")
        print("|---|" + "---|" * len(sources))
        for p in curve:
            cells = [f"{pct(p[s]['agreement'])} / {pct(p[s]['top1'])}" for s in sources]
            print(f"| {before + p['samples']:,} | " + " | ".join(cells) + " |")
        print(
            "\n| held-out source | n | agreement | student top-1 / top-5 | teacher top-1 / top-5 |"
        )
        print("|---|---|---|---|---|")
        for s in sources:
            h = curve[-1][s]
            print(
                f"| {s} | {h['n']} | {pct(h['agreement'])} | {pct(h['top1'])} / "
                f"{pct(h['top5'])} | {pct(h['teacher_top1'])} / {pct(h['teacher_top5'])} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
