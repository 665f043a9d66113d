"""The distillation pool: the photos' trunk maps (the bank), their own maps at the model's
input size, their decoded pixels, their folder labels and the held-out sets, assembled in
one call (:meth:`Pool.build`). Every map set is cached by ``vt_explorer.features``.

A source given both as ``--data`` and as ``--holdout`` is split: its fixed held-out sample
(:func:`~vt_explorer.data.fixed_sample`) is evaluated and never trained on, the rest trains.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import DatasetError, ImageDataset, fixed_sample, load_image_folder
from ..features import FeatureSet, compute_features
from ..flags import UserError
from ..model import create_model


def read_wnids(path: str | os.PathLike) -> list[str]:
    """The 1000 ImageNet wnids in class-index order, one per line; UserError otherwise."""
    p = Path(path)
    try:
        wnids = [w.strip() for w in p.read_text().split() if w.strip()]
    except OSError as err:
        raise UserError(f"{p}: cannot read the wnid list ({err.strerror})") from None
    if len(wnids) != 1000 or len(set(wnids)) != 1000 or not all(w.startswith("n") for w in wnids):
        raise UserError(f"{p}: expected 1000 distinct ImageNet wnids (n01440764 ...)")
    return wnids


def find_wnids(args) -> list[str]:
    """``args.wnids``, else an ``imagenet_wnids.txt`` beside one of the data sources."""
    if args.wnids:
        return read_wnids(args.wnids)
    for src in [*args.data, *args.holdout]:
        cand = Path(src).expanduser().resolve().parent / "imagenet_wnids.txt"
        if cand.is_file():
            return read_wnids(cand)
    raise UserError("no imagenet_wnids.txt beside the data: pass --wnids FILE")


def wnid_labels(fs: FeatureSet, wnids: list[str]) -> Tensor:
    """Each sample's ImageNet class index from its folder name, -1 for a folder that is not a
    wnid (unlabelled: Caltech-101's categories, say). A folder named like a wnid that is not
    one of the 1000 is a DatasetError naming it."""
    index = {w: i for i, w in enumerate(wnids)}
    bad = [c for c in fs.classes if c.startswith("n") and c[1:].isdigit() and c not in index]
    if bad:
        raise DatasetError(f"{fs.source}: wnid folders not among the 1000 classes: {bad[:5]}")
    per_class = torch.tensor([index.get(c, -1) for c in fs.classes])
    return per_class[fs.labels]


#: a held-out source: (path, its fixed sample's trunk maps, their wnid labels)
Holdout = tuple[str, FeatureSet, Tensor]


@dataclass
class Pool:
    """Everything a distillation run reads.

    Attributes:
        bank_sets: each ``--data`` source's trunk maps at ``--bank-size`` (minus a held-out
            sample), in order; :attr:`bank` is their concatenation, (N, C, H, W) float16.
        holdouts: each held-out source, at the model's input size.
        real: with ``--real-share``: the same N photos' maps at the model's input size,
            (N, C, h, w), or (V, N, C, h, w) with ``--real-views`` V > 1; else None.
        hard: (N,) wnid label of each photo, -1 where its folder is not a wnid.
        images: with ``--image-share``: the N photos decoded at ``--bank-size``, uint8.
    """

    bank_sets: list[FeatureSet]
    holdouts: list[Holdout]
    real: Tensor | None
    hard: Tensor
    images: Tensor | None = None

    @property
    def bank(self) -> Tensor:
        return torch.cat([fs.features for fs in self.bank_sets])

    @classmethod
    def build(
        cls,
        args,
        student: nn.Module,
        wnids: list[str],
        device: torch.device,
        progress: bool = True,
    ) -> Pool:
        """Compute (or read from the caches) every set the recipe ``args`` needs."""
        bank_sets, holdouts, real_sets = feature_sets(args, student, wnids, device, progress)
        views = [torch.cat([fs.features for fs in sets]) for sets in real_sets]
        real = (views[0] if len(views) == 1 else torch.stack(views)) if views else None
        hard = torch.cat([wnid_labels(fs, wnids) for fs in bank_sets])
        images = None
        if args.image_share > 0:
            decoded = pool_images(args, student, holdouts, bank_sets, progress)
            images = torch.cat([ds.images for ds in decoded])
        return cls(bank_sets, holdouts, real, hard, images)

    def describe(self, limit: int) -> dict[str, Any]:
        """The card's ``dataset`` entry: every pool source (a split one says its held-out
        sample of ``limit`` left) and every held-out sample."""
        held = {Path(src).expanduser().resolve() for src, _, _ in self.holdouts}
        pool = []
        for fs in self.bank_sets:
            out = fs.describe()
            if Path(fs.source).expanduser().resolve() in held:
                out["minus_holdout"] = (
                    f"its held-out sample (--holdout-limit {limit}, seed 0) left out"
                )
            pool.append(out)
        return {"pool": pool, "holdout": [fs.describe() for _, fs, _ in self.holdouts]}


def feature_sets(
    args, student: nn.Module, wnids: list[str], device: torch.device, progress: bool
) -> tuple[list[FeatureSet], list[Holdout], list[list[FeatureSet]]]:
    """The pool's trunk maps at bank size; each held-out source's at the model's own input
    size (a fixed sample of ``holdout_limit``) with its wnid labels; and, with
    ``real_share`` > 0, the pool's maps at the model's input size, one list of sets per real
    view (``real_views``: the centre crop, then fixed random-resized crops; else empty). A
    source that is both is split: the pool keeps the images that are not in its held-out
    sample."""
    held: dict[Path, int] = {}
    holdouts = holdout_sets(
        student, args.holdout, args.holdout_limit, wnids, device, progress, sizes=held
    )
    bank_sets = _pool_sets(args, student, args.bank_size, held, device, progress)
    real_sets: list[list[FeatureSet]] = []
    if args.real_share > 0:  # the same photos in the same order, at the model's input size
        for k in range(args.real_views):  # view 0 the centre crop, k the k-th fixed crop
            resize = f"crop{k}" if k else "center_crop"
            size = student.cfg.input_size
            real_sets.append(_pool_sets(args, student, size, held, device, progress, resize))
    return bank_sets, holdouts, real_sets


def holdout_sets(
    model: nn.Module,
    sources: Sequence[str],
    limit: int,
    wnids: list[str],
    device: torch.device,
    progress: bool = True,
    sizes: dict[Path, int] | None = None,
) -> list[Holdout]:
    """Each held-out source's trunk features at the model's input size (centre crop, cached),
    its fixed sample of at most ``limit`` images (:func:`~vt_explorer.data.fixed_sample`) and
    their wnid labels. ``sizes``, when given, receives each source's full image count by
    resolved path."""
    out = []
    for src in sources:
        full = source_features(model, src, model.cfg.input_size, device, progress)
        if sizes is not None:
            sizes[Path(src).expanduser().resolve()] = len(full)
        fs = held_out_sample(full, limit)
        out.append((src, fs, wnid_labels(fs, wnids)))
    return out


def pool_images(
    args, student: nn.Module, holdouts: list[Holdout], bank_sets: list[FeatureSet], progress: bool
) -> list[ImageDataset]:
    """Each ``--data`` source's photos decoded at ``--bank-size`` as the bank saw them (the
    same centre crop and interpolation; cached), minus the held-out sample of a source that
    is also held out: row for row the photos of ``bank_sets``. DatasetError when a source
    decodes to another number of photos than its bank (the source changed in between)."""
    held = {Path(src).expanduser().resolve() for src, _, _ in holdouts}
    interpolation = student.cfg.extra.get("interpolation", "bicubic")
    out = []
    for src, fs in zip(args.data, bank_sets, strict=True):
        ds = load_image_folder(
            src, args.bank_size, "center_crop", progress=progress, interpolation=interpolation
        )
        if Path(src).expanduser().resolve() in held:
            ds = _without_holdout(ds, args.holdout_limit)
        if len(ds) != len(fs) or not torch.equal(ds.labels, fs.labels):
            raise DatasetError(
                f"{src}: {len(ds)} photos decoded but {len(fs)} trunk maps in the bank; the "
                "source changed: run again"
            )
        out.append(ds)
    return out


def source_features(
    model: nn.Module, src: str, size: int, device, progress: bool, resize: str = "center_crop"
) -> FeatureSet:
    """Trunk features of one source at ``size`` px (centre crop, or ``resize``), cached."""
    sized = create_model(model.cfg.replace(input_size=size))
    sized.load_state_dict(model.state_dict())
    return compute_features(sized, src, resize, device, progress=progress)


def held_out_sample(fs: FeatureSet, limit: int) -> FeatureSet:
    """The held-out sample of ``fs`` (:func:`~vt_explorer.data.fixed_sample`)."""
    return fs if len(fs) <= limit else _select(fs, fixed_sample(len(fs), limit))


def _select(ds: FeatureSet | ImageDataset, keep: Tensor) -> Any:
    """The rows ``keep`` of a source's trunk maps or decoded photos (and their labels)."""
    field = "features" if isinstance(ds, FeatureSet) else "images"
    return dataclasses.replace(ds, **{field: getattr(ds, field)[keep]}, labels=ds.labels[keep])


