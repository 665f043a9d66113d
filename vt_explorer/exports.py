"""The files of one image under one model: what ``vt-explorer explain`` writes into a folder
and what the app's ZIP download holds, built by the same functions.

File names number modules and the layers of a module's transformer from 1, as the page,
the figures and the arrays do (``m1_tokens.png`` and ``m1_maps`` are module 1,
``m1_attention_l1`` its first layer): one numbering everywhere a person reads. Everything is drawn from an
:class:`~vt_explorer.explore.ImageAnalysis`, never from the model.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

from .explore import ImageAnalysis, ModuleView, npz_bytes


def slug(text: str) -> str:
    """``text`` as a safe file-name part (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def figure_files(
    a: ImageAnalysis,
    model: str,
    cmap: str = "jet",
    alpha: float = 0.5,
    fmt: str = "png",
    shared: bool = True,
) -> dict[str, bytes]:
    """{file name: bytes} of every figure of ``a`` in ``fmt`` (png or svg): predictions,
    per module its token maps, semantic groups, projector view, token attention of each
    layer (mean over heads) and propagated maps; the deletion curve; the one-page report.
    ``shared=False`` stretches each map tile to its own range (and the figure says so)."""
    from .viz.export import deletion_figure, groups_figure, heatmap_figure, predictions_figure
    from .viz.figures import token_grid_png

    files = {f"predictions.{fmt}": predictions_figure(a.classes, a.probs, title=a.name, fmt=fmt)}
    for k, v in enumerate(a.modules):
        title = f"{model}, module {k + 1} ({v.kind})"
        files[f"m{k + 1}_tokens.{fmt}"] = token_grid_png(
            a.image, v.maps, cmap, alpha, title=title, fmt=fmt, shared=shared
        )
        files[f"m{k + 1}_groups.{fmt}"] = groups_figure(
            a.image, v.groups, v.stats.share, f"semantic groups, {title}", fmt
        )
        if v.projector_labels is not None:
            files[f"m{k + 1}_projector.{fmt}"] = groups_figure(
                a.image, v.projector_labels, v.stats.mass, f"projector view, {title}", fmt
            )
        for j, att in enumerate(v.token_attention):
            files[f"m{k + 1}_attention_l{j + 1}.{fmt}"] = heatmap_figure(
                att.mean(0),
                f"token attention, layer {j + 1} (mean of {len(att)} heads), {title}",
                fmt=fmt,
                uniform=1.0 / att.shape[-1],
            )
        if v.propagated is not None:
            files[f"m{k + 1}_propagated.{fmt}"] = token_grid_png(
                a.image,
                v.propagated,
                cmap,
                alpha,
                title=f"after the transformer, {title}",
                fmt=fmt,
                shared=shared,
            )
    if a.deletion is not None:
        files[f"deletion.{fmt}"] = deletion_figure(a.deletion, a.classes[a.deletion.predicted], fmt)
    files[f"report.{fmt}"] = a.report(f"{a.name} - {model}", cmap, alpha, fmt)
    return files


def token_table_csv(v: ModuleView) -> bytes:
    """One module's per-token table (:meth:`ModuleView.table`) as CSV bytes."""
    table = v.table()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["token", *table])
    for t in range(len(v.maps)):
        writer.writerow([f"t{t}", *(f"{float(col[t]):.6g}" for col in table.values())])
    return buf.getvalue().encode()


def zip_bytes(
    a: ImageAnalysis, model: str, cmap: str = "jet", alpha: float = 0.5, shared: bool = True
) -> bytes:
    """Everything for one image under one model as a ZIP, in a folder ``IMAGE-MODEL/``:
    ``summary.json`` (:meth:`ImageAnalysis.to_json`), ``arrays.npz``
    (:meth:`ImageAnalysis.to_arrays`), ``m{k}_tokens.csv`` per module and every PNG figure of
    :func:`figure_files` (the same files ``vt-explorer explain`` writes)."""
    folder = f"{slug(Path(a.name).stem)}-{slug(model)}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/summary.json", json.dumps(a.to_json() | {"model": model}, indent=1))
        z.writestr(f"{folder}/arrays.npz", npz_bytes(a.to_arrays()))
        for k, v in enumerate(a.modules):
            z.writestr(f"{folder}/m{k + 1}_tokens.csv", token_table_csv(v))
        for name, data in figure_files(a, model, cmap, alpha, "png", shared).items():
            z.writestr(f"{folder}/{name}", data)
    return buf.getvalue()
