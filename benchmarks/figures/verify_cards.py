"""Re-run `vt-explorer eval` for every shipped checkpoint and compare with its card.

    python -m benchmarks.figures.verify_cards [NAME ...] [--data-root ../shared/data]

For a CIFAR-10 card: top-1 on the card's own test set (``dataset.val.source``, with the
card's flip-TTA setting) must equal ``metrics.accuracy`` on the same number of images. For a
distilled ImageNet card: agreement with the teacher and top-1 on Imagenette's val (the
card's held-out sample: ``eval --sample`` with its ``--holdout-limit``) must equal
``metrics.holdout['imagenette-val.tar.gz']``. Prints one line per card; exit code 1 when any
card does not reproduce. Run on the CPU by default (``--device``), as the cards' metrics were.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGENETTE = "imagenette-val.tar.gz"


def _eval(stem: Path, data: Path, device: str, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "vt_explorer",
        "eval",
        str(stem),
        str(data),
        "--json",
        "--device",
        device,
        *extra,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def verify(stem: Path, data_root: Path, device: str) -> tuple[bool, str]:
    """(reproduces?, one line) for one checkpoint stem."""
    card = json.loads(stem.with_suffix(".json").read_text())
    t0 = time.perf_counter()
    holdout = (card.get("metrics") or {}).get("holdout")
    if holdout:
        want = holdout[IMAGENETTE]
        limit = (card.get("recipe") or {}).get("holdout_limit")  # the sample distill held out
        sample = ["--sample", str(limit)] if limit else []
        got = _eval(stem, data_root / "imagenet-pool" / IMAGENETTE, device, ["--teacher", *sample])
        pairs = [
            ("n", want["n"], got["n"]),
            ("top-1", want["top1"], got["accuracy"]),
            ("agreement", want["agreement"], got["teacher_agreement"]),
        ]
    else:
        m = card["metrics"]
        source = Path(card["dataset"]["val"]["source"])
        data = data_root / source.parent.name / source.name
        tta = ["--tta"] if m.get("flip_tta") else ["--no-tta"]
        got = _eval(stem, data, device, tta)
        pairs = [("n", m["n"], got["n"]), ("top-1", m["accuracy"], got["accuracy"])]
    ok = all(abs(float(w) - float(g)) < 1e-9 for _, w, g in pairs)
    shown = ", ".join(f"{k} card {w} eval {g}" for k, w, g in pairs)
    took = time.perf_counter() - t0
    return ok, f"{'ok  ' if ok else 'DIFF'} {stem.name}: {shown} ({took:.0f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="checkpoint names (default: every card)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="the folder holding cifar10/ and imagenet-pool/",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    args = parser.parse_args()
    cards = sorted(
        p for p in (ROOT / "checkpoints").glob("*.json") if not p.name.endswith(".tokens.json")
    )
    if args.names:
        cards = [c for c in cards if c.stem in args.names]
    failed = 0
    for card in cards:
        ok, line = verify(card.with_suffix(""), args.data_root, args.device)
        print(line, flush=True)
        failed += not ok
    print(f"{len(cards) - failed} of {len(cards)} cards reproduce with `vt-explorer eval`")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
