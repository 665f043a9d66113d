"""Evaluation: top-1, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageDataset, load_image_folder, normalize, resize_batch
from .device import inference_batch


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
) -> dict:
    """Evaluate ``model`` on ``data``. ``class_order`` gives the model's class names; the
    dataset's labels are mapped onto it by name (they must be the same set); ``resize_to``
    as in :func:`predict`."""
    classes = class_order or data.classes
    if set(classes) != set(data.classes):
        raise ValueError(
            f"{data.source}: class folders {sorted(data.classes)} differ from the model's "
            f"classes {sorted(classes)}"
        )
    remap = torch.tensor([classes.index(c) for c in data.classes])
    labels = remap[data.labels]
    logits = predict(
        model, data.images, mean, std, device, batch_size, flip_tta, progress, resize_to
    )
    return metrics_from_predictions(logits.argmax(1), labels, list(classes))


def evaluate_checkpoint(
    checkpoint: str,
    data: str | ImageDataset,
    device: torch.device,
    batch_size: int = 256,
    flip_tta: bool | None = None,
    progress: bool = False,
    allow_unfinished: bool = False,
) -> dict:
    """Load a checkpoint and evaluate it on a dataset path (or a loaded dataset), resizing
    as its card says. ``flip_tta=None`` uses the card's evaluation setting. This is the one
    code path behind both ``vt-explorer eval`` and the metrics training writes into the
    card, so the two agree to the last digit on the same kind of device. ``allow_unfinished``
    lets training evaluate the checkpoint it has just written (its card not yet final)."""
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
        raise ValueError(
            f"{data.source}: decoded at {data.input_size}, checkpoint wants {ck.preprocess.input_size}"
        )
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
    )
    m["flip_tta"] = tta
    m["device"] = str(device)
    return m
