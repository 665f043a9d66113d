"""App responsiveness on this machine: upload-to-views for one photo with two models, and a
view change, measured two ways.

    python -m benchmarks.speed.bench_app [--photo PATH] [--reps 5] [--models A B]

1. Library level: decoding + one traced forward pass per model + every figure of the
   default views (token maps, propagated maps, groups, projector view, attention heatmap,
   predictions) for two models; then a view change (new colour map: the overlays, heatmap
   and bars are redrawn; the cached analysis and the memoised group images are reused).
2. Streamlit level (AppTest, the whole script rerun as a browser session would trigger it,
   without the browser's own rendering): first upload of the photo, then a colour-map
   change; then ten images uploaded at once (the app draws the first page of 4), a colour
   change on that page, and a switch to the second page.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from vt_explorer.analysis import projector_groups, propagated_maps, semantic_groups
from vt_explorer.checkpoint import load_checkpoint
from vt_explorer.data import decode_image
from vt_explorer.explore import analyse, list_checkpoints
from vt_explorer.ui.sidebar import DEFAULT_PAIR, default_model
from vt_explorer.viz import attention_heatmap, group_image, overlay, predictions_bar

ROOT = Path(__file__).resolve().parents[2]

PHOTO = ROOT.parent / "shared" / "data" / "photos" / "n02123045_tabby.JPEG"


def figures(a, cmap: str, groups: bool = True) -> None:
    """Every figure the default views of module 1 draw (grids on the small tile image, as
    the app draws them). ``groups=False`` leaves out the group images, which depend on
    neither colour map nor opacity and which the app memoises (a colour change reuses them)."""
    v = a.modules[0]
    for m in v.maps:
        overlay(a.tile, m, cmap, 0.55)
    overlay(a.image, v.maps[0], cmap, 0.55)  # the enlarged token
    for m in propagated_maps(v.maps, v.token_attention[-1]):
        overlay(a.tile, m, cmap, 0.55)
    if groups:
        for m in a.modules:  # the groups tab and the module-by-module expander
            group_image(a.image, semantic_groups(m.maps)[0])
        if v.projector is not None:
            group_image(a.image, projector_groups(v.projector)[0])
    attention_heatmap(v.token_attention[-1].mean(0))
    predictions_bar(a.classes, a.probs)


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument(
        "--models", nargs="*", help="two checkpoint paths (default: the app's default pair)"
    )
    args = parser.parse_args()
    names = list_checkpoints()
    # the app's default pair, chosen as the sidebar chooses it
    paths = args.models or [default_model(names, words) for words in DEFAULT_PAIR]
    cks = [load_checkpoint(p) for p in paths]
    data = args.photo.read_bytes()
    print(
        f"photo {args.photo.name} ({len(data) // 1024} KB), models {[Path(p).name for p in paths]}"
    )

    def upload() -> None:
        img = decode_image(data, args.photo.name)
        for ck in cks:
            figures(analyse(ck, img, args.photo.name), "jet")

    upload()  # warm-up
    analyses = [analyse(ck, decode_image(data, "p"), "p") for ck in cks]
    up = median_ms(upload, args.reps)
    change = median_ms(lambda: [figures(a, "viridis", False) for a in analyses], args.reps)
    print(f"library: upload -> all views, {len(cks)} models: {up:7.1f} ms   (goal < 1000 ms)")
    print(f"library: view change (colour map):        {change:7.1f} ms   (goal < 200 ms)")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    t0 = time.perf_counter()
    at.file_uploader(key="upload").set_value([(args.photo.name, data, "image/jpeg")]).run()
    first = time.perf_counter() - t0
    cm = []
    for c in ["viridis", "magma", "jet"]:
        t0 = time.perf_counter()
        at.selectbox(key="cmap").select(c).run()
        cm.append(time.perf_counter() - t0)
    assert not at.exception
    print(f"streamlit: upload -> page with all views:  {1000 * first:7.1f} ms")
    print(f"streamlit: view change rerun (median of 3): {1000 * statistics.median(cm):7.1f} ms")

    # ten images at once: the nine photos and the drawn gallery's first image
    photos = sorted(args.photo.parent.glob("*.JPEG"))[:9]
    files = [(p.name, p.read_bytes(), "image/jpeg") for p in photos]
    files.append(("tenth.jpg", data, "image/jpeg"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.run()
    t0 = time.perf_counter()
    at.file_uploader(key="upload").set_value(files).run()
    ten = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.selectbox(key="cmap").select("viridis").run()
    ten_change = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.radio(key="page").set_value(4).run()
    page_two = time.perf_counter() - t0
    assert not at.exception
    print(f"streamlit: {len(files)} images uploaded at once: {1000 * ten:7.1f} ms (first page)")
    print(f"streamlit: view change with {len(files)} images:  {1000 * ten_change:7.1f} ms")
    print(f"streamlit: to the second page of images:  {1000 * page_two:7.1f} ms")


if __name__ == "__main__":
    main()
