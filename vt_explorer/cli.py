"""Command line: ``python -m vt_explorer`` or ``vt-explorer``.

Subcommands:
  info    parameters and FLOPs (total and per stage) of every registered model config
  train   train a model on an ImageFolder directory or archive (single process or torchrun)
  eval    top-1, per-class accuracy and confusion matrix of a checkpoint on a dataset
  predict top-k classes of a checkpoint for image files or folders
  explain figures, arrays and faithfulness numbers per image (the app, headless)
  tokens  dataset-level statistics per visual token and class
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cli_analysis import add_explain, add_tokens
from .flags import (
    POSITIVE,
    OneLineErrors,
    UserError,
    add_flags,
    from_namespace,
    int_in,
)


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


def add_info(sub: argparse._SubParsersAction) -> None:
    """The ``info`` subcommand's flags."""
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
        type=int_in(8, 4096),
        default=None,
        metavar="S",
        help="square input side in pixels; default: each config's own input size",
    )
    info.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    info.set_defaults(func=cmd_info)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (see vt_explorer.train)."""
    from .train import TrainArgs, train

    overrides = _checked_overrides(args.config, args.set)
    if overrides is None:
        return 2
    train(from_namespace(TrainArgs, args, overrides=overrides))  # UserError: main() says it
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand: one flag per :class:`~vt_explorer.train.TrainArgs` field, plus ``--set``."""
    tr = sub.add_parser(
        "train",
        help="train a model on an ImageFolder directory or .tar.gz",
        description="Train a registered config on your data (ImageFolder layout: "
        "ROOT/<class>/<image>, as a folder or a .tar.gz of one). Single process, or "
        "multi-GPU / multi-node with torchrun (DistributedDataParallel). Writes "
        "OUT.safetensors + OUT.json (checkpoint and model card), OUT.log.jsonl (one line per "
        "epoch) and OUT.resume.pt (deleted when training finishes).",
    )
    from .train import TrainArgs

    add_flags(tr, TrainArgs)
    _add_set_flag(tr, "tokens=32 --set recurrent_norm=true")
    tr.set_defaults(func=cmd_train)


def _add_set_flag(parser: argparse.ArgumentParser, example: str) -> None:
    """The repeatable ``--set KEY=VALUE`` flag of ``train`` and ``distill``."""
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"change a field of the config (repeatable), e.g. --set {example}; the card "
        "records the resulting architecture",
    )


def _checked_overrides(config: str, items: list[str] | None) -> dict | None:
    """``--set`` values parsed and checked against the registered ``config`` (None after
    printing the error: an unknown config, a malformed item or a config the card schema
    refuses)."""
    from .cardcheck import check_config
    from .model import get_config

    try:
        get_config(config)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return None
    try:
        overrides = _parse_overrides(items or [])
        check_config(json.loads(json.dumps(get_config(config).replace(**overrides).to_dict())))
    except (ValueError, TypeError) as err:
        print(f"error: --set: {err}", file=sys.stderr)
        return None
    return overrides


def cmd_distill(args: argparse.Namespace) -> int:
    """Distil the Lite0 ImageNet classifier into a VT student (see vt_explorer.distill)."""
    from .distill import DistillArgs, distill, parse_sources

    overrides = _checked_overrides(args.student, args.set)
    if overrides is None:
        return 2
    data, holdout = parse_sources(args.data), parse_sources(args.holdout)
    distill(from_namespace(DistillArgs, args, data=data, holdout=holdout, overrides=overrides))
    return 0


def add_distill(sub: argparse._SubParsersAction) -> None:
    """The ``distill`` subcommand: one flag per :class:`~vt_explorer.distill.DistillArgs` field."""
    di = sub.add_parser(
        "distill",
        help="distil ImageNet's 1000 classes from the Lite0 classifier into a VT student",
        description="Function matching on the student's own frozen trunk features: every "
        "training sample is a fresh random-resized crop (and flip, MixUp/CutMix) of a pool "
        "photo's feature map, labelled by the teacher (Lite0's blocks 11-15 and head). "
        "Held-out sources are evaluated every --eval-every samples (agreement with the "
        "teacher; top-1/top-5 where folders are wnids): the card's learning curve.",
    )
    from .distill import DistillArgs

    add_flags(di, DistillArgs)
    _add_set_flag(di, "token_dim=512 --set tokens=32")
    di.set_defaults(func=cmd_distill)


