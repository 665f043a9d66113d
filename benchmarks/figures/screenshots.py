"""The README's app screenshots: start the app, upload photos in headless Chromium and save
one screenshot per view into docs/.

    python -m benchmarks.figures.screenshots [--photo PATH ...] [--out docs]

Needs Debian's chromium (/usr/bin/chromium; `bash scripts/test.sh` installs it) and the
shipped checkpoints. By default the images are the project's own drawn examples
(``vt_explorer.examples``), so the committed screenshots hold no copy of the shared photos;
``--photo`` takes your own (the first gets the per-view shots). Writes (JPEG, the default
comparison):

* app-overview.jpg: every image uploaded, the overview table;
* app-predictions.jpg: both models' top-5, the pickers and the tab bar;
* app-view-<tab>.jpg for every tab (Maps, Groups, Projector, Attention, Fig. 6, Pixel,
  Table, Checks, All modules), with a pixel clicked on the image and token t3 picked, and
  a clicked attention cell in the Attention view; the last module of each model, except
  for Projector (module 1: the last modules of the default pair have no projector).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vt_explorer.appserver import click_chart, running_app, wait_idle
from vt_explorer.ui.image import VIEWS

ROOT = Path(__file__).resolve().parents[2]
TABS = list(VIEWS)  # every tab the page offers, in its order


def _clip(page, top, bottom_of, height: int = 1500, scroll: bool = True) -> dict:
    """The screenshot area from ``top``'s top to ``bottom_of``'s bottom (at most ``height``),
    ``top`` first scrolled to the top of the window (``scroll``)."""
    if scroll:
        top.evaluate("e => e.scrollIntoView({block: 'start'})")
    y0 = max(0, top.bounding_box()["y"] - 10)
    box = bottom_of.bounding_box()
    y1 = min(box["y"] + box["height"] + 10, y0 + height)
    return {"x": 0, "y": y0, "width": page.viewport_size["width"], "height": y1 - y0}


def drawn_examples(folder: Path) -> list[str]:
    """The project's drawn example images, written as PNG files into ``folder``."""
    from vt_explorer.examples import example_images

    paths = []
    for name, img in example_images().items():
        path = folder / (name.replace(" (drawn)", "").replace(" ", "_") + ".png")
        img.save(path)
        paths.append(str(path))
    return paths


def overview(page, url: str, images: list[str], out: Path) -> None:
    """Every image at once: the overview table."""
    page.goto(url)
    page.locator(".st-key-upload input[type=file]").wait_for(state="attached", timeout=120_000)
    page.locator(".st-key-upload input[type=file]").set_input_files(images)
    table = page.locator(".st-key-overview")
    table.wait_for(timeout=180_000)
    wait_idle(page, 3)
    line = page.get_by_text(f"{len(images)} images.").first
    page.screenshot(
        path=str(out / "app-overview.jpg"),
        type="jpeg",
        quality=80,
        clip=_clip(page, line, table, scroll=False),
    )


def views(page, url: str, photo: str, out: Path) -> None:
    """One photo: predictions, then every tab with a pixel and a token picked."""
    page.goto(url)
    page.locator(".st-key-upload input[type=file]").wait_for(state="attached", timeout=120_000)
    page.locator(".st-key-upload input[type=file]").set_input_files(photo)
    heading = page.get_by_role("heading", name=Path(photo).name)
    heading.wait_for(timeout=180_000)
    page.get_by_text("Tile labels:").nth(1).wait_for(timeout=180_000)
    wait_idle(page, 1.5)
    tablist = page.get_by_role("tablist").first
    page.screenshot(
        path=str(out / "app-predictions.jpg"),
        type="jpeg",
        quality=80,
        clip=_clip(page, heading, tablist),
    )
    page.get_by_role("tab", name="Pixel", exact=True).click()
    page.get_by_text("Click the image to pick").first.wait_for(timeout=60_000)
    wait_idle(page, 1.5)
    pickers = page.locator(".js-plotly-plot").filter(has=page.locator(".imagelayer image"))
    click_chart(page, pickers.first, 0.45, 0.3)
    page.get_by_text("Cell row").first.wait_for(timeout=60_000)
    page.locator(".st-key-token-0").click()
    page.get_by_role("option", name="t3", exact=True).click()
    wait_idle(page, 1.5)
    for tab in TABS:
        if tab == "Projector":  # the last modules of the default pair have no projector
            _choose_module(page, "module 1")
        page.get_by_role("tab", name=tab, exact=True).click()
        wait_idle(page, 2)
        if tab == "Attention":
            heat = page.locator(".js-plotly-plot").filter(has=page.locator(".hm"))
            click_chart(page, heat.first, 5.5 / 16, 2.5 / 16)
            page.get_by_text("reads (query)").first.wait_for(timeout=60_000)
            wait_idle(page, 2)
        panel = page.get_by_role("tabpanel").first
        name = tab.lower().replace(". ", "").replace(" ", "-")
        page.screenshot(
            path=str(out / f"app-view-{name}.jpg"),
            type="jpeg",
            quality=80,
            clip=_clip(page, tablist, panel),
        )
        if tab == "Projector":
            _choose_module(page, "the last (default)")


def _choose_module(page, option: str) -> None:
    """The sidebar's VT module picker."""
    page.locator(".st-key-module").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page, 2)


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--photo",
        nargs="*",
        default=None,
        help="your own images (default: the drawn examples); the first gets the per-view shots",
    )
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder to write into")
    p.add_argument(
        "--width", type=int, default=1500, help="browser width in px (1000: a small laptop)"
    )
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_app(timeout=60) as url,
        sync_playwright() as pw,
    ):
        images = args.photo or drawn_examples(Path(tmp))
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
        )
        page = browser.new_page(viewport={"width": args.width, "height": 2400})
        overview(page, url, images, out)
        views(page, url, images[0], out)
        browser.close()
    print("wrote", ", ".join(sorted(f.name for f in out.glob("app-*.jpg"))))


if __name__ == "__main__":
    main()
