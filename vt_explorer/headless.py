"""The app's analysis without a browser: ``vt-explorer explain`` (per image: figures, arrays,
a JSON summary, faithfulness numbers) and ``vt-explorer tokens`` (dataset-level statistics
per token and class).

Both batch the model's trace, then use the same analysis and figure functions as the app.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .analysis import (
    deletion_curves,
    foreground_share,
    randomisation_check,
    randomisation_verdict,
    step_label,
)
from .checkpoint import LoadedCheckpoint, load_checkpoint
from .data import (
    check_viewable,
    decode_image,
    image_files,
    load_image_folder,
    normalize,
    read_image_file,
)
from .evaluate import label_map
from .explore import (
    ImageAnalysis,
    ModuleView,
    analyse_batch,
    module_views,
    resolve_class,
    token_rows,
    view_preprocess,
)
from .exports import figure_files, slug
from .flags import UserError
from .preprocess import Preprocess
from .tokenstats import TOKENS_FORMAT, parse_token_statistics, read_token_statistics  # noqa: F401


@dataclass
class ExplainOptions:
    """What ``explain`` writes.

    Attributes:
        figures: write PNG figures (False: arrays and JSON only, the fast path).
        svg: also write SVG versions.
        cmap, alpha: colour map and opacity of the overlays.
        deletion: token-ablation deletion curves and their score (VT classifiers).
        random_orders: random deletion orders averaged for the score's baseline.
        randomisation: run the model-randomisation check (slow: one trace per layer group).
        masks: folder of foreground masks, ``<image stem>.png`` (non-zero = foreground).
        batch_size: images per traced batch.
        view: None (the model's own view of each photo, e.g. its centre crop) or
            "letterbox" (the whole photo padded to a square): what the model is shown.
        target: the class the token contributions, deletion curves and single-token drops
            explain, by name or index in each checkpoint's classes (None: the predicted
            class of each image).
    """

    figures: bool = True
    svg: bool = False
    cmap: str = "jet"
    alpha: float = 0.5
    deletion: bool = True
    random_orders: int = 8
    randomisation: bool = False
    masks: Path | None = None
    batch_size: int = 64
    view: str | None = None
    target: str | None = None


def _load_mask(folder: Path | None, stem: str, pre: Preprocess) -> np.ndarray | None:
    """The foreground mask of the photo ``stem`` (of the photo's size), cut to the model's
    view of it (``pre``: the centre crop, or the letterboxed square with background
    padding), so that it lies on the same pixels as the maps."""
    if folder is None:
        return None
    for ext in (".png", ".bmp", ".gif", ".jpg", ".jpeg", ".webp"):
        f = folder / f"{stem}{ext}"
        if f.is_file():
            mask = (
                decode_image(read_image_file(f), str(f)).convert("L").point(lambda v: 255 * (v > 0))
            )
            black = dataclasses.replace(pre, mean=(0.0, 0.0, 0.0))  # padding is background
            return np.asarray(black.view(mask.convert("RGB")))[..., 0] > 127
    return None


def _write_figures(folder: Path, ck_name: str, a: ImageAnalysis, opts: ExplainOptions) -> list[str]:
    """Every figure of one analysis (:func:`~vt_explorer.exports.figure_files`, the same
    files as the app's ZIP), in PNG and, with ``opts.svg``, SVG."""
    written = []
    for fmt in ["png", "svg"] if opts.svg else ["png"]:
        for fname, data in figure_files(a, ck_name, opts.cmap, opts.alpha, fmt).items():
            (folder / fname).write_bytes(data)
            written.append(fname)
    return written


def explain(
    paths: Sequence[str | Path],
    checkpoints: Sequence[str | Path | LoadedCheckpoint],
    out: str | Path,
    opts: ExplainOptions | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Analyse every image under every checkpoint and write the results into ``out``:

    ``out/<image>/<checkpoint>/summary.json`` (predictions, per-token share, mass,
    entropy, contribution, foreground share, deletion score), ``arrays.npz`` (every map and
    attention matrix), and, with ``opts.figures``, PNG (and SVG) figures plus ``report.png``;
    ``out/summary.json`` lists them all. An unreadable image is reported in ``errors`` and
    skipped. Returns the top-level summary.
    """
    opts = opts or ExplainOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cks = [
        c if isinstance(c, LoadedCheckpoint) else load_checkpoint(c, device) for c in checkpoints
    ]
    names = [Path(str(c)).name if not isinstance(c, LoadedCheckpoint) else "" for c in checkpoints]
    names = [n or f"checkpoint{i}" for i, n in enumerate(names)]
    files = image_files(paths)
    images: list[tuple[str, Image.Image]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for f in files:
        try:
            img = decode_image(read_image_file(f), str(f))
            check_viewable(img, str(f))
        except (OSError, ValueError) as err:
            errors.append(str(err))
            continue
        stem = slug(f.stem)
        seen[stem] = seen.get(stem, 0) + 1
        images.append((stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", img))
    results = []
    bar = tqdm(total=len(images) * len(cks), desc="explain", unit="img", disable=not progress)
    targets = [
        None if opts.target is None else resolve_class(ck.classes, opts.target) for ck in cks
    ]
    for ck, ck_name, target in zip(cks, names, targets, strict=True):
        for start in range(0, len(images), opts.batch_size):
            batch = images[start : start + opts.batch_size]
            analyses = analyse_batch(
                ck,
                batch,
                len(batch),
                deletion=opts.deletion,
                random_orders=opts.random_orders,
                view=opts.view,
                target=target,
            )
            for a, (_, img) in zip(analyses, batch, strict=True):
                results.append(_explain_one(ck, ck_name, a, img, out, opts))
                bar.update(1)
    bar.close()
    summary = {"images": results, "errors": errors, "checkpoints": names}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _explain_one(
    ck: LoadedCheckpoint,
    ck_name: str,
    a: ImageAnalysis,
    img: Image.Image,
    out: Path,
    opts: ExplainOptions,
) -> dict[str, Any]:
    """Write one analysis: summary.json (its to_json, plus foreground shares and the
    randomisation check when asked), arrays.npz (its to_arrays), the figures."""
    pre = view_preprocess(ck, opts.view)
    mask = _load_mask(opts.masks, a.name, pre)
    folder = out / a.name / slug(ck_name)
    folder.mkdir(parents=True, exist_ok=True)
    summary = a.to_json()
    summary["checkpoint"] = ck_name
    del summary["classes"]
    if mask is not None:
        for row, v in zip(summary["modules"], a.modules, strict=True):
            row["tokens"] = token_rows(v.stats, foreground_share(v.maps, mask))
    if opts.randomisation and a.modules:
        dev = next(ck.model.parameters()).device
        rc = randomisation_check(ck.model, pre(img)[None].to(dev))
        summary.setdefault("faithfulness", {})["randomisation"] = {
            "steps": rc.steps,
            "step_labels": [step_label(x) for x in rc.steps],
            "rank_correlation": np.round(rc.correlation, 6).tolist(),
            "verdict": randomisation_verdict(rc.correlation[-1] if len(rc.correlation) else []),
        }
    np.savez_compressed(folder / "arrays.npz", **a.to_arrays())
    if opts.figures:
        summary["figures"] = _write_figures(folder, ck_name, a, opts)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- dataset-level token statistics -------------------------------------------------------


@torch.inference_mode()
def token_statistics(
    ck: LoadedCheckpoint,
    data: str | Path,
    batch_size: int = 128,
    progress: bool = True,
    deletion_images: int = 0,
    on_batch: Callable[[int], None] | None = None,
    unlabelled: bool = False,
) -> dict[str, Any]:
    """Per token and class statistics of a checkpoint over an ImageFolder dataset.

    The folders are the checkpoint's classes (or, for ImageNet models, any subset of its
    wnids). With ``unlabelled`` they are only groups of images that need not be its classes
    (a CIFAR-10 model on ImageNet photos): the statistics are per folder and ``accuracy`` is
    None.

    For each VT module (arrays indexed [module][class][token] or [module][token]):
    ``mean_share`` (fraction of the image the token wins in the semantic-group map, mean
    over the class's images), ``mean_mass`` (mean projector weight pixels give it; the
    share for a module without projector), ``dominant`` (how many images of the class the
    token has the largest share in), ``entropy_ratio`` (mean entropy of its map over a
    uniform map's), ``fires_for`` (each token's mean share distributed over classes:
    ``fires_for[k][c][l] = mean_share[k][c][l] / sum_c' mean_share[k][c'][l]``; over classes
    it sums to 1 for a token that wins pixels of some image, and is 0 for every class for a
    token that never wins a single pixel: such a token fires for no class, which ``never_fires``
    lists per module). Per module over all images: ``effective_groups`` (mean of exp of
    the group shares' entropy), ``map_similarity`` (mean pairwise cosine of the maps) and
    ``collapsed_share`` (fraction of images whose verdict is "collapsed"; see
    :func:`vt_explorer.analysis.diversity`). With ``deletion_images`` > 0, the mean deletion
    score of that many images.
    """
    pre = ck.preprocess
    ds = load_image_folder(
        data, pre.input_size, pre.resize, progress=progress, interpolation=pre.interpolation
    )
    # folders are the checkpoint's classes, or (ImageNet models) any subset of its wnids:
    # statistics are then per folder present, accuracy over all the model's classes
    if unlabelled:
        classes, truth, labels = list(ds.classes), None, ds.labels
    else:
        remap, subset = label_map(ds.classes, list(ck.classes), ck.card.get("wnids"), ds.source)
        classes = list(ds.classes) if subset else list(ck.classes)
        truth = remap[ds.labels]  # index among the model's outputs
        labels = ds.labels if subset else truth  # index among ``classes``
    model = ck.model
    dev = next(model.parameters()).device
    acc = _TokenSums(len(classes), torch.bincount(labels, minlength=len(classes)).numpy())
    correct = 0
    deletion_scores: list[float] = []
    bar = tqdm(total=len(ds), desc="tokens", unit="img", disable=not progress)
    for start in range(0, len(ds), batch_size):
        x = normalize(ds.images[start : start + batch_size].to(dev), pre.mean, pre.std)
        y = labels[start : start + batch_size].numpy()
        trace = model.trace(x)
        if not trace.modules:
            raise UserError(f"{ck.config.name} has no VT modules: no token statistics")
        if truth is not None:
            hit = trace.logits.argmax(1).cpu() == truth[start : start + batch_size]
            correct += int(hit.sum())
        acc.add([module_views(trace, b) for b in range(len(y))], y)
        for b in range(len(y)):
            if len(deletion_scores) < deletion_images:
                deletion_scores.append(deletion_curves(model, trace, b, random_orders=4).score)
        bar.update(len(y))
        if on_batch is not None:
            on_batch(start)
    bar.close()
    out = {
        "format": TOKENS_FORMAT,
        "checkpoint": ck.config.name,
        "data": ds.source,
        "n": len(ds),
        "accuracy": None if truth is None else round(correct / max(1, len(ds)), 6),
        "classes": classes,
        **acc.result(),
    }
    if deletion_scores:
        out["deletion_score_mean"] = round(float(np.mean(deletion_scores)), 6)
        out["deletion_images"] = len(deletion_scores)
    return out


class _TokenSums:
    """Running sums of :func:`token_statistics` per module, class and token."""

    def __init__(self, num_classes: int, per_class_n: np.ndarray) -> None:
        self.K, self.per_class_n = num_classes, per_class_n
        self.kinds: list[str] = []
        self.sums: dict[str, np.ndarray] = {}
        self.div: list[list[tuple[float, float, str]]] = []  # per module, per image

    def add(self, views: list[list[ModuleView]], y: np.ndarray) -> None:
        """Add the images of a traced batch: ``views[b]`` is image b's module views (the
        per-image result the app and ``explain`` draw, :func:`~.explore.module_views`),
        ``y[b]`` its class index."""
        if not self.kinds:
            M, L = len(views[0]), len(views[0][0].maps)
            self.kinds = [v.kind for v in views[0]]
            for key in ("share", "mass", "entropy"):
                self.sums[key] = np.zeros((M, self.K, L))
            self.sums["dominant"] = np.zeros((M, self.K, L), dtype=np.int64)
            self.div = [[] for _ in range(M)]
        for image, c in zip(views, y, strict=True):
            for k, v in enumerate(image):
                s = v.stats
                self.sums["share"][k, c] += s.share
                self.sums["mass"][k, c] += s.mass
                self.sums["dominant"][k, c, int(s.share.argmax())] += 1
                self.sums["entropy"][k, c] += s.entropy_ratio
                d = v.diversity
                self.div[k].append((d.effective_groups, d.similarity, d.verdict))

    def result(self) -> dict[str, Any]:
        """The JSON fields of the statistics (see :func:`token_statistics`)."""
        n = np.maximum(self.per_class_n, 1)[None, :, None]
        total_n = max(1, int(self.per_class_n.sum()))
        mean_share = self.sums["share"] / n
        total = mean_share.sum(1, keepdims=True)  # (M, 1, L)
        fires = np.where(total > 0, mean_share / np.where(total > 0, total, 1.0), 0.0)
        return {
            "per_class_n": self.per_class_n.tolist(),
            "module_kinds": self.kinds,
            "mean_share": np.round(mean_share, 6).tolist(),
            "mean_mass": np.round(self.sums["mass"] / n, 6).tolist(),
            "dominant": self.sums["dominant"].tolist(),
            "entropy_ratio_by_class": np.round(self.sums["entropy"] / n, 6).tolist(),
            "entropy_ratio": np.round(self.sums["entropy"].sum(1) / total_n, 6).tolist(),
            "fires_for": np.round(fires, 6).tolist(),
            "never_fires": [
                np.flatnonzero(total[k, 0] == 0).tolist() for k in range(len(self.kinds))
            ],
            "effective_groups": [round(float(np.mean([d[0] for d in m])), 4) for m in self.div],
            "map_similarity": [round(float(np.mean([d[1] for d in m])), 4) for m in self.div],
            "collapsed_share": [
                round(float(np.mean([d[2] == "collapsed" for d in m])), 4) for m in self.div
            ],
        }


def write_token_statistics(stats: dict[str, Any], out: str | Path, fmt: str = "png") -> list[Path]:
    """Write ``tokens.json`` and one token x class heatmap per module into ``out``."""
    from .viz.export import heatmap_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "tokens.json"]
    written[0].write_text(json.dumps(stats))
    for k, kind in enumerate(stats["module_kinds"]):
        share = np.asarray(stats["mean_share"][k])  # (K, L)
        f = out / f"tokens_m{k + 1}.{fmt}"
        f.write_bytes(
            heatmap_figure(
                share,
                f"mean share of the image per token and class, module {k + 1} ({kind})",
                xlabel="token",
                ylabel="class",
                yticks=stats["classes"],
                fmt=fmt,
            )
        )
        written.append(f)
    return written
