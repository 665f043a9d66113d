"""The page's panels around the images: model cards, dataset token statistics, the image
inputs and pager, and the batch overview table."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image as PILImage

from ..data import image_files
from ..examples import example_images
from ..explore import display_image, parse_labels_csv, true_class
from ..tokenstats import parse_token_statistics, read_token_statistics
from ..viz import confusion_heatmap, curves_figure, token_class_heatmap
from ..viz.linked import png_data_url
from .inputs import MAX_UPLOAD_BYTES, MAX_UPLOAD_MB
from .state import (
    Image,
    Settings,
    get_analysis,
    get_checkpoint,
    image_digest,
    image_error,
    short,
)

log = logging.getLogger("vt_explorer.app")
PAGE_SIZE = 4  # images drawn per page
OVERVIEW_ROWS = 20  # rows of the overview table analysed and shown at a time


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:"})


def plain(text: object) -> str:
    """A card's free text as literal characters inside Markdown: every character Markdown
    reads is escaped, so a hand-edited ``hardware`` of ``![x](https://...)`` shows as those
    characters and makes the browser fetch nothing."""
    return str(text).translate(_MARKDOWN)


def show_card(key: str) -> None:
    """The model card: data, accuracy, per-class accuracy, confusion, curves, cost."""
    card = get_checkpoint(key).card
    cfg = card["config"]
    met = card.get("metrics") or {}
    st.markdown(f"#### {short(key)}")
    st.markdown(
        f"Architecture {plain(cfg['name'])}; input {card['input_size']} px; "
        f"{len(card['classes'])} classes; trained on "
        f"{plain(card.get('hardware', 'unknown hardware'))} in "
        f"{plain(card.get('train_seconds', '?'))} s; code {plain(card.get('code_version', '?'))}."
    )
    if "accuracy" in met:
        source = ((card.get("dataset") or {}).get("val") or {}).get("source", "its test set")
        st.metric(
            "Top-1", f"{met['accuracy']:.2%}", help=f"on {met['n']} images of {plain(source)}"
        )
        per = met.get("per_class") or {}
        if len(per) <= 20:
            st.dataframe(pd.DataFrame({"accuracy": per}).T, key=f"per-{key}")
        if met.get("confusion") is not None and len(met["confusion"]) <= 20:
            st.plotly_chart(confusion_heatmap(met["confusion"], met["classes"]), key=f"conf-{key}")
    for source, h in (met.get("holdout") or {}).items():
        top1 = (
            ""
            if h.get("top1") is None
            else f", top-1 {h['top1']:.1%} (teacher {h['teacher_top1']:.1%})"
        )
        st.markdown(
            f"Held out **{plain(source)}** ({h['n']} images): agreement with the teacher "
            f"(Lite0, the network the student was distilled from) {h['agreement']:.1%}{top1}."
        )
    if card.get("history"):
        st.plotly_chart(curves_figure(card["history"]), key=f"curves-{key}")
    stages = (card.get("complexity") or {}).get("stages") or {}
    if stages:
        st.dataframe(
            pd.DataFrame(
                {
                    s: {"params (M)": v["params"] / 1e6, "GMACs": v["flops"] / 2e9}
                    for s, v in stages.items()
                }
            ).T,
            key=f"cost-{key}",
        )
    if card.get("command"):
        st.code(card["command"], language="bash")


def _top1_words(accuracy: float | None) -> str:
    """The caption's accuracy: a percentage, or why there is none (``tokens --unlabelled``)."""
    if accuracy is None:
        return "folders unlabelled: no accuracy"
    return f"top-1 {accuracy:.2%}"


def class_names(folders: list[str], card: dict) -> list[str]:
    """Folder names as people read them: an ImageNet wnid (n02123045) becomes its class name
    (tabby) where the checkpoint's card lists ``wnids`` beside its ``classes``; other names
    stay as they are."""
    wnids, classes = card.get("wnids"), card.get("classes")
    if not (isinstance(wnids, list) and isinstance(classes, list) and len(wnids) == len(classes)):
        return list(folders)
    by_wnid = dict(zip(wnids, classes, strict=True))
    return [str(by_wnid.get(f, f)) for f in folders]


def show_token_statistics(key: str) -> None:
    """Dataset-level token statistics from ``vt-explorer tokens`` (NAME.tokens.json beside
    the checkpoint, or an uploaded file)."""
    found = None if key.startswith("upload:") else Path(key + ".tokens.json")
    up = st.file_uploader(
        f"tokens.json for {short(key)}",
        type=["json"],
        key=f"tokfile-{key}",
        help="written by `vt-explorer tokens CHECKPOINT DATA --out DIR`",
    )
    stats = None
    try:
        if up is not None:
            stats = parse_token_statistics(up.getvalue(), up.name)
        elif found is not None and found.is_file():
            stats = read_token_statistics(found)
    except ValueError as err:
        st.error(f"Cannot use that file: {err}")
    if stats is None:
        st.info(
            f"No statistics for {short(key)} yet: run `vt-explorer tokens CHECKPOINT DATA "
            f"--out DIR` and upload DIR/tokens.json."
        )
        return
    st.caption(
        f"{stats['n']} images of {short(stats['data'])} ({_top1_words(stats.get('accuracy'))}). "
        "Share: the fraction of an image a token wins in the semantic-group map, averaged "
        "per class. Entropy / uniform: 1 = the token looks everywhere."
    )
    names = class_names(stats["classes"], get_checkpoint(key).card)
    for k, kind in enumerate(stats["module_kinds"]):
        share = np.asarray(stats["mean_share"][k])
        st.plotly_chart(
            token_class_heatmap(share, names, f"module {k + 1} ({kind}): mean share"),
            key=f"tokhm-{key}-{k}",
        )
        ent = np.asarray(stats["entropy_ratio"][k])
        dom = np.asarray(stats["dominant"][k]).sum(0)
        st.dataframe(
            pd.DataFrame(
                {"entropy / uniform": ent, "images where largest": dom},
                index=[f"t{i}" for i in range(len(ent))],
            ).T,
            key=f"tokdf-{key}-{k}",
        )


EXAMPLE_PHOTOS = 12  # at most this many files of the operator's example folder


def example_photos() -> list[tuple[str, bytes]]:
    """(name, bytes) of the photos in ``$VT_EXPLORER_EXAMPLES`` (a folder the server's
    operator chose; ``scripts/app.sh`` points it at ``../shared/data/photos`` when that
    exists), at most EXAMPLE_PHOTOS, sorted; none when unset or missing. A file that does
    not decode is named on the page like any upload."""
    folder = os.environ.get("VT_EXPLORER_EXAMPLES", "").strip()
    if not folder or not Path(folder).is_dir():
        return []
    return [(f.name, f.read_bytes()) for f in image_files([folder])[:EXAMPLE_PHOTOS]]


#: real photos bundled with scikit-image (public domain or CC0; a dependency of the app), in
#: the gallery when the operator names no example folder: (file in skimage/data, name shown)
BUNDLED_PHOTOS = (
    ("chelsea.png", "chelsea the cat (scikit-image sample, CC0).png"),
    ("coffee.png", "a cup of coffee (scikit-image sample, CC0).png"),
    ("rocket.jpg", "a rocket on its launch pad (scikit-image sample, NASA).jpg"),
)


def bundled_photos() -> list[tuple[str, bytes]]:
    """(name, bytes) of :data:`BUNDLED_PHOTOS`, read from scikit-image's installed data
    folder without importing it; none where it is missing."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return [
        (shown, (folder / f).read_bytes()) for f, shown in BUNDLED_PHOTOS if (folder / f).is_file()
    ]


def with_examples(items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``items`` followed by the example gallery: the operator's example photos, or without
    them the real photos scikit-image bundles (what the models make of real photos), then
    the drawn images, as PNG bytes."""
    items = [*items, *(example_photos() or bundled_photos())]
    for name, img in example_images().items():
        buf = io.BytesIO()
        img.save(buf, "PNG")
        items.append((name, buf.getvalue()))
    return items


def readable_images(items: list[tuple[str, bytes]]) -> list[Image]:
    """(name, bytes, SHA-256) of the images that can be shown; the others are named first."""
    readable = []
    for name, data in items:
        digest = image_digest(data)
        if len(data) > MAX_UPLOAD_BYTES:
            st.error(f"{name}: file is larger than {MAX_UPLOAD_MB} MB; skipped.")
            continue
        error = image_error(digest, data, name)
        if error is not None:
            st.error(f"Cannot show {error}")
            continue
        readable.append((name, data, digest))
    return readable


def _pages(n: int) -> list[int]:
    return list(range(0, n, PAGE_SIZE))


def _label(n: int) -> Callable[[int], str]:
    return lambda i: f"{i + 1}-{min(i + PAGE_SIZE, n)}"


def page_start(n: int) -> int:
    """Index of the first image of the page chosen (PAGE_SIZE images per page); the pager
    at the bottom (:func:`bottom_pager`) moves the same page."""
    if n <= PAGE_SIZE:
        return 0
    return st.radio(
        f"{n} images, {PAGE_SIZE} per page",
        _pages(n),
        format_func=_label(n),
        horizontal=True,
        key="page",
        help="a view setting redraws the images of this page only",
    )


def bottom_pager(n: int, first: int) -> None:
    """The pager again under the images; choosing a page here moves the top one too."""
    if n <= PAGE_SIZE:
        return
    st.session_state["page_bottom"] = first  # shows the page the top pager shows

    def follow() -> None:  # runs before the rerun: the top pager takes the bottom's choice
        st.session_state["page"] = st.session_state["page_bottom"]

    st.radio(
        "Page",
        _pages(n),
        format_func=_label(n),
        horizontal=True,
        key="page_bottom",
        on_change=follow,
    )


def overview(readable: list[Image], cfg: Settings) -> int | None:
    """With several images, a sortable table first: each image's thumbnail, every model's
    top-1 and confidence, whether two models agree, the last module's diversity verdict and
    the deletion score (models named A and B in the headers, spelled out above). Selecting a
    row shows only that image; returns its index (None: nothing selected, the images are
    shown a page at a time)."""
    labels = _labels_upload()
    total, start = len(readable), 0
    if total > OVERVIEW_ROWS:  # lazily: only the rows of the table page asked for
        start = st.radio(
            f"{total} images, {OVERVIEW_ROWS} rows of the table at a time",
            list(range(0, total, OVERVIEW_ROWS)),
            format_func=lambda i: f"{i + 1}-{min(i + OVERVIEW_ROWS, total)}",
            horizontal=True,
            key="overview_page",
            help="only the images of the rows shown are analysed",
        )
    shown = readable[start : start + OVERVIEW_ROWS]
    n, rows = len(shown), []
    bar = st.progress(0.0, text=f"Analysing {n} images...")
    for i, image in enumerate(shown):
        rows.append(_overview_row(image, cfg, labels))
        bar.progress((i + 1) / n, text=f"Analysed {i + 1} of {n} images")
    bar.empty()
    df = pd.DataFrame(rows)
    names = " · ".join(f"**{chr(65 + j)}** = {short(m)}" for j, m in enumerate(cfg.models))
    st.markdown(f"{total} images. {names}")
    _accuracy_line(df, cfg)
    st.caption(
        "Click a row (any of its cells) to show that image alone, below the table (click "
        "again to go back to all images); "
        "click a column header to sort. Tokens: the last module's diversity verdict; "
        "deletion: the deletion score (above 0: the tokens the map ranks first "
        "matter more than chance)."
    )
    number = {
        c: st.column_config.NumberColumn(format="%.1f" if c.endswith("%") else "%.3f")
        for c in df.columns
        if c.endswith(("%", "deletion"))
    }
    event = st.dataframe(
        df,
        key="overview" if start == 0 else f"overview-{start}",
        on_select="rerun",
        # a click on any cell picks its row, not only a click on the row's checkbox
        selection_mode=["single-row", "single-cell"],
        hide_index=True,
        column_config={"thumbnail": st.column_config.ImageColumn("thumbnail", width="small")}
        | number,
    )
    sel = event.selection if event is not None else None
    picked = list(sel.rows) if sel is not None else []
    if not picked and sel is not None and sel.get("cells"):
        picked = [sel["cells"][0][0]]
    return start + int(picked[0]) if picked else None


def _labels_upload() -> dict[str, str]:
    """The visitor's optional labels CSV (file,class rows) for the overview; {} without."""
    up = st.file_uploader(
        "True classes (optional): a CSV of file,class rows",
        type=["csv"],
        key="labels_csv",
        help="Where a file name starts with an ImageNet wnid (n02123045_...) or contains "
        "a class name as a word (my_tabby.jpg), the true class is read from it; a CSV "
        "names the others. Each model's accuracy over the batch is shown above the table.",
    )
    if up is None:
        return {}
    try:
        return parse_labels_csv(up.getvalue(), up.name)
    except ValueError as err:
        st.error(f"Cannot use that CSV: {err}")
        return {}


def _accuracy_line(df: pd.DataFrame, cfg: Settings) -> None:
    """Each model's accuracy over the images whose true class is known, in one line."""
    parts = []
    for j in range(len(cfg.models)):
        col = f"{chr(65 + j)} right"
        if col not in df:
            continue
        known = df[col].dropna()
        if len(known):
            k = int(known.sum())
            parts.append(f"**{chr(65 + j)}** {k} of {len(known)} ({k / len(known):.0%})")
    if parts:
        st.markdown(
            "Right at top-1, over the images of this table with a known class: " + ", ".join(parts)
        )
    else:
        st.caption(
            "No true class known: name files with a wnid or a class name, or upload a "
            "labels CSV, to see each model's accuracy over the batch."
        )


def _overview_row(image: Image, cfg: Settings, labels: dict[str, str] | None = None) -> dict:
    """One image's row of the overview table; model j's columns start with its letter. With
    a true class (from the file name or ``labels``), a ``truth`` column and, per model,
    whether its top-1 is right."""
    name, data, digest = image
    row: dict = {"image": name}
    tops = []
    for j, key in enumerate(cfg.models):
        m = chr(65 + j)
        try:
            a = get_analysis(key, digest, data, name, cfg.view)
        except Exception:  # the image's own section names the error
            log.exception("overview: %s with %s", name, key)
            row[f"{m} top-1"] = "error"
            continue
        row.setdefault("thumbnail", png_data_url(display_image(PILImage.fromarray(a.tile), 64)))
        cls, p = a.top
        tops.append(cls)
        row[f"{m} top-1"], row[f"{m} %"] = cls, round(100 * p, 1)
        card = get_checkpoint(key).card
        truth = true_class(name, list(a.classes), card.get("wnids"), labels)
        if truth is not None:
            row.setdefault("truth", a.classes[truth])
        row[f"{m} right"] = None if truth is None else bool(int(a.probs.argmax()) == truth)
        row[f"{m} tokens"] = a.modules[-1].diversity.verdict if a.modules else "-"
        # rounded as shown, so that a score of -0.00001 is 0.000, never -0.000
        row[f"{m} deletion"] = None if a.deletion is None else round(a.deletion.score, 3) + 0.0
    if len(cfg.models) == 2:
        row["agree"] = len(tops) == 2 and tops[0] == tops[1]
    return row
