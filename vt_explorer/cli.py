"""Command line: ``python -m vt_explorer`` or ``vt-explorer``.

Subcommands:
  info    parameters and FLOPs (total and per stage) of every registered model config
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return int(args.func(args))
