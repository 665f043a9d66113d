"""The headless analysis commands of the command line: ``explain`` (the app's figures,
arrays and numbers per image) and ``tokens`` (statistics per token over a dataset).
:mod:`vt_explorer.cli` registers them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import POSITIVE, colour_map, float_in, int_in


def _fresh_out(out: Path, overwrite: bool) -> bool:
    """``explain --out``: an absent or empty folder is used as it is. One that holds files is
    refused unless ``overwrite``; then it must be an earlier explain's output (it has
    ``summary.json``), which is removed first so that no stale file stays beside the new
    ones. False after printing why not."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return True
    if not out.is_dir():
        print(f"error: --out {out}: a file, not a folder", file=sys.stderr)
        return False
    if not overwrite:
        print(
            f"error: --out {out} already holds files; add --overwrite to replace an earlier "
            "explain's output, or choose a new folder",
            file=sys.stderr,
        )
        return False
    if not (out / "summary.json").is_file():
        print(
            f"error: --out {out} is not an earlier explain output (no summary.json); "
            "refusing to empty it: choose a new folder",
            file=sys.stderr,
        )
        return False
    import shutil

    n = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"replacing {out} ({n} files of an earlier explain)", file=sys.stderr)
    shutil.rmtree(out)
    return True


def cmd_explain(args: argparse.Namespace) -> int:
    """Write figures, arrays and a JSON summary per image and checkpoint."""
    from .analysis import format_score
    from .data import image_files
    from .device import select_device
    from .headless import ExplainOptions, explain

    missing = [p for p in args.images if not Path(p).exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not image_files(args.images):
        print(f"error: no image files in {' '.join(args.images)}", file=sys.stderr)
        return 2
    if args.masks and not Path(args.masks).is_dir():
        print(f"error: --masks {args.masks}: no such folder", file=sys.stderr)
        return 2
    if not _fresh_out(Path(args.out), args.overwrite):
        return 2
    opts = ExplainOptions(
        figures=not args.no_figures,
        svg=args.svg,
        cmap=args.cmap,
        alpha=args.alpha,
        deletion=not args.no_deletion,
        random_orders=args.random_orders,
        randomisation=args.randomisation,
        masks=Path(args.masks) if args.masks else None,
        batch_size=args.batch_size,
        view=None if args.view == "model" else args.view,
        target=args.target,
    )
    try:
        summary = explain(
            args.images, args.checkpoint, args.out, opts, device=select_device(args.device)
        )
    except OSError as err:  # an --out that is a file, or a folder that cannot be written
        print(
            f"error: --out {args.out}: cannot write there ({err.strerror or err})", file=sys.stderr
        )
        return 2
    for err in summary["errors"]:
        print(f"error: {err}", file=sys.stderr)
    for r in summary["images"]:
        top = r["predictions"][0]
        extra = ""
        ex = r.get("explained") or {}
        if ex and not ex.get("predicted", True):
            extra = f"; explaining {ex['class']} ({ex['probability']:.3f})"
        if "faithfulness" in r and "deletion_score" in r["faithfulness"]:
            extra += f", deletion score {format_score(r['faithfulness']['deletion_score'])}"
        print(f"{r['image']} [{r['checkpoint']}]: {top['class']} {top['probability']:.3f}{extra}")
    print(f"wrote {args.out}/summary.json")
    return 1 if summary["errors"] else 0


def add_explain(sub: argparse._SubParsersAction) -> None:
    """The ``explain`` subcommand's flags."""
    ex = sub.add_parser(
        "explain",
        help="the app's figures, arrays and numbers for images, without a browser",
        description="For each image and checkpoint write OUT/<image>/<checkpoint>/: "
        "summary.json (top-5, per token: share of the semantic-group map, projector mass, "
        "entropy, contribution to the predicted class, foreground share with --masks; the "
        "deletion score), arrays.npz (every map and attention matrix) and PNG figures "
        "(token maps, semantic groups, projector view, token attention, maps after the "
        "transformer, predictions, deletion curve, a one-page report.png). OUT/summary.json "
        "lists everything. Unreadable images are reported and skipped (exit status 1).",
    )
    ex.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    ex.add_argument(
        "--checkpoint",
        "-c",
        action="append",
        required=True,
        help="checkpoint path (repeat to compare several)",
    )
    ex.add_argument("--out", required=True, help="output folder (new or empty, or see --overwrite)")
    ex.add_argument(
        "--target",
        metavar="CLASS",
        help="explain this class (a name or an index of each checkpoint's classes) instead "
        "of each image's predicted one: token contributions, deletion curves and "
        "single-token drops follow it",
    )
    ex.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier explain's output in --out (its files are removed first)",
    )
    ex.add_argument("--no-figures", action="store_true", help="arrays and JSON only (fast)")
    ex.add_argument("--svg", action="store_true", help="also write every figure as SVG")
    ex.add_argument(
        "--cmap", type=colour_map, default="jet", help="matplotlib colour map of overlays (jet)"
    )
    ex.add_argument("--alpha", type=float_in(0, 1), default=0.5, help="overlay opacity 0-1 (0.5)")
    ex.add_argument("--no-deletion", action="store_true", help="skip the token-ablation curves")
    ex.add_argument(
        "--random-orders",
        type=int_in(1, 256),
        default=8,
        help="random deletion orders averaged, 1 to 256 (8)",
    )
    ex.add_argument(
        "--randomisation",
        action="store_true",
        help="model-randomisation sanity check per image (Adebayo et al. 2018; slow)",
    )
    ex.add_argument(
        "--masks", metavar="DIR", help="foreground masks DIR/<image stem>.png (non-zero = object)"
    )
    ex.add_argument("--batch-size", type=POSITIVE, default=64, help="images per batch (64)")
    ex.add_argument(
        "--view",
        choices=["model", "letterbox"],
        default="model",
        help="what the model is shown: its own preprocessing (default; the centre crop for "
        "ImageNet models, and every figure is drawn on that crop; summary.json's 'view' gives "
        "its box in the photo's pixels) or the whole photo padded to a square (letterbox)",
    )
    ex.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    ex.set_defaults(func=cmd_explain)


