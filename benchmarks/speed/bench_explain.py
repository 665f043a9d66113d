"""Speed of ``vt-explorer explain`` on CIFAR-size images (issue goal: 100 images with one
checkpoint in under 10 s on the 2-core CPU, figure files excluded).

    python -m benchmarks.speed.bench_explain [--checkpoint checkpoints/cifar10-vt-recurrent] [--n 100]

Extracts the first N test images of ../shared/data/cifar10/test.tar.gz into a temporary
folder, then times ``explain`` with ``--no-figures`` (model, every map, per-token numbers,
deletion curves, NPZ + JSON per image), and, for reference, with PNG figures for 10 images.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from vt_explorer.headless import ExplainOptions, explain
from vt_explorer.runs import hardware

ROOT = Path(__file__).resolve().parents[2]

TEST = ROOT.parent / "shared" / "data" / "cifar10" / "test.tar.gz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "cifar10-vt-recurrent"))
    p.add_argument("--n", type=int, default=100, help="images (default 100)")
    p.add_argument("--data", default=str(TEST), help="ImageFolder .tar.gz to take images from")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    with tarfile.open(args.data) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for i, m in enumerate(members[: args.n]):
            f = tar.extractfile(m)
            assert f is not None
            (tmp / f"{i:04d}-{Path(m.name).name}").write_bytes(io.BytesIO(f.read()).getvalue())
    print(f"{hardware()}; torch {torch.__version__}; {args.n} images; {args.checkpoint}")
    explain([tmp], [args.checkpoint], tmp / "warm", ExplainOptions(figures=False), progress=False)
    t = time.perf_counter()
    explain([tmp], [args.checkpoint], tmp / "out", ExplainOptions(figures=False), progress=False)
    dt = time.perf_counter() - t
    print(f"explain --no-figures: {dt:.2f} s for {args.n} images ({1000 * dt / args.n:.1f} ms/img)")
    few = sorted(tmp.glob("*.*"))[:10]
    t = time.perf_counter()
    explain(few, [args.checkpoint], tmp / "figs", ExplainOptions(figures=True), progress=False)
    dt = time.perf_counter() - t
    print(f"explain with PNG figures: {dt:.2f} s for {len(few)} images ({dt / len(few):.2f} s/img)")


if __name__ == "__main__":
    main()
