"""Training: single process or torchrun (DistributedDataParallel), resumable, deterministic
on the CPU for a given seed.

    vt-explorer train --config vt_resnet20 --train data/train.tar.gz --val data/test.tar.gz \
        --out checkpoints/my-vt --epochs 15

Recipe (measured on CIFAR-10, see README): SGD with Nesterov momentum 0.9, one-cycle
learning rate (linear warm-up for ``warmup`` of the steps from lr/25, cosine down to lr/1e4),
weight decay on conv/linear weights only, label smoothing 0.1, random crop (pad 4) + flip on
whole batches on the device, channels_last, flip test-time augmentation at evaluation.

Files beside ``--out NAME``: ``NAME.safetensors`` + ``NAME.json`` (the checkpoint and its
card, written at the end), ``NAME.resume.pt`` (state after the last finished epoch; tensors
only, read back with ``weights_only=True``) and ``NAME.log.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from .checkpoint import atomic_write, save_checkpoint
from .data import (
    augment_batch,
    check_decode_size,
    check_same_classes,
    load_image_folder,
    mirror_at_random,
    normalize,
    resize_batch,
)
from .device import select_device
from .evaluate import evaluate, evaluate_checkpoint
from .features import FeatureSet, compute_features, has_frozen_trunk
from .flags import UserError
from .model import count_complexity, create_model, get_config
from .runs import (
    changed_settings,
    code_version,
    describe_changes,
    hardware,
    lr_at,
    program_name,
    read_resume_state,
    refuse_finished_resume,
)
from .train_recipe import RUN_ONLY_FIELDS, TrainArgs


class _HeadOnly(nn.Module):
    """Wraps a frozen-trunk model so that DDP and the loop see ``features -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.head(features).logits


def backbone_info(model: nn.Module) -> dict[str, Any] | None:
    """Card entry for a pretrained backbone: package, version, weights file checksum."""
    package = model.cfg.extra.get("pretrained")
    if not package:
        return None
    from importlib.metadata import PackageNotFoundError, version

    from .checkpoint import sha256_file
    from .model.efficientnet import pretrained_weights_path

    try:
        ver = version(package)
    except PackageNotFoundError:
        ver = None
    path = pretrained_weights_path()
    return {
        "package": package,
        "version": ver,
        "weights_file": path.name,
        "weights_sha256": sha256_file(path),
        "frozen": bool(model.frozen),
    }


@torch.no_grad()
def _feature_accuracy(model: nn.Module, data: FeatureSet, device: torch.device) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data), 512):
        x = data.features[i : i + 512].to(device).float()
        correct += int((model.head(x).logits.argmax(1).cpu() == data.labels[i : i + 512]).sum())
    return round(correct / max(1, len(data)), 6)