def _without_holdout(fs: FeatureSet | ImageDataset, limit: int) -> Any:
    """``fs`` (trunk maps or decoded photos) minus its held-out sample: the training part of
    a source that is also held out. DatasetError when nothing is left to train on."""
    keep = torch.ones(len(fs), dtype=torch.bool)
    keep[fixed_sample(len(fs), limit)] = False
    if not keep.any():
        raise DatasetError(
            f"{fs.source}: all {len(fs)} images are held out (--holdout-limit {limit}); "
            "nothing is left to train on"
        )
    return _select(fs, keep.nonzero().squeeze(1))


def _pool_sets(
    args,
    student: nn.Module,
    size: int,
    held: dict[Path, int],
    device: torch.device,
    progress: bool,
    resize: str = "center_crop",
) -> list[FeatureSet]:
    """Each ``--data`` source's trunk maps at ``size`` px (cached), minus the held-out sample
    of a source that is also held out (``held``: its image count by resolved path): the same
    photos in the same order at any size."""
    out = []
    for src in args.data:
        fs = source_features(student, src, size, device, progress, resize)
        n_held = held.get(Path(src).expanduser().resolve())
        if n_held is not None:  # the same files in the same order at both sizes
            if n_held != len(fs):
                raise DatasetError(f"{src}: {len(fs)} images at {size} px, {n_held} held out")
            fs = _without_holdout(fs, args.holdout_limit)
        out.append(fs)
    return out
