"""Where VT-Lite0's CPU training time goes: the frozen trunk's features and the head's steps,
per input size.

    python benchmarks/bench_lite0.py                     # sizes 224 160 128 (about 2 minutes)
    python benchmarks/bench_lite0.py --sizes 128 --reps 5

Prints, for each input size:
* trunk: images/s of the folded trunk (``features.folded_trunk``, what the feature cache
  runs), inference mode, batch 64, channels_last and contiguous NCHW;
* head: images/s of one SGD training step of the VT head on random trunk-shaped features
  (batch 128), what each epoch of head training runs;
and the minutes CIFAR-10 would take: trunk features of 60,000 images plus 10 head epochs of
50,000. Random data (only the shapes matter); median over ``--reps`` timed runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from vt_explorer.features import folded_trunk
from vt_explorer.model import create_model, get_config


def _rate(fn, n: int, reps: int) -> float:
    """Median images/s of ``fn`` (which handles ``n`` images) over ``reps`` timed calls."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 160, 128], help="input sizes")
    p.add_argument("--config", default="vt_lite0", help="vt_lite0 or vt_lite0_filter")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| input | features | trunk img/s (channels_last) | trunk img/s (NCHW) "
          "| head img/s | CIFAR-10 estimate |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        shape, cl, nchw, head = measure(args.config, size, args.reps)
        minutes = (60_000 / max(cl, nchw) + 10 * 50_000 / head) / 60
        c, h, w = shape
        print(f"| {size}x{size} | {c}x{h}x{w} | {cl:.1f} | {nchw:.1f} | {head:.0f} "
              f"| {minutes:.1f} min |")  # fmt: skip


def measure(config: str, size: int, reps: int) -> tuple[tuple[int, ...], float, float, float]:
    """(feature shape, trunk img/s channels_last, trunk img/s NCHW, head img/s) at ``size``."""
    model = create_model(get_config(config).replace(input_size=size))
    trunk = folded_trunk(model)
    x = torch.randn(64, 3, size, size)
    with torch.inference_mode():
        nchw = _rate(lambda: trunk.features(x), 64, reps)
        trunk = trunk.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        cl = _rate(lambda: trunk.features(xc), 64, reps)
        shape = tuple(trunk.features(xc[:1]).shape[1:])
    model.train()
    feats = torch.randn(128, *shape)
    labels = torch.randint(0, model.cfg.num_classes, (128,))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model.head(feats).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return shape, cl, nchw, _rate(step, 128, reps)


if __name__ == "__main__":
    main()