def _parse_overrides(items: list[str]) -> dict:
    """``["tokens=32", "recurrent_norm=true"]`` -> {"tokens": 32, "recurrent_norm": True}
    (values are read as JSON when they parse, else kept as strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a dataset."""
    from .device import select_device
    from .evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        select_device(args.device),
        args.batch_size,
        args.tta,
        progress=not args.json,
        teacher=args.teacher,
        sample=args.sample,
    )
    if args.write_card:
        from .checkpoint import record_metrics

        record_metrics(args.checkpoint, m)
    m["checkpoint"] = str(args.checkpoint)
    m["data"] = str(args.data)
    if args.json:
        print(json.dumps(m))
        return 0
    top5 = f", top-5 {m['top5']:.4f}" if "top5" in m else ""
    scope = f" ({len(m['classes'])} of its {m['subset_of']} classes)" if m.get("subset_of") else ""
    print(
        f"{args.checkpoint} on {args.data}{scope}: top-1 {m['accuracy']:.4f} "
        f"({m['correct']}/{m['n']}){top5}"
    )
    if "teacher_agreement" in m:
        print(
            f"  agreement with the teacher {m['teacher_agreement']:.4f}; teacher top-1 "
            f"{m['teacher_accuracy']:.4f}, top-5 {m['teacher_top5']:.4f}"
        )
    width = max(len(c) for c in m["classes"])
    for c, acc in m["per_class"].items():
        print(f"  {c:<{width}}  {'-' if acc is None else f'{acc:.4f}'}")
    if m.get("confusion") is not None:
        print("confusion matrix (rows: true class, columns: predicted):")
        for c, row in zip(m["classes"], m["confusion"], strict=True):
            print(f"  {c:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    """The ``eval`` subcommand's flags."""
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
    ev.add_argument(
        "--teacher",
        nargs="?",
        const="card",
        choices=("card", "plain"),
        default=None,
        help="a distilled checkpoint: also its top-1 agreement with the teacher and the "
        "teacher's accuracy on the same images: the teacher as its card names it and as it "
        "taught (the default: Lite0 at the student's output stride, dilated for a stride-16 "
        "student, which reproduces the card's held-out agreement), or 'plain' for the plain "
        "Lite0 classifier",
    )
    ev.add_argument(
        "--sample",
        type=POSITIVE,
        default=None,
        metavar="N",
        help="only a fixed random sample of N images (seed 0): the held-out "
        "sample of distill --holdout-limit N (default: every image)",
    )
    ev.add_argument("--batch-size", type=POSITIVE, default=256, help="(default 256)")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    ev.add_argument(
        "--write-card",
        action="store_true",
        help="store the result as the card's metrics (the top-1 of earlier devices is kept "
        "under metrics_by_device); for a checkpoint trained on a GPU and verified on a CPU",
    )
    tta = ev.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None, help="flip TTA on")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="flip TTA off")
    ev.set_defaults(func=cmd_eval)


def cmd_predict(args: argparse.Namespace) -> int:
    """Print the top-k predictions of a checkpoint for each image."""
    import torch

    from .checkpoint import load_checkpoint
    from .data import decode_image, image_files, read_image_file
    from .device import select_device

    device = select_device(args.device)
    ck = load_checkpoint(args.checkpoint, device=device)
    empty = [p for p in args.images if Path(p).is_dir() and not image_files([p])]
    if empty:
        print(f"error: no image files in {', '.join(empty)}", file=sys.stderr)
        return 2
    results, failed = [], 0
    for f in image_files(args.images):
        try:
            img = decode_image(read_image_file(f), str(f))
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


def add_predict(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand's flags."""
    pr = sub.add_parser(
        "predict",
        help="top-k predictions for images",
        description="Classify image files (any size or format; resized as the checkpoint's "
        "card says). Folders are searched for images. Unreadable files are reported and "
        "skipped (exit status 1).",
    )
    pr.add_argument("checkpoint", help="checkpoint path (with or without .safetensors/.json)")
    pr.add_argument("images", nargs="+", help="image files or folders")
    pr.add_argument("--top", type=POSITIVE, default=5, help="how many classes to show (5)")
    pr.add_argument("--json", action="store_true", help="print one JSON list")
    pr.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    pr.set_defaults(func=cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``--help`` documents each flag)."""
    parser = OneLineErrors(
        prog="vt-explorer",
        description="Explore Visual Transformers (Wu et al. 2020): models, training, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"vt_explorer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_info, add_train, add_distill, add_eval, add_predict, add_explain, add_tokens):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args))
    except UserError as err:  # bad input anywhere below: one line; real bugs keep tracebacks
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, and how to go on where that is possible
        how = {
            "train": "the last finished epoch",
            "distill": "the last held-out evaluation",
        }.get(args.command)
        hint = f"; re-run the same command with --resume to continue after {how}" if how else ""
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


def entry() -> None:
    """Console-script entry point: like :func:`main`, and ``... | head`` ends quietly."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
