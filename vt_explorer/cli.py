"""Command line: ``python -m vt_explorer`` or ``vt-explorer``.

Subcommands:
  info    parameters and FLOPs (total and per stage) of every registered model config
  train   train a model on an ImageFolder directory or archive (single process or torchrun)
  eval    top-1, per-class accuracy and confusion matrix of a checkpoint on a dataset
  predict top-k classes of a checkpoint for image files or folders
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__


def _fmt_stage(name: str, params: int, macs: int) -> str:
    return f"{name} {params / 1e6:.3f}M/{macs / 1e9:.4f}G"


def cmd_info(args: argparse.Namespace) -> int:
    """Print parameters and FLOPs of the chosen (default: all) registered configs."""
    import torch

    from .model import count_complexity, create_model, get_config, list_models

    names = args.model or list_models()
    for n in names:
        try:
            get_config(n)
        except KeyError as err:
            print(f"error: {err.args[0]}", file=sys.stderr)
            return 2
    torch.manual_seed(0)
    rows = []
    for name in names:
        cfg = get_config(name)
        cost = count_complexity(create_model(name), args.input_size)
        rows.append((cfg, cost))
    if args.json:
        out = {cfg.name: {"description": cfg.description, **cost.to_dict()} for cfg, cost in rows}
        print(json.dumps(out, indent=2))
        return 0
    print(
        "FLOPs: 2 per multiply-add (torch.utils.flop_counter); GMACs = multiply-adds, the paper's unit."
    )
    head = f"{'model':<20} {'input':>5} {'params':>9} {'GMACs':>8} {'GFLOPs':>8}  per stage (params / GMACs)"
    print(head)
    print("-" * len(head))
    for cfg, cost in rows:
        stages = ", ".join(_fmt_stage(s.name, s.params, s.macs) for s in cost.stages)
        print(
            f"{cfg.name:<20} {cost.input_size:>5} {cost.params / 1e6:>8.3f}M "
            f"{cost.macs / 1e9:>8.4f} {cost.flops / 1e9:>8.4f}  {stages}"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train (see vt_explorer.train)."""
    from .data import DatasetError
    from .model import get_config
    from .train import TrainArgs, train

    try:
        get_config(args.config)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    negated = {"flip_tta": "no_tta", "amp": "no_amp", "pretrained": "no_pretrained"}
    negated["feature_flip"] = "no_feature_flip"
    names = {f.name for f in dataclasses.fields(TrainArgs)} - set(negated)
    targs = TrainArgs(
        **{n: getattr(args, n) for n in names},
        **{field: not getattr(args, flag) for field, flag in negated.items()},
    )
    try:
        train(targs)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset."""
    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .device import select_device
    from .evaluate import evaluate_checkpoint

    try:
        m = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            select_device(args.device),
            args.batch_size,
            args.tta,
            progress=not args.json,
        )
    except (CheckpointError, DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m["checkpoint"] = str(args.checkpoint)
    m["data"] = str(args.data)
    if args.json:
        print(json.dumps(m))
        return 0
    print(f"{args.checkpoint} on {args.data}: top-1 {m['accuracy']:.4f} ({m['correct']}/{m['n']})")
    width = max(len(c) for c in m["classes"])
    for c, acc in m["per_class"].items():
        print(f"  {c:<{width}}  {'-' if acc is None else f'{acc:.4f}'}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for c, row in zip(m["classes"], m["confusion"], strict=True):
        print(f"  {c:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    return 0


def _image_files(paths: list[str]) -> list[Path]:
    from .data import IMAGE_EXTENSIONS

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            files.append(p)
    return files


def cmd_predict(args: argparse.Namespace) -> int:
    """Print the top-k predictions of a checkpoint for each image."""
    import torch

    from .checkpoint import CheckpointError, load_checkpoint
    from .data import decode_image
    from .device import select_device

    try:
        device = select_device(args.device)
        ck = load_checkpoint(args.checkpoint, device=device)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results, failed = [], 0
    for f in _image_files(args.images):
        try:
            img = decode_image(f.read_bytes(), str(f))
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            x = ck.preprocess(img)[None].to(device)
            probs = torch.softmax(ck.model(x).float(), -1)[0].cpu()
        k = min(args.top, len(ck.classes))
        top = torch.topk(probs, k)
        preds = [
            {"class": ck.classes[int(i)], "probability": round(float(p), 6)}
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        results.append({"image": str(f), "top": preds})
        if not args.json:
            shown = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in preds)
            print(f"{f}: {shown}")
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``--help`` documents each flag)."""
    parser = argparse.ArgumentParser(
        prog="vt-explorer",
        description="Explore Visual Transformers (Wu et al. 2020): models, training, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"vt_explorer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = sub.add_parser(
        "info",
        help="parameters and FLOPs of every registered model config",
        description="Count parameters and FLOPs (total and per stage) for one image at each "
        "config's default input size, with torch.utils.flop_counter.",
    )
    info.add_argument(
        "--model",
        "-m",
        action="append",
        metavar="NAME",
        help="only this registered config (repeatable); default: all",
    )
    info.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="S",
        help="square input side in pixels; default: each config's own input size",
    )
    info.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    info.set_defaults(func=cmd_info)

    tr = sub.add_parser(
        "train",
        help="train a model on an ImageFolder directory or .tar.gz",
        description="Train a registered config on your data (ImageFolder layout: "
        "ROOT/<class>/<image>, as a folder or a .tar.gz of one). Single process, or "
        "multi-GPU / multi-node with torchrun (DistributedDataParallel). Writes "
        "OUT.safetensors + OUT.json (checkpoint and model card), OUT.log.jsonl (one line per "
        "epoch) and OUT.resume.pt (deleted when training finishes).",
    )
    tr.add_argument("--config", required=True, help="registered model config (vt-explorer info)")
    tr.add_argument("--train", required=True, metavar="PATH", help="training images")
    tr.add_argument("--val", metavar="PATH", help="evaluation images (same class folders)")
    tr.add_argument("--out", required=True, metavar="OUT", help="checkpoint path without suffix")
    tr.add_argument("--epochs", type=int, default=15, help="passes over the data (default 15)")
    tr.add_argument("--batch-size", type=int, default=128, help="per process (default 128)")
    tr.add_argument("--lr", type=float, default=0.1, help="peak one-cycle learning rate (0.1)")
    tr.add_argument("--momentum", type=float, default=0.9, help="Nesterov momentum (0.9)")
    tr.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default="sgd",
        help="SGD with Nesterov momentum (default) or AdamW (try --lr 1e-3 --weight-decay 0.05)",
    )
    tr.add_argument("--weight-decay", type=float, default=5e-4, help="on weights only (5e-4)")
    tr.add_argument("--label-smoothing", type=float, default=0.1, help="(default 0.1)")
    tr.add_argument("--warmup", type=float, default=0.2, help="warm-up fraction of steps (0.2)")
    tr.add_argument("--seed", type=int, default=0, help="seed; CPU runs are deterministic")
    tr.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1...")
    tr.add_argument("--workers", type=int, default=2, help="image decoding threads (2)")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    tr.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    tr.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    tr.add_argument("--compile", action="store_true", help="torch.compile the model")
    tr.add_argument("--resume", action="store_true", help="continue from OUT.resume.pt")
    tr.add_argument(
        "--resize",
        choices=("stretch", "center_crop"),
        default="stretch",
        help="how images become the config's input square: the whole image (stretch, "
        "default) or short side to 8/7 of it and the centre cut out (center_crop); the "
        "checkpoint's card records it, so eval, predict and the app do the same",
    )
    tr.add_argument(
        "--no-pretrained",
        action="store_true",
        help="start a config with a pretrained backbone (vt_lite0...) from random weights",
    )
    tr.add_argument(
        "--finetune",
        action="store_true",
        help="train the pretrained backbone too (slow on a CPU; default: frozen, its features "
        "computed once and cached, and only the VT head trained)",
    )
    tr.add_argument(
        "--no-feature-flip",
        action="store_true",
        help="no random mirroring of cached feature maps (the augmentation of head training)",
    )
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval",
        help="accuracy of a checkpoint on a dataset",
        description="Top-1, per-class accuracy and confusion matrix. DATA is any ImageFolder "
        "folder or archive whose class folders are the checkpoint's classes; images of any "
        "size and format are resized as the checkpoint's card says.",
    )
    ev.add_argument("checkpoint", help="checkpoint path (with or without .safetensors/.json)")
    ev.add_argument("data", help="ImageFolder directory or .tar.gz")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--batch-size", type=int, default=256, help="(default 256)")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    tta = ev.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None, help="flip TTA on")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="flip TTA off")
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser(
        "predict",
        help="top-k predictions for images",
        description="Classify image files (any size or format; resized as the checkpoint's "
        "card says). Folders are searched for images. Unreadable files are reported and "
        "skipped (exit status 1).",
    )
    pr.add_argument("checkpoint", help="checkpoint path (with or without .safetensors/.json)")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--top", type=int, default=5, help="how many classes to show (5)")
    pr.add_argument("--json", action="store_true", help="print one JSON list")
    pr.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    pr.set_defaults(func=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return int(args.func(args))


def entry() -> None:
    """Console-script entry point: like :func:`main`, and ``... | head`` ends quietly."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
