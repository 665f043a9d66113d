"""Model speed on this machine: trace latency for one image, and training throughput.

    python -m benchmarks.speed.bench_model            # everything (about 3 minutes on 2 CPU cores)
    python -m benchmarks.speed.bench_model --quick    # fewer repetitions

Prints, in one run:
* trace latency (median, one image) of every classifier config at its input size
  (32x32 for the CIFAR configs, 224x224 for the ImageNet ones), inference mode, channels_last;
* training throughput (images/s, SGD step on random data, batch 128) of the CIFAR configs
  (channels_last, as `vt-explorer train` runs them), next to a faithful re-implementation
  of the seed's ViTResNet (per-sample tokenizer weights, contiguous NCHW, as written) timed
  in the same run. The models are timed in interleaved rounds and the median of each is
  reported, so that a noisy shared CPU affects all of them alike; the ratio to the seed is
  the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from vt_explorer.device import select_device
from vt_explorer.model import SeedViTResNetReference, create_model, get_config, list_models


def trace_latency_ms(model: nn.Module, size: int, device: torch.device, reps: int) -> float:
    """Median wall time of ``model.trace`` on one (1, 3, size, size) image, in ms."""
    x = torch.randn(1, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(reps + 3):
            t0 = time.perf_counter()
            model.trace(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def train_throughput(
    model: nn.Module, batch: int, device: torch.device, steps: int, channels_last: bool
) -> float:
    """Images/s of full SGD training steps (forward, cross-entropy, backward, update)."""
    model.train().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto...")
    parser.add_argument("--batch", type=int, default=128, help="training batch size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = parser.parse_args()
    device = select_device(args.device)
    reps, steps = (10, 3) if args.quick else (30, 6)
    torch.manual_seed(0)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )

    print("\n== trace latency, one image (median) ==")
    for name in list_models("classification"):
        cfg = get_config(name)
        model = create_model(name).eval().to(device, memory_format=torch.channels_last)
        ms = trace_latency_ms(model, cfg.input_size, device, reps if cfg.input_size <= 64 else 5)
        print(f"{name:<20} {cfg.input_size:>3}x{cfg.input_size:<3} {ms:8.2f} ms")

    print(f"\n== training throughput, batch {args.batch}, 32x32, median of {args.rounds} rounds ==")
    contenders: dict[str, tuple[nn.Module, bool]] = {
        "seed ViTResNet as written (per-sample W_A, W_V)": (
            SeedViTResNetReference(batch_size=args.batch),
            False,
        )
    }
    for name in ["resnet20", "vt_resnet20", "vt_resnet20_filter", "vit_resnet_seed"]:
        contenders[name] = (create_model(name), True)
    results: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for label, (model, cl) in contenders.items():
            results[label].append(train_throughput(model, args.batch, device, steps, cl))
    seed = statistics.median(next(iter(results.values())))
    for label, values in results.items():
        ips = statistics.median(values)
        spread = f"[{min(values):.0f}-{max(values):.0f}]"
        print(f"{label:<50} {ips:7.1f} img/s {spread:>11} {ips / seed:6.2f}x seed")


if __name__ == "__main__":
    main()