def make_optimizer(model: nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW over the trainable parameters; weight decay on
    weights (ndim >= 2) only. A pretrained trunk's parameters (names starting with the
    model's ``trunk_prefixes``) learn at ``args.backbone_lr_scale`` times the schedule's
    rate: each group carries its ``lr_scale``."""
    prefixes = tuple(getattr(model, "trunk_prefixes", ()))
    trunk, rest = nn.ParameterList(), nn.ParameterList()
    for name, p in model.named_parameters():
        if p.requires_grad:
            (trunk if prefixes and name.startswith(prefixes) else rest).append(p)
    groups = _param_groups(rest, args.weight_decay)
    if len(trunk):
        for g in _param_groups(trunk, args.weight_decay):
            groups.append({**g, "lr_scale": args.backbone_lr_scale})
    groups = [g for g in groups if g["params"]]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum, nesterov=True)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=args.lr)
    raise UserError(f"unknown optimizer {args.optimizer!r} (expected sgd or adamw)")


class TrainInterrupted(RuntimeError):
    """Raised by an ``on_step`` hook to stop a run (tests simulate a kill with it)."""


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def recipe_changes(
    state: dict[str, Any], args: TrainArgs, classes: tuple[str, ...]
) -> dict[str, tuple[Any, Any]]:
    """{setting: (saved, now)} for every recipe setting (and the class list) that differs
    between a resume state and this run; empty when the run may simply continue."""
    changes = changed_settings(state["args"], args, RUN_ONLY_FIELDS)
    if "classes" in state and list(state["classes"]) != list(classes):
        changes["classes"] = (len(state["classes"]), len(classes))
    return changes


def paths_for(out: str | os.PathLike) -> dict[str, Path]:
    """Every file a run writes, keyed by role."""
    stem = Path(out)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    return {
        "stem": stem,
        "resume": stem.with_name(stem.name + ".resume.pt"),
        "log": stem.with_name(stem.name + ".log.jsonl"),
    }


def train(
    args: TrainArgs, on_step: Callable[[int, int], None] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run training; returns the model card written beside ``args.out``.

    ``on_step(epoch, step)`` is called before every optimisation step (for tests).
    """
    rank, local_rank, world = _dist_info()
    distributed = world > 1
    if distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    try:
        return _train(args, rank, local_rank, world, on_step, progress and rank == 0)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """What the stages of one training run share (see :func:`_train`)."""

    args: TrainArgs
    rank: int
    world: int
    device: torch.device
    files: dict[str, Path]
    progress: bool
    model: nn.Module | None = None
    use_features: bool = False
    train_ds: Any = None
    val_ds: Any = None
    classes: tuple[str, ...] = ()
    opt: torch.optim.Optimizer | None = None
    steps_per_epoch: int = 0
    start_epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    elapsed_before: float = 0.0
    resumed_with: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _train(
    args: TrainArgs,
    rank: int,
    local_rank: int,
    world: int,
    on_step: Callable[[int, int], None] | None,
    progress: bool,
) -> dict[str, Any]:
    """The stages of a run: model, data, classes, resume, epochs, card. Each stage is a
    function of the shared :class:`_Run`, testable alone."""
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    if world > 1 and torch.cuda.is_available():
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    else:
        device = select_device(args.device)
    run = _Run(args, rank, world, device, paths_for(args.out), progress)
    # a resume file is read first: a foreign one fails before minutes of decoding
    resume = run.files["resume"]
    if args.resume:
        refuse_finished_resume(run.files["stem"], resume)
    state = read_resume_state(resume) if args.resume and resume.is_file() else None
    prepare_model(run)
    load_data(run)
    fit_classes(run)
    run.opt = make_optimizer(run.model, args)
    run.steps_per_epoch = len(run.train_ds) // world // args.batch_size
    if run.steps_per_epoch < 1:
        raise UserError(
            f"{args.train}: {len(run.train_ds)} images are fewer than one batch of "
            f"{args.batch_size} per process; lower --batch-size"
        )
    if state is not None:
        resume_from(run, state)
    elif args.resume and run.main:
        print(f"no resume state at {resume}; starting from scratch")
    fit(run, on_step, t_start)
    return write_card(run, t_start) if run.main else {}


def prepare_model(run: _Run) -> None:
    """The config (with --set and --finetune), the seeded model and its pretrained weights;
    whether it trains on cached features (a frozen trunk) or on images."""
    args = run.args
    cfg = get_config(args.config)
    if args.overrides:
        cfg = cfg.replace(**args.overrides)
    if args.finetune:
        if "freeze_backbone" not in cfg.extra:
            raise UserError(f"--finetune: {cfg.name} has no frozen backbone to fine-tune")
        # the card then says so, and a loaded checkpoint keeps its trunk trainable
        cfg = cfg.replace(extra={**cfg.extra, "freeze_backbone": False})
    torch.manual_seed(args.seed)
    run.model = create_model(cfg)
    if cfg.extra.get("pretrained") and args.pretrained:
        run.model.load_pretrained()
    run.use_features = has_frozen_trunk(run.model)
    if args.decode_size is not None:
        check_decode_size(
            args.decode_size, cfg.input_size, cfg.extra.get("interpolation", "bicubic")
        )


def load_data(run: _Run) -> None:
    """Training and validation data (cached trunk features or decoded images); with several
    processes rank 0 decodes (and fills the cache) first, the others then read the cache."""
    args, model = run.args, run.model
    cfg = model.cfg

    def load(p: str):
        if run.use_features:
            return compute_features(
                model,
                p,
                args.resize,
                run.device,
                workers=args.workers,
                progress=run.progress,
                decode_size=args.decode_size,
            )
        return load_image_folder(
            p,
            args.decode_size or cfg.input_size,
            args.resize,
            progress=run.progress,
            workers=args.workers,
            interpolation=cfg.extra.get("interpolation", "bicubic"),
        )

    if run.world > 1 and not run.main:
        dist.barrier()
    run.train_ds = load(args.train)
    run.val_ds = load(args.val) if args.val else None
    if run.world > 1 and run.main:
        dist.barrier()
    if run.val_ds is not None:
        check_same_classes(run.train_ds, run.val_ds)
    run.classes = tuple(run.train_ds.classes)


def fit_classes(run: _Run) -> None:
    """A new classifier when the data's classes are not the config's; every other weight
    (pretrained ones included) is kept. Then the model goes to its device."""
    cfg, classes = run.model.cfg, run.classes
    if len(classes) != cfg.num_classes or classes != cfg.classes:
        old_state = run.model.state_dict()
        torch.manual_seed(run.args.seed)
        run.model = create_model(cfg, num_classes=len(classes), classes=classes)
        new_state = run.model.state_dict()
        keep = {k: v for k, v in old_state.items() if new_state[k].shape == v.shape}
        run.model.load_state_dict(keep, strict=False)
    run.model.to(run.device, memory_format=torch.channels_last)


def resume_from(run: _Run, state: dict[str, Any]) -> None:
    """Continue after the last finished epoch of ``state``: refused (one line listing what
    differs) for another recipe unless --resume-anyway, and always for other classes."""
    path = run.files["resume"]
    changes = recipe_changes(state, run.args, run.classes)
    if changes and not run.args.resume_anyway:
        raise UserError(
            f"{path}: --resume with a different recipe ({describe_changes(changes)}); re-run "
            "with the interrupted run's settings, or add --resume-anyway"
        )
    if "classes" in changes:
        raise UserError(f"{path}: saved for other classes; cannot resume")
    try:
        run.model.load_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise UserError(f"{path}: does not fit this model ({first})") from None
    run.start_epoch = int(state["epoch"]) + 1
    run.history = json.loads(state["history"])
    run.elapsed_before = float(state["elapsed"])
    run.resumed_with = {k: new for k, (_old, new) in changes.items()}
    if run.main:
        print(f"resuming {run.files['stem']} after epoch {run.start_epoch}/{run.args.epochs}")


def fit(run: _Run, on_step: Callable[[int, int], None] | None, t_start: float) -> None:
    """Every remaining epoch: train, evaluate, log and write the resume state."""
    args, model = run.args, run.model
    net: nn.Module = _HeadOnly(model) if run.use_features else model
    if run.world > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    fwd = torch.compile(net) if args.compile else net
    data = (run.train_ds.features if run.use_features else run.train_ds.images).to(run.device)
    labels = run.train_ds.labels.to(run.device)
    for epoch in range(run.start_epoch, args.epochs):
        net.train()
        record = train_epoch(run, fwd, data, labels, epoch, on_step)
        if run.resumed_with and epoch == run.start_epoch:
            record["recipe_changed"] = run.resumed_with  # from this epoch on (--resume-anyway)
        if run.val_ds is not None and run.main:
            record["val_acc"] = _val_accuracy(run)
        if run.main:
            _end_epoch(run, record, epoch, t_start)
        if run.world > 1:
            dist.barrier()


def train_epoch(
    run: _Run,
    fwd: nn.Module,
    data: Tensor,
    labels: Tensor,
    epoch: int,
    on_step: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """One epoch of optimisation steps; returns its record (loss, accuracy, rate...)."""
    args, device, world, rank = run.args, run.device, run.world, run.rank
    cfg, opt = run.model.cfg, run.opt
    total_steps = run.steps_per_epoch * args.epochs
    g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    perm = torch.randperm(len(run.train_ds), generator=g)
    perm = perm[: run.steps_per_epoch * args.batch_size * world][rank::world]
    aug_gen = torch.Generator().manual_seed(args.seed * 1000 + epoch * 100 + rank + 17)
    pad = max(1, data.shape[-1] // 8)  # 4 at 32x32
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    use_amp = args.amp and device.type == "cuda"
    t0 = time.time()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    bar = tqdm(
        range(run.steps_per_epoch),
        desc=f"epoch {epoch + 1}/{args.epochs}",
        disable=not run.progress,
        unit="step",
        dynamic_ncols=True,
    )
    for step in bar:
        if on_step is not None:
            on_step(epoch, step)
        lr = lr_at(epoch * run.steps_per_epoch + step, total_steps, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        idx = perm[step * args.batch_size : (step + 1) * args.batch_size].to(device)
        if run.use_features:
            x = data[idx].float()
            if args.feature_flip:
                x = mirror_at_random(x, aug_gen)
        else:
            x = augment_batch(data[idx], aug_gen, pad)
            if x.shape[-1] != cfg.input_size:  # --decode-size
                x = resize_batch(x, cfg.input_size)
            x = normalize(x, cfg.mean, cfg.std)
        y = labels[idx]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = fwd(x)
            loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise UserError(
                f"training diverged: the loss is {loss.item()} at epoch {epoch + 1}, step "
                f"{step + 1} (lr {lr:.3g}); lower --lr. No checkpoint was written."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if run.progress and (step % 10 == 0 or step == run.steps_per_epoch - 1):
            rate = seen * world / max(time.time() - t0, 1e-9)
            bar.set_postfix(
                loss=f"{loss_sum.item() / seen:.3f}",
                acc=f"{correct.item() / seen:.3f}",
                img_s=f"{rate:.0f}",
                lr=f"{opt.param_groups[0]['lr']:.3g}",
            )
    bar.close()
    stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device)])
    if world > 1:
        dist.all_reduce(stats)
    epoch_time = time.time() - t0
    return {
        "epoch": epoch + 1,
        "train_loss": round(stats[0].item() / stats[2].item(), 6),
        "train_acc": round(stats[1].item() / stats[2].item(), 6),
        "lr": opt.param_groups[0]["lr"],
        "images_per_s": round(stats[2].item() / epoch_time, 1),
        "epoch_seconds": round(epoch_time, 2),
    }


def _val_accuracy(run: _Run) -> float:
    if run.use_features:
        return _feature_accuracy(run.model, run.val_ds, run.device)
    cfg = run.model.cfg
    m = evaluate(
        run.model,
        run.val_ds,
        cfg.mean,
        cfg.std,
        run.device,
        list(run.classes),
        resize_to=cfg.input_size,
    )
    return m["accuracy"]


def _end_epoch(run: _Run, record: dict[str, Any], epoch: int, t_start: float) -> None:
    """Print and log the epoch, and write the resume state (atomically)."""
    run.history.append(record)
    msg = ", ".join(f"{k} {v}" for k, v in record.items() if k != "epoch")
    print(f"epoch {epoch + 1}/{run.args.epochs}: {msg}", flush=True)
    run.files["stem"].parent.mkdir(parents=True, exist_ok=True)
    with open(run.files["log"], "a") as f:
        f.write(json.dumps(record) + "\n")
    state = {
        "classes": list(run.classes),
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "epoch": epoch,
        "args": dataclasses.asdict(run.args),
        "history": json.dumps(run.history),
        "elapsed": run.elapsed_before + time.time() - t_start,
    }
    atomic_write(run.files["resume"], lambda tmp, s=state: torch.save(s, tmp))


def write_card(run: _Run, t_start: float) -> dict[str, Any]:
    """Save the checkpoint and its card, then evaluate it through ``eval``'s own code path
    and make that the card's metrics (``finished`` is false until then)."""
    args, model, files = run.args, run.model, run.files
    cfg = model.cfg
    wall = run.elapsed_before + time.time() - t_start
    cost = count_complexity(model.to("cpu").eval(), cfg.input_size)
    card = {
        "dataset": {
            "train": run.train_ds.describe(),
            "val": run.val_ds.describe() if run.val_ds is not None else None,
        },
        "recipe": {**dataclasses.asdict(args), "world_size": run.world},
        "eval": {"flip_tta": args.flip_tta},
        "backbone": backbone_info(model),
        "trained_on": "cached trunk features" if run.use_features else "images",
        "metrics": {},
        # false until the final evaluation has written its metrics: a run killed in
        # between leaves a checkpoint that loaders refuse as unfinished
        "finished": run.val_ds is None,
        "complexity": cost.to_dict(),
        "history": run.history,
        "train_seconds": round(wall, 1),
        "hardware": hardware(),
        "command": shlex.join([program_name(), *sys.argv[1:]]),
        "code_version": code_version(),
        "torch_version": torch.__version__,
    }
    save_checkpoint(model, files["stem"], card, resize=args.resize)
    metrics: dict[str, Any] = {}
    if run.val_ds is not None:  # the same code path as `vt-explorer eval`
        # (features, or images at --decode-size: then the checkpoint reads them again)
        data = args.val if run.use_features or args.decode_size else run.val_ds
        metrics = evaluate_checkpoint(
            str(files["stem"]), data, run.device, progress=run.progress, allow_unfinished=True
        )
        card["metrics"] = metrics
        card["finished"] = True
        save_checkpoint(model, files["stem"], card, resize=args.resize)
    files["resume"].unlink(missing_ok=True)
    if metrics:
        print(f"{files['stem']}: top-1 {metrics['accuracy']:.4f} on {metrics['n']} images")
    return card
