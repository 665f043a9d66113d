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
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import _atomic_write, save_checkpoint
from .data import (
    augment_batch,
    check_decode_size,
    check_same_classes,
    load_image_folder,
    normalize,
    resize_batch,
)
from .device import select_device
from .evaluate import evaluate, evaluate_checkpoint
from .features import FeatureSet, compute_features, has_frozen_trunk
from .flags import POSITIVE, REQUIRED, flag, float_in, int_in
from .model import count_complexity, create_model, get_config


@dataclass
class TrainArgs:
    """Every knob of a training run. Each field is a ``vt-explorer train`` flag: its default
    and help are written here once (:func:`vt_explorer.flags.flag`)."""

    config: str = flag(REQUIRED, "registered model config (vt-explorer info)")
    train: str = flag(REQUIRED, "training images", metavar="PATH")
    out: str = flag(REQUIRED, "checkpoint path without suffix", metavar="OUT")
    val: str | None = flag(None, "evaluation images (same class folders)", metavar="PATH")
    epochs: int = flag(15, "passes over the data", type=POSITIVE)
    batch_size: int = flag(128, "images per step and process", type=POSITIVE)
    lr: float = flag(0.1, "peak one-cycle learning rate", type=float_in(0, 100, lo_open=True))
    momentum: float = flag(0.9, "Nesterov momentum", type=float_in(0, 1, hi_open=True))
    optimizer: str = flag("sgd", "SGD with Nesterov momentum or AdamW (try --lr 1e-3 "
                          "--weight-decay 0.05)", choices=("sgd", "adamw"))  # fmt: skip
    weight_decay: float = flag(5e-4, "on weights only", type=float_in(0, 10))
    label_smoothing: float = flag(0.1, "label smoothing", type=float_in(0, 1, hi_open=True))
    warmup: float = flag(0.2, "fraction of steps spent warming up", type=float_in(0, 1))
    seed: int = flag(0, "seed; CPU runs are deterministic", type=int_in(0, 2**31 - 1))
    device: str = flag("auto", "auto (CUDA, MPS, CPU), cpu, cuda, cuda:1...")
    workers: int = flag(2, "threads decoding images on the first read of a dataset",
                        type=int_in(1, 64))  # fmt: skip
    flip_tta: bool = flag(True, "no flip test-time augmentation at evaluation", name="--no-tta")
    amp: bool = flag(True, "no bf16 autocast on CUDA (the CPU never uses it)")
    compile: bool = flag(False, "torch.compile the model")
    threads: int | None = flag(None, "torch CPU threads (default: all)", type=int_in(1, 1024))
    resume: bool = flag(False, "continue from OUT.resume.pt; refused when the recipe or the "
                        "classes differ from the interrupted run's (the refusal lists what "
                        "differs)")  # fmt: skip
    resume_anyway: bool = flag(False, "with --resume: accept a changed recipe; the card then "
                               "records, per epoch, which settings changed from which epoch "
                               "on")  # fmt: skip
    resize: str = flag("stretch", "how images become the config's input square: the whole "
                       "image (stretch) or short side to 8/7 of it and the centre cut out "
                       "(center_crop); the card records it, so eval, predict and the app do "
                       "the same", choices=("stretch", "center_crop"))  # fmt: skip
    pretrained: bool = flag(True, "start a config with a pretrained backbone (vt_lite0...) "
                            "from random weights")  # fmt: skip
    finetune: bool = flag(False, "train the pretrained backbone too (slow on a CPU; default: "
                          "frozen, its features computed once and cached, and only the VT "
                          "head trained)")  # fmt: skip
    feature_flip: bool = flag(True, "no random mirroring of cached feature maps (the "
                              "augmentation of head training)")  # fmt: skip
    backbone_lr_scale: float = flag(1.0, "with --finetune: the pretrained trunk learns at F x "
                                    "the schedule's rate (0.1 keeps ImageNet features while "
                                    "a new head learns fast)", type=float_in(0, 100),
                                    metavar="F")  # fmt: skip
    decode_size: int | None = flag(None, "decode training images at NxN and enlarge each batch "
                                   "to the input size on the device (bilinear configs; "
                                   "images or a frozen trunk's cached features): for small "
                                   "sources like CIFAR's 32x32 it skips decoding 224x224 "
                                   "copies (minutes, 7.5 GB for CIFAR-10 train); the final "
                                   "evaluation still decodes as eval does",
                                   type=int_in(8, 4096), metavar="N")  # fmt: skip
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # --set KEY=VALUE


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
        "frozen": bool(getattr(model, "frozen", False)),
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
    raise ValueError(f"unknown optimizer {args.optimizer!r} (expected sgd or adamw)")


