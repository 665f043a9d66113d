"""Where VT-Lite0's CPU training time goes: the frozen trunk's features and the head's steps,
per input size.

    python -m benchmarks.speed.bench_lite0                     # sizes 224 160 128 (about 3 minutes)
    python -m benchmarks.speed.bench_lite0 --sizes 128 --reps 5
    python -m benchmarks.speed.bench_lite0 --batches 256 64 16 8 4   # trunk img/s per batch size

Prints, for each input size:
* trunk: images/s of the folded trunk (``features.folded_trunk``, what the feature cache
  runs), inference mode, batch 64, channels_last and contiguous NCHW;
* head: images/s of one SGD training step of the VT head on random trunk-shaped features
  (batch 128), what each epoch of head training runs;
and the minutes CIFAR-10 would take: trunk features of 60,000 images plus 10 head epochs of
50,000; and, for comparison, one SGD step of the whole model with the trunk trainable
(``--finetune``, batch 32) and the minutes one CIFAR-10 epoch of that would take.
Random data (only the shapes matter); median over ``--reps`` timed runs.
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
    p.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=None,
        metavar="B",
        help="instead: the folded trunk's img/s at each of these batch sizes (channels_last), "
        "the measurement behind vt_explorer.device.inference_batch",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    if args.batches:
        print("| input | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
        print("|---|" + "---|" * len(args.batches))
        for size in args.sizes:
            rates = [trunk_rate(args.config, size, b, args.reps) for b in args.batches]
            print(f"| {size}x{size} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
        return
    print(
        "| input | features | trunk img/s (channels_last) | trunk img/s (NCHW) "
        "| head img/s | CIFAR-10 estimate | fine-tune img/s | fine-tune epoch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        shape, cl, nchw, head = measure(args.config, size, args.reps)
        minutes = (60_000 / max(cl, nchw) + 10 * 50_000 / head) / 60
        ft = measure_finetune(args.config, size, args.reps)
        c, h, w = shape
        print(
            f"| {size}x{size} | {c}x{h}x{w} | {cl:.1f} | {nchw:.1f} | {head:.0f} "
            f"| {minutes:.1f} min | {ft:.1f} | {50_000 / ft / 60:.0f} min |"
        )


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
    head = _sgd_rate(lambda: model.head(feats).logits, model, 128, reps)
    return shape, cl, nchw, head


def _sgd_rate(forward, model: torch.nn.Module, batch: int, reps: int) -> float:
    """Images/s of SGD steps (cross-entropy on random labels) of ``model``'s trainable
    parameters, ``forward()`` giving the logits of one batch of ``batch`` images."""
    labels = torch.randint(0, model.cfg.num_classes, (batch,))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(forward(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _rate(step, batch, reps)


def trunk_rate(config: str, size: int, batch: int, reps: int) -> float:
    """Images/s of the folded trunk (inference, channels_last) on batches of ``batch``."""
    model = create_model(get_config(config).replace(input_size=size))
    trunk = folded_trunk(model).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    n = max(1, 256 // batch)  # about 256 images per timed run

    def run() -> None:
        for _ in range(n):
            trunk.features(x)

    with torch.inference_mode():
        return _rate(run, n * batch, reps)


def measure_finetune(config: str, size: int, reps: int, batch: int = 32) -> float:
    """Images/s of one SGD step of the whole model with the trunk trainable (``--finetune``)."""
    cfg = get_config(config).replace(input_size=size)
    cfg = cfg.replace(extra={**cfg.extra, "freeze_backbone": False})
    model = create_model(cfg).to(memory_format=torch.channels_last).train()
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    return _sgd_rate(lambda: model(x), model, batch, reps)


if __name__ == "__main__":
    main()
