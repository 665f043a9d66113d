"""Evaluation: top-1, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageDataset, fixed_sample, load_image_folder, normalize, resize_batch
from .device import inference_batch
from .flags import UserError


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    mean: tuple,
    std: tuple,
    device: torch.device,
    batch_size: int = 256,
    flip_tta: bool = False,
    progress: bool = False,
    resize_to: int | None = None,
) -> torch.Tensor:
    """Logits (N, K) for uint8 images (N, 3, S, S); ``flip_tta`` averages the logits of the
    image and its mirror; ``resize_to`` enlarges each batch on the device first
    (:func:`~vt_explorer.data.resize_batch`). Deterministic for a given model and input. On
    a CPU the batch is capped by :func:`~vt_explorer.device.inference_batch` (same logits,
    up to 3x faster for 224x224 images)."""
    model.eval()
    outs = []
    batch_size = inference_batch(batch_size, resize_to or images.shape[-1], device)
    for i in tqdm(
        range(0, len(images), batch_size), desc="eval", leave=False, disable=not progress
    ):
        x = images[i : i + batch_size].to(device)
        if resize_to is not None and x.shape[-1] != resize_to:
            x = resize_batch(x, resize_to)
        x = normalize(x, mean, std)
        logits = model(x).float()
        if flip_tta:
            logits = (logits + model(x.flip(3)).float()) / 2
        outs.append(logits.cpu())
    return torch.cat(outs) if outs else torch.empty(0, 0)


def metrics_from_predictions(pred: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """accuracy, per-class accuracy, confusion matrix (rows = true class), n."""
    k = len(classes)
    conf = torch.zeros(k, k, dtype=torch.int64)
    conf.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    per_class = {}
    for i, c in enumerate(classes):
        total = int(conf[i].sum())
        per_class[c] = round(int(conf[i, i]) / total, 6) if total else None
    n = int(labels.numel())
    correct = int((pred == labels).sum())
    return {
        "accuracy": round(correct / n, 6) if n else 0.0,
        "correct": correct,
        "n": n,
        "per_class": per_class,
        "confusion": conf.tolist(),
        "classes": classes,
    }


def label_map(
    folders: list[str], classes: list[str], wnids: list[str] | None = None, source: str = ""
) -> tuple[torch.Tensor, bool]:
    """Each dataset folder's index among the model's classes, and whether the folders are a
    subset of them. Folders match class names or, for ImageNet models whose card lists
    ``wnids``, ImageNet synset ids (ImageNet's own val layout: ``n01440764/...``). The same
    set as the classes is a full evaluation; any subset (Imagenette's 10, Tiny-ImageNet's
    200) is scored against each folder's class with the prediction still over every class.
    Folders that match neither raise a ValueError naming them."""
    by_name = {c: i for i, c in enumerate(classes)}
    by_wnid = {w: i for i, w in enumerate(wnids or [])}
    unknown = [f for f in folders if f not in by_name and f not in by_wnid]
    if unknown:
        what = "class names or ImageNet wnids" if wnids else "class names"
        raise UserError(
            f"{source}: class folders that are not the model's {what}: "
            + ", ".join(unknown[:8])
            + (f" (and {len(unknown) - 8} more)" if len(unknown) > 8 else "")
        )
    idx = [by_name[f] if f in by_name else by_wnid[f] for f in folders]
    return torch.tensor(idx), len(set(idx)) < len(classes)


def evaluate(
    model: nn.Module,
    data: ImageDataset,
    mean: tuple,
    std: tuple,
    device: torch.device,
    class_order: list[str] | None = None,
    batch_size: int = 256,
    flip_tta: bool = False,
    progress: bool = False,
    resize_to: int | None = None,
    wnids: list[str] | None = None,
    teacher: nn.Module | None = None,
) -> dict:
    """Evaluate ``model`` on ``data``. ``class_order`` gives the model's class names; the
    dataset's folders are mapped onto them by name or wnid (:func:`label_map`); ``resize_to``
    as in :func:`predict`. With every class present: accuracy, per-class accuracy and the
    confusion matrix; with a subset of the classes: accuracy, top-5 and per-class accuracy
    of the folders present (no confusion matrix: the prediction is over every class)."""
    classes = list(class_order or data.classes)
    remap, subset = label_map(data.classes, classes, wnids, data.source)
    labels = remap[data.labels]
    logits = predict(
        model, data.images, mean, std, device, batch_size, flip_tta, progress, resize_to
    )
    pred = logits.argmax(1)
    if not subset:
        out = metrics_from_predictions(pred, labels, classes)
    else:
        per_class = {}
        for f, i in zip(data.classes, remap.tolist(), strict=True):
            rows = labels == i
            per_class[f] = round(float((pred[rows] == i).float().mean()), 6) if rows.any() else None
        correct = int((pred == labels).sum())
        n = int(labels.numel())
        out = {
            "accuracy": round(correct / n, 6) if n else 0.0,
            "correct": correct,
            "n": n,
            "per_class": per_class,
            "confusion": None,
            "classes": list(data.classes),
            "subset_of": len(classes),
        }
    if logits.shape[1] >= 5 and len(labels):
        top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1)
        out["top5"] = round(float(top5.float().mean()), 6)
    if teacher is not None:  # same images, same preprocessing, the teacher's own classes
        t_logits = predict(
            teacher, data.images, mean, std, device, batch_size, False, progress, resize_to
        )
        if t_logits.shape[1] != logits.shape[1]:
            raise UserError(
                f"the teacher has {t_logits.shape[1]} classes, the model {logits.shape[1]}"
            )
        t_pred = t_logits.argmax(1)
        out["teacher_agreement"] = round(float((t_pred == pred).float().mean()), 6)
        out["teacher_accuracy"] = round(float((t_pred == labels).float().mean()), 6)
        t5 = (t_logits.topk(5, 1).indices == labels[:, None]).any(1)
        out["teacher_top5"] = round(float(t5.float().mean()), 6)
    return out


def evaluate_checkpoint(
    checkpoint: str,
    data: str | ImageDataset,
    device: torch.device,
    batch_size: int = 256,
    flip_tta: bool | None = None,
    progress: bool = False,
    allow_unfinished: bool = False,
    teacher: bool | str = False,
    sample: int | None = None,
) -> dict:
    """Load a checkpoint and evaluate it on a dataset path (or a loaded dataset), resizing
    as its card says. ``flip_tta=None`` uses the card's evaluation setting. This is the one
    code path behind both ``vt-explorer eval`` and the metrics training writes into the
    card, so the two agree to the last digit on the same kind of device. ``teacher``: also
    the top-1 agreement with a distilled checkpoint's teacher and the teacher's own accuracy
    on the same images: True or "card" for the teacher its card names, as it taught (Lite0
    at the student's output stride: the dilated Lite0 for a stride-16 student, so the
    card's held-out agreement reproduces), "plain" for the plain Lite0 classifier.
    ``sample``: only a fixed random sample of that many images
    (:func:`~vt_explorer.data.fixed_sample`, the held-out sample of ``distill
    --holdout-limit``). ``allow_unfinished`` lets training evaluate the checkpoint it has
    just written (its card not yet final)."""
    from .checkpoint import load_checkpoint

    ck = load_checkpoint(checkpoint, device=device, allow_unfinished=allow_unfinished)
    if not isinstance(data, ImageDataset):
        data = load_image_folder(
            data,
            ck.preprocess.input_size,
            ck.preprocess.resize,
            progress=progress,
            interpolation=ck.preprocess.interpolation,
        )
    elif data.input_size != ck.preprocess.input_size:
        raise UserError(
            f"{data.source}: decoded at {data.input_size}, checkpoint wants {ck.preprocess.input_size}"
        )
    if sample is not None and sample < len(data):
        keep = fixed_sample(len(data), sample)
        data = dataclasses.replace(data, images=data.images[keep], labels=data.labels[keep])
    tta = ck.card.get("eval", {}).get("flip_tta", False) if flip_tta is None else flip_tta
    m = evaluate(
        ck.model,
        data,
        ck.preprocess.mean,
        ck.preprocess.std,
        device,
        ck.classes,
        batch_size,
        flip_tta=tta,
        progress=progress,
        wnids=ck.card.get("wnids"),
        teacher=_teacher(ck, device, plain=teacher == "plain") if teacher else None,
    )
    m["flip_tta"] = tta
    m["device"] = str(device)
    return m


def _teacher(ck, device: torch.device, plain: bool = False) -> nn.Module:
    """The teacher a distilled checkpoint names in its card, at the student's output stride
    as it taught (``plain``: the plain Lite0 at stride 32); UserError for any other."""
    name = (ck.card.get("teacher") or {}).get("model")
    if not name:
        raise UserError(
            f"{ck.card.get('name', 'checkpoint')}: not distilled (no teacher in its card)"
        )
    from .model.teacher import TEACHER, teacher_model

    if name != TEACHER:
        raise UserError(f"unknown teacher {name!r} (known: {TEACHER})")
    from .model.efficientnet import VTLite0

    if plain or not isinstance(ck.model, VTLite0):
        return teacher_model(device)
    return teacher_model(device, student=ck.model)