class TrainInterrupted(RuntimeError):
    """Raised by an ``on_step`` hook to stop a run (tests simulate a kill with it)."""


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """One-cycle learning rate at ``step`` of ``total``."""
    w = max(1, int(total * warmup))
    if step < w:
        return peak / 25 + (peak - peak / 25) * step / w
    t = (step - w) / max(1, total - w)
    return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * t))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def hardware() -> str:
    """A one-line description of the machine (GPU name, or CPU model and cores)."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads (CPU)"


def code_version() -> str:
    """git commit of the source tree (with -dirty), or the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{__version__}+{rev}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def _program_name() -> str:
    """How the running command was called (``python -m vt_explorer`` counts as vt-explorer)."""
    name = Path(sys.argv[0]).name
    return "vt-explorer" if name in ("__main__.py", "vt-explorer", "") else name


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


#: TrainArgs fields that say where and how fast a run goes, not what it learns: a resumed
#: run may change them freely
RUN_ONLY_FIELDS = frozenset(
    {"out", "val", "device", "workers", "threads", "compile", "resume", "resume_anyway"}
)


def read_resume_state(path: Path) -> dict[str, Any]:
    """A resume file written by :func:`train` (tensors and plain data only: loaded with
    ``weights_only=True``, never unpickled); ValueError with one line otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes about a foreign file
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, zip errors...
        raise ValueError(
            f"{path}: not a resume state written by vt-explorer train ({type(err).__name__}); "
            "delete it to start from scratch"
        ) from None
    need = {"model", "optimizer", "epoch", "args", "history", "elapsed"}
    if not isinstance(state, dict) or not need <= set(state) or not isinstance(state["args"], dict):
        raise ValueError(f"{path}: not a resume state written by vt-explorer train")
    return state


def recipe_changes(
    state: dict[str, Any], args: TrainArgs, classes: tuple[str, ...]
) -> dict[str, tuple[Any, Any]]:
    """{setting: (saved, now)} for every recipe setting (and the class list) that differs
    between a resume state and this run; empty when the run may simply continue."""
    now = dataclasses.asdict(args)
    saved = state["args"]
    changes = {
        k: (saved.get(k), v)
        for k, v in now.items()
        if k not in RUN_ONLY_FIELDS and saved.get(k, v) != v
    }
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


def _train(
    args: TrainArgs,
    rank: int,
    local_rank: int,
    world: int,
    on_step: Callable[[int, int], None] | None,
    progress: bool,
) -> dict[str, Any]:
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    if world > 1 and torch.cuda.is_available():
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    else:
        device = select_device(args.device)
    cfg = get_config(args.config)
    if args.overrides:
        cfg = cfg.replace(**args.overrides)
    files = paths_for(args.out)
    main = rank == 0
    # a resume file is read first: a foreign one fails before minutes of decoding
    state = (
        read_resume_state(files["resume"]) if args.resume and files["resume"].is_file() else None
    )
    interpolation = cfg.extra.get("interpolation", "bicubic")

    # the model first (its frozen trunk decides between images and cached features)
    if args.finetune:
        if "freeze_backbone" not in cfg.extra:
            raise ValueError(f"--finetune: {cfg.name} has no frozen backbone to fine-tune")
        # the card then says so, and a loaded checkpoint keeps its trunk trainable
        cfg = cfg.replace(extra={**cfg.extra, "freeze_backbone": False})
    torch.manual_seed(args.seed)
    model = create_model(cfg)
    if cfg.extra.get("pretrained") and args.pretrained:
        model.load_pretrained()
    use_features = has_frozen_trunk(model)
    if args.decode_size is not None:
        check_decode_size(args.decode_size, cfg.input_size, interpolation)

    # data: rank 0 decodes (and fills the cache) first, the others then read the cache
    def load(p: str):
        if use_features:
            return compute_features(
                model,
                p,
                args.resize,
                device,
                workers=args.workers,
                progress=progress,
                decode_size=args.decode_size,
            )
        return load_image_folder(
            p,
            args.decode_size or cfg.input_size,
            args.resize,
            progress=progress,
            workers=args.workers,
            interpolation=interpolation,
        )

    if world > 1 and not main:
        dist.barrier()
    train_ds = load(args.train)
    val_ds = load(args.val) if args.val else None
    if world > 1 and main:
        dist.barrier()
    if val_ds is not None:
        check_same_classes(train_ds, val_ds)
    classes = tuple(train_ds.classes)
    if len(classes) != cfg.num_classes or classes != cfg.classes:
        # a new classifier for these classes; everything else (pretrained weights) is kept
        old_state = model.state_dict()
        torch.manual_seed(args.seed)
        model = create_model(cfg, num_classes=len(classes), classes=classes)
        new_state = model.state_dict()
        keep = {k: v for k, v in old_state.items() if new_state[k].shape == v.shape}
        model.load_state_dict(keep, strict=False)
    mean, std = model.cfg.mean, model.cfg.std
    model.to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, args)
    steps_per_epoch = len(train_ds) // world // args.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"{args.train}: {len(train_ds)} images are fewer than one batch of "
            f"{args.batch_size} per process; lower --batch-size"
        )
    total_steps = steps_per_epoch * args.epochs
    start_epoch, history, elapsed_before = 0, [], 0.0
    resumed_with: dict[str, Any] = {}  # --resume-anyway: the settings that changed

    if state is not None:
        changes = recipe_changes(state, args, classes)
        if changes and not args.resume_anyway:
            raise ValueError(
                f"{files['resume']}: --resume with a different recipe ("
                + "; ".join(f"{k}: {old} -> {new}" for k, (old, new) in changes.items())
                + "); re-run with the interrupted run's settings, or add --resume-anyway"
            )
        if "classes" in changes:
            raise ValueError(f"{files['resume']}: saved for other classes; cannot resume")
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0][:200]
            raise ValueError(f"{files['resume']}: does not fit this model ({first})") from None
        start_epoch = int(state["epoch"]) + 1
        history = json.loads(state["history"])
        elapsed_before = float(state["elapsed"])
        if changes:
            resumed_with = {k: new for k, (_old, new) in changes.items()}
        if main:
            print(f"resuming {files['stem']} after epoch {start_epoch}/{args.epochs}")
    elif args.resume and main:
        print(f"no resume state at {files['resume']}; starting from scratch")

    net: nn.Module = _HeadOnly(model) if use_features else model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    fwd = torch.compile(net) if args.compile else net
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    use_amp = args.amp and device.type == "cuda"
    train_images = (train_ds.features if use_features else train_ds.images).to(device)
    train_labels = train_ds.labels.to(device)
    pad = max(1, train_images.shape[-1] // 8)  # 4 at 32x32

    for epoch in range(start_epoch, args.epochs):
        net.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        perm = torch.randperm(len(train_ds), generator=g)
        perm = perm[: steps_per_epoch * args.batch_size * world][rank::world]
        aug_gen = torch.Generator().manual_seed(args.seed * 1000 + epoch * 100 + rank + 17)
        t0 = time.time()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{args.epochs}",
            disable=not progress,
            unit="step",
            dynamic_ncols=True,
        )
        for step in bar:
            if on_step is not None:
                on_step(epoch, step)
            global_step = epoch * steps_per_epoch + step
            lr = lr_at(global_step, total_steps, args.lr, args.warmup)
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            idx = perm[step * args.batch_size : (step + 1) * args.batch_size].to(device)
            if use_features:
                x = train_images[idx].float()
                if args.feature_flip:
                    flip = (torch.rand(len(idx), generator=aug_gen) < 0.5).to(device)
                    x = torch.where(flip[:, None, None, None], x.flip(3), x)
            else:
                x = augment_batch(train_images[idx], aug_gen, pad)
                if x.shape[-1] != cfg.input_size:  # --decode-size
                    x = resize_batch(x, cfg.input_size)
                x = normalize(x, mean, std)
            y = train_labels[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = fwd(x)
                loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"training diverged: the loss is {loss.item()} at epoch {epoch + 1}, step "
                    f"{step + 1} (lr {lr:.3g}); lower --lr. No checkpoint was written."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if progress and (step % 10 == 0 or step == steps_per_epoch - 1):
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
        record = {
            "epoch": epoch + 1,
            "train_loss": round(stats[0].item() / stats[2].item(), 6),
            "train_acc": round(stats[1].item() / stats[2].item(), 6),
            "lr": opt.param_groups[0]["lr"],
            "images_per_s": round(stats[2].item() / epoch_time, 1),
            "epoch_seconds": round(epoch_time, 2),
        }
        if resumed_with and epoch == start_epoch:
            record["recipe_changed"] = resumed_with  # from this epoch on (--resume-anyway)
        if val_ds is not None and main:
            if use_features:
                record["val_acc"] = _feature_accuracy(model, val_ds, device)
            else:
                m = evaluate(
                    model, val_ds, mean, std, device, list(classes), resize_to=cfg.input_size
                )
                record["val_acc"] = m["accuracy"]
        if main:
            history.append(record)
            msg = ", ".join(f"{k} {v}" for k, v in record.items() if k != "epoch")
            print(f"epoch {epoch + 1}/{args.epochs}: {msg}", flush=True)
            files["stem"].parent.mkdir(parents=True, exist_ok=True)
            with open(files["log"], "a") as f:
                f.write(json.dumps(record) + "\n")
            state = {
                "classes": list(classes),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "args": dataclasses.asdict(args),
                "history": json.dumps(history),
                "elapsed": elapsed_before + time.time() - t_start,
            }
            _atomic_write(files["resume"], lambda tmp, s=state: torch.save(s, tmp))
        if world > 1:
            dist.barrier()

    card: dict[str, Any] = {}
    if main:
        wall = elapsed_before + time.time() - t_start
        cost = count_complexity(model.to("cpu").eval(), cfg.input_size)
        card = {
            "dataset": {
                "train": train_ds.describe(),
                "val": val_ds.describe() if val_ds is not None else None,
            },
            "recipe": {**dataclasses.asdict(args), "world_size": world},
            "eval": {"flip_tta": args.flip_tta},
            "backbone": backbone_info(model),
            "trained_on": "cached trunk features" if use_features else "images",
            "metrics": {},
            # false until the final evaluation has written its metrics: a run killed in
            # between leaves a checkpoint that loaders refuse as unfinished
            "finished": val_ds is None,
            "complexity": cost.to_dict(),
            "history": history,
            "train_seconds": round(wall, 1),
            "hardware": hardware(),
            "command": shlex.join([_program_name(), *sys.argv[1:]]),
            "code_version": code_version(),
            "torch_version": torch.__version__,
        }
        save_checkpoint(model, files["stem"], card, resize=args.resize)
        metrics: dict[str, Any] = {}
        if val_ds is not None:  # the same code path as `vt-explorer eval`
            # (features, or images at --decode-size: then the checkpoint reads them again)
            data = args.val if use_features or args.decode_size else val_ds
            metrics = evaluate_checkpoint(
                str(files["stem"]), data, device, progress=progress, allow_unfinished=True
            )
            card["metrics"] = metrics
            card["finished"] = True
            save_checkpoint(model, files["stem"], card, resize=args.resize)
        files["resume"].unlink(missing_ok=True)
        if metrics:
            print(f"{files['stem']}: top-1 {metrics['accuracy']:.4f} on {metrics['n']} images")
    return card
