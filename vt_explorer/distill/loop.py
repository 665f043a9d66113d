"""The distillation loop: build the student, teacher, pool and views; step; evaluate the
held-out sets every ``eval_every`` views (the card's learning curve) and save a resume
state; write the checkpoint and its card."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoint import atomic_write, load_checkpoint, save_checkpoint
from ..device import select_device
from ..features import FeatureSet
from ..flags import UserError
from ..model import create_model, get_config
from ..model.efficientnet import EfficientNetLite0
from ..model.teacher import TEACHER, label_views, teacher_model
from ..runs import (
    changed_settings,
    code_version,
    config_changes,
    describe_changes,
    hardware,
    lr_at,
    read_resume_state,
    refuse_finished_resume,
)
from .losses import distill_loss
from .pool import Pool, find_wnids
from .recipe import RUN_ONLY, DistillArgs, check_recipe
from .views import ImageCrops, Views, make_views

#: what a ``distill`` resume state holds
STATE_KEYS = frozenset(
    {"model", "optimizer", "generator", "step", "curve", "elapsed", "loss_avg", "args"}
)


def distill(
    args: DistillArgs,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run a distillation; returns the card written beside ``args.out`` (see the package
    doc). ``on_step(step)`` is called before every optimisation step (tests stop runs
    with it)."""
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    wnids = find_wnids(args)
    cfg = get_config(args.student)
    if args.overrides:
        cfg = cfg.replace(**args.overrides)
    if args.reuse_classifier:
        cfg = cfg.replace(extra={**cfg.extra, "reuse_classifier": True})
    check_recipe(args, cfg, device)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    resume_path = stem.with_name(stem.name + ".resume.pt")
    log_path = stem.with_name(stem.name + ".log.jsonl")

    if args.resume:
        refuse_finished_resume(stem, resume_path)
    torch.manual_seed(args.seed)
    student = create_model(cfg)
    student.load_pretrained()
    init = init_from(student, args.init) if args.init else None
    teacher = teacher_model(device, fold=True, student=student)  # labels every view
    pool = Pool.build(args, student, wnids, device, progress)
    side = cfg.input_size // 16
    crops = None
    if pool.images is not None:
        trunk = student.folded().to(device, memory_format=torch.channels_last)
        crops = ImageCrops(
            pool.images, trunk, cfg.mean, cfg.std, side * 16, args.min_scale, bf16=args.bf16
        )  # its share of each batch: make_views
    views = make_views(args, teacher, pool.bank, pool.hard, side, pool.real, crops)
    student.to(device).train()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps = max(1, args.samples // args.batch_size)
    step, curve, elapsed_before = 0, [], 0.0
    loss_avg: float | None = None
    g = torch.Generator().manual_seed(args.seed)
    if args.resume and resume_path.is_file():
        state = read_state(resume_path, args)
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        step, curve = int(state["step"]), json.loads(state["curve"])
        elapsed_before = float(state["elapsed"])
        loss_avg = float(state["loss_avg"])
        if progress:
            print(f"resuming {stem} after {step * args.batch_size} samples")

    eval_steps = max(1, args.eval_every // args.batch_size)
    bar = tqdm(total=steps, initial=step, desc="distill", unit="step", disable=not progress)
    while step < steps:
        if on_step is not None:
            on_step(step)
        lr = lr_at(step, steps, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = distill_step(args, student, teacher, opt, views, g)
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_avg:.3f}", lr=f"{lr:.2g}")
        if step % eval_steps == 0 or step == steps:
            seconds = elapsed_before + time.time() - t_start
            point: dict[str, Any] = {
                "samples": step * args.batch_size,
                "loss": round(loss_avg, 5),
                "seconds": round(seconds, 1),
            }
            for src, fs, labels in pool.holdouts:
                point[Path(src).name] = holdout_metrics(student, teacher, fs, labels, device)
            curve.append(point)
            if progress:
                shown = {k: v["agreement"] for k, v in point.items() if isinstance(v, dict)}
                tqdm.write(f"{point['samples']} samples: loss {loss_avg:.3f}, agreement {shown}")
            state = {
                "model": student.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": g.get_state(),
                "step": step,
                "curve": json.dumps(curve),
                "elapsed": seconds,
                "loss_avg": loss_avg,
                "args": dataclasses.asdict(args),
            }
            with open(log_path, "a") as f:
                f.write(json.dumps(point) + "\n")
            atomic_write(resume_path, lambda tmp, s=state: torch.save(s, tmp))
    bar.close()
    card = write_card(
        args, student, wnids, pool, views, curve, elapsed_before + time.time() - t_start, init
    )
    resume_path.unlink(missing_ok=True)
    return card


def distill_step(
    args: DistillArgs,
    student: nn.Module,
    teacher: EfficientNetLite0,
    opt: torch.optim.Optimizer,
    views: Views,
    g: torch.Generator,
) -> Tensor:
    """One optimisation step: a batch of fresh ``views``, labelled by the teacher
    (:func:`~vt_explorer.model.teacher.label_views`), the student's forward pass on the same
    maps, :func:`~vt_explorer.distill.losses.distill_loss`; returns the loss."""
    device = next(student.parameters()).device
    x, y = views(args.batch_size, g, device)
    t_feature, t_logits = label_views(teacher, x, args.bf16)
    recording = student.recording_feature() if args.feature_weight > 0 else nullcontext([])
    with recording as projected, torch.autocast(device.type, torch.bfloat16, enabled=args.bf16):
        out = student.head(x, need_weights=args.diversity_weight > 0 or args.balance_weight > 0)
    loss = distill_loss(
        args,
        out.logits.float(),
        t_logits,
        y,
        token_maps=[m.tokenizer_attention for m in out.modules],
        s_feature=projected[0] if projected else None,
        t_feature=t_feature,
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


@torch.no_grad()
def holdout_metrics(
    student: nn.Module,
    teacher: EfficientNetLite0,
    fs: FeatureSet,
    labels: Tensor,
    device: torch.device | str,
    bs: int = 256,
) -> dict[str, float | None]:
    """Top-1 agreement with the teacher, and top-1 / top-5 of both against the wnid folder
    labels (None for an unlabelled source), on a held-out feature set (centre view)."""
    student.eval()
    agree = s1 = s5 = t1 = t5 = 0
    for i in range(0, len(fs), bs):
        x = fs.features[i : i + bs].to(device).float()
        y = labels[i : i + bs].to(device)
        s = student.head(x).logits
        t = teacher.tail(x)
        agree += int((s.argmax(1) == t.argmax(1)).sum())
        s_top = s.topk(5, 1).indices
        t_top = t.topk(5, 1).indices
        s1 += int((s_top[:, 0] == y).sum())
        t1 += int((t_top[:, 0] == y).sum())
        s5 += int((s_top == y[:, None]).any(1).sum())
        t5 += int((t_top == y[:, None]).any(1).sum())
    student.train()
    out: dict[str, float | None] = {"n": len(fs), "agreement": round(agree / max(1, len(fs)), 6)}
    labelled = int((labels >= 0).sum())
    for k, v in (("top1", s1), ("top5", s5), ("teacher_top1", t1), ("teacher_top5", t5)):
        out[k] = round(v / labelled, 6) if labelled else None  # unlabelled sources: agreement only
    return out


def read_state(path: Path, args: DistillArgs) -> dict[str, Any]:
    """The resume state at ``path``, refused (UserError) for another recipe."""
    state = read_resume_state(path, STATE_KEYS, "vt-explorer distill")
    diff = changed_settings(state["args"], args, RUN_ONLY)
    if diff:
        raise UserError(f"{path}: --resume with a different recipe ({describe_changes(diff)})")
    return state


def init_from(student: nn.Module, path: str) -> dict[str, Any]:
    """Load ``path``'s weights into ``student`` (``--init``); returns what the card records.
    A checkpoint of another config, or of the same config with other settings, is refused
    (UserError) naming what differs."""
    ck = load_checkpoint(path)
    if ck.config.name != student.cfg.name:
        raise UserError(
            f"--init {path}: a {ck.config.name} checkpoint, not the student {student.cfg.name}"
        )
    if ck.config != student.cfg:
        diff = describe_changes(config_changes(ck.config, student.cfg))
        raise UserError(
            f"--init {path}: a {ck.config.name} checkpoint with other settings than the "
            f"student's ({diff})"
        )
    student.load_state_dict(ck.model.state_dict())
    done = ck.card.get("distillation", {})
    return {
        "checkpoint": Path(path).name,
        "weights_sha256": ck.card.get("weights_sha256"),
        "samples_in_all": int(done.get("samples_in_all", done.get("samples", 0))),
    }


def write_card(
    args: DistillArgs,
    student: nn.Module,
    wnids: list[str],
    pool: Pool,
    views: Views,
    curve: list[dict[str, Any]],
    seconds: float,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save the student beside ``args.out`` with its card: the teacher, the pool and
    held-out sets, the loss weights and views, the recipe, the learning curve and the last
    held-out metrics, provenance. Returns the card."""
    metrics = curve[-1] if curve else {}
    dilated = student.cfg.extra.get("output_stride", 32) == 16
    card: dict[str, Any] = {
        "teacher": {
            "model": TEACHER,
            "package": student.cfg.extra.get("pretrained"),
            "part": f"blocks {student.trunk_blocks}-15 + head, on the student's own trunk "
            "features" + (", at output stride 16 (dilated)" if dilated else ""),
        },
        "wnids": wnids,
        "dataset": pool.describe(args.holdout_limit),
        "distillation": {
            "temperature": args.temperature,
            "ce_weight": args.ce_weight,
            "diversity_weight": args.diversity_weight,
            "diversity_margin": args.diversity_margin,
            "balance_weight": args.balance_weight,
            "balance_groups": args.balance_groups,
            "reuse_classifier": args.reuse_classifier,
            "kd_weight": args.kd_weight,
            "feature_weight": args.feature_weight,
            "views": views.describe(),
            "samples": (curve[-1]["samples"] if curve else 0),
            "bank_size": args.bank_size,
        },
        "recipe": dataclasses.asdict(args),
        "learning_curve": curve,
        "metrics": {"holdout": {k: v for k, v in metrics.items() if isinstance(v, dict)}},
        "eval": {"flip_tta": False},
        "finished": True,
        "train_seconds": round(seconds, 1),
        "hardware": hardware(),
        "command": shlex.join(["vt-explorer", *sys.argv[1:]]),
        "code_version": code_version(),
        "torch_version": torch.__version__,
    }
    if init is not None:
        card["init"] = init
        card["distillation"]["samples_in_all"] = (
            init["samples_in_all"] + card["distillation"]["samples"]
        )
    save_checkpoint(student.to("cpu").eval(), args.out, card, resize="center_crop")
    return card