def cmd_tokens(args: argparse.Namespace) -> int:
    """Dataset-level token statistics of one checkpoint."""
    from .analysis import format_score
    from .checkpoint import load_checkpoint
    from .device import select_device
    from .headless import token_statistics, write_token_statistics

    ck = load_checkpoint(args.checkpoint, device=select_device(args.device))
    stats = token_statistics(
        ck,
        args.data,
        args.batch_size,
        deletion_images=args.deletion_images,
        unlabelled=args.unlabelled,
    )
    files = write_token_statistics(stats, args.out)
    acc = stats["accuracy"]
    print(f"{stats['n']} images, " + ("folders unlabelled" if acc is None else f"top-1 {acc:.4f}"))
    for k, kind in enumerate(stats["module_kinds"]):
        dom = stats["dominant"][k]
        wins = [sum(row[t] for row in dom) for t in range(len(dom[0]))]
        ent = stats["entropy_ratio"][k]
        print(
            f"module {k} ({kind}): entropy/uniform mean {sum(ent) / len(ent):.3f}; "
            f"largest group most often: token {wins.index(max(wins))} ({max(wins)} images)"
        )
    if "deletion_score_mean" in stats:
        print(
            f"mean deletion score over {stats['deletion_images']} images: "
            f"{format_score(stats['deletion_score_mean'], 4)}"
        )
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def add_tokens(sub: argparse._SubParsersAction) -> None:
    """The ``tokens`` subcommand's flags."""
    tk = sub.add_parser(
        "tokens",
        help="dataset-level statistics per token and class",
        description="Trace a checkpoint over an ImageFolder dataset and write OUT/tokens.json "
        "(per module, token and class: mean share of the semantic-group map, mean projector "
        "mass, how often the token has the largest group, entropy against a uniform map, "
        "which classes each token fires for) and one token x class heatmap per module "
        "(OUT/tokens_mK.png). The app's 'Dataset statistics' panel reads tokens.json.",
    )
    tk.add_argument("checkpoint", help="checkpoint path")
    tk.add_argument(
        "data",
        help="ImageFolder directory or .tar.gz with the checkpoint's classes (any folders "
        "with --unlabelled)",
    )
    tk.add_argument("--out", required=True, help="output folder")
    tk.add_argument("--batch-size", type=POSITIVE, default=128, help="images per batch (128)")
    tk.add_argument(
        "--deletion-images",
        type=int_in(0),
        default=0,
        metavar="N",
        help="also average the deletion score over the first N images (default 0)",
    )
    tk.add_argument(
        "--unlabelled",
        action="store_true",
        help="the folders are groups of images, not the model's classes (e.g. a CIFAR-10 "
        "model on ImageNet photos): statistics per folder, no accuracy",
    )
    tk.add_argument("--device", default="auto", help="auto (default), cpu, cuda...")
    tk.set_defaults(func=cmd_tokens)
