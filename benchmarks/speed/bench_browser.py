"""The app's speed as a visitor sees it: a real headless Chromium against `streamlit run`.

    python -m benchmarks.speed.bench_browser [--reps 3]

Measures the goals of the views issue, each until the pictures are drawn in the browser
(every image of the open tab loaded), not until the server is done:

0. the first page after the server started: until the uploader takes files (the script's
   imports: torch, the package);
1. ten photos uploaded at once: until the overview table is drawn (fresh server, models
   already loaded by one drawn image, no photo analysed before);
2. page load: until the uploader takes files (median of ``--reps`` new pages);
3. one photo uploaded: until both models' predictions and the default view (the token-map
   grids of the last module) are drawn (a photo never analysed before, each rep);
4. a view change on that photo: colour map, module, picked token; until every picture of
   the open tab has been redrawn;
5. a tab switch (Maps to Groups: until both models' group pictures are drawn; then to
   Pixel: until both models' pixel pickers are drawn) and a click on a pixel (until both
   models name the clicked cell).

The issue's goal for a tab switch, a token pick and a pixel click is 0.5 s; a colour map or
module change reruns the whole page (1 s).

Needs Debian's chromium (/usr/bin/chromium) and the shipped checkpoints. Prints one line
per measurement; the README quotes them with the machine they ran on.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

from PIL import Image, ImageOps

from vt_explorer.appserver import click_chart, running_app

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"

PICTURES_JS = """() => [...document.querySelectorAll('[role=tabpanel] img')]
    .filter(i => i.offsetParent !== null).map(i => i.complete && i.naturalWidth > 0 ? i.src : '')"""


def _variant(photo: Path, k: int) -> bytes:
    """A photo made new (never analysed before): mirrored and cropped by ``k`` pixels."""
    im = ImageOps.mirror(Image.open(photo).convert("RGB"))
    im = im.crop((k, k, im.width - k, im.height - k))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _until(check, timeout: float = 120.0) -> float:
    """Seconds until ``check()`` is true (polled every 20 ms)."""
    t0 = time.perf_counter()
    while not check():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the page never got there")
        time.sleep(0.02)
    return time.perf_counter() - t0


def _pictures(page) -> list[str]:
    return page.evaluate(PICTURES_JS)


def _redrawn(page, before: list[str], n: int):
    """A check: at least ``n`` pictures in the open tab, all loaded, none left from before."""

    def check() -> bool:
        now = _pictures(page)
        return len(now) >= n and all(now) and not set(now) & set(before)

    return check


def _upload(page, files: list[tuple[str, bytes]]) -> None:
    payload = [{"name": n, "mimeType": "image/jpeg", "buffer": b} for n, b in files]
    page.locator(".st-key-upload input[type=file]").set_input_files(payload)


def _choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox whose widget key is ``key``."""
    page.locator(f".st-key-{key}").click()
    page.get_by_role("option", name=option, exact=True).click()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _charts(page, css: str, n: int):
    """A check: at least ``n`` Plotly charts holding ``css`` drawn in the open tab."""
    sel = f"[role=tabpanel] .js-plotly-plot:has({css})"
    return lambda: page.locator(sel).count() >= n


def _pixel_click(page, r: int, c: int, side: int = 14) -> None:
    """Click cell (r, c) of the first pixel picker (a ``side`` x ``side`` grid)."""
    pickers = page.locator("[role=tabpanel] .js-plotly-plot:has(.imagelayer image)")
    click_chart(page, pickers.first, (c + 0.5) / side, (r + 0.5) / side)


def run(url: str, reps: int) -> list[tuple[str, float, float]]:
    """[(what, seconds, goal)] measured against the app at ``url``."""
    from playwright.sync_api import sync_playwright

    photos = sorted(PHOTOS.glob("*.JPEG"))
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
        )
        page = browser.new_page(viewport={"width": 1500, "height": 2400})
        t0 = time.perf_counter()
        page.goto(url)
        page.locator(".st-key-upload input[type=file]").wait_for(state="attached")
        out.append(("first page load after start: uploader", time.perf_counter() - t0, 3.0))
        # warm-up: both models loaded once (a server's one-time cost), with a drawn image
        page.locator(".st-key-upload input[type=file]").wait_for(state="attached")
        _upload(page, [("warm.jpg", _variant(photos[0], 40))])
        page.get_by_role("heading", name="warm.jpg").wait_for(timeout=300_000)
        ten = [(f"p{i}.jpg", _variant(photos[i % len(photos)], 2 + i)) for i in range(10)]
        page.goto(url)
        page.locator(".st-key-upload input[type=file]").wait_for(state="attached")
        t0 = time.perf_counter()
        _upload(page, ten)
        # the table (its line "10 images." is drawn with it: an upload in progress may rerun
        # the page with fewer), then the first image's heading
        page.get_by_text("10 images.").wait_for(timeout=300_000)
        page.locator(".st-key-overview").wait_for(timeout=300_000)
        page.get_by_role("heading", name="p0.jpg").wait_for(timeout=300_000)
        out.append(("ten photos: overview table drawn", time.perf_counter() - t0, 5.0))
        loads = []
        for _ in range(reps):
            fresh = browser.new_page(viewport={"width": 1500, "height": 2400})
            t0 = time.perf_counter()
            fresh.goto(url)
            fresh.locator(".st-key-upload input[type=file]").wait_for(state="attached")
            loads.append(time.perf_counter() - t0)
            fresh.close()
        out.append(("page load: uploader usable", statistics.median(loads), 3.0))
        uploads, cmap, module, token, tabs, pixel = [], [], [], [], [], []
        for r in range(reps):
            page.goto(url)  # nothing uploaded, no gallery asked for: an empty page
            page.locator(".st-key-upload input[type=file]").wait_for(state="attached")
            gallery = _pictures(page)
            t0 = time.perf_counter()
            _upload(page, [(f"one{r}.jpg", _variant(photos[r % len(photos)], 60 + r))])
            page.get_by_role("heading", name=f"one{r}.jpg").wait_for(timeout=120_000)
            _until(_redrawn(page, gallery, 2), 120)
            uploads.append(time.perf_counter() - t0)
            before = _pictures(page)
            t0 = time.perf_counter()
            _choose(page, "cmap", ["viridis", "magma", "inferno"][r % 3])
            _until(_redrawn(page, before, 2))
            cmap.append(time.perf_counter() - t0)
            before = _pictures(page)
            t0 = time.perf_counter()
            _choose(page, "module", "module 1")
            _until(_redrawn(page, before, 2))
            module.append(time.perf_counter() - t0)
            before = _pictures(page)
            t0 = time.perf_counter()
            _choose(page, "token-0", "t3")
            _until(_redrawn(page, before, 2))
            token.append(time.perf_counter() - t0)
            before = _pictures(page)
            _choose(page, "module", "the last (default)")
            _until(_redrawn(page, before, 2))
            before = _pictures(page)
            t0 = time.perf_counter()
            _tab(page, "Groups")
            _until(_redrawn(page, before, 2))
            tabs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _tab(page, "Pixel")
            _until(_charts(page, ".imagelayer image", 2))
            tabs.append(time.perf_counter() - t0)
            time.sleep(0.5)  # the charts settle before they take clicks
            for r_, c_ in ((3 + r, 5), (9, 2 + r)):
                t0 = time.perf_counter()
                _pixel_click(page, r_, c_)
                named = page.get_by_text(f"Cell row {r_ + 1}, column {c_ + 1} of")
                _until(lambda n=named: n.count() >= 2)
                pixel.append(time.perf_counter() - t0)
            page.get_by_role("button", name="Clear pixel").click()
            _tab(page, "Maps")
        out.append(("one photo: predictions and token maps drawn", statistics.median(uploads), 2.0))
        out.append(("view change: colour map", statistics.median(cmap), 1.0))
        out.append(("view change: module", statistics.median(module), 1.0))
        out.append(("view change: token picked", statistics.median(token), 0.5))
        out.append(("tab switch (Groups, Pixel)", statistics.median(tabs), 0.5))
        out.append(("pixel click: both models name the cell", statistics.median(pixel), 0.5))
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement")
    args = parser.parse_args()
    with running_app(timeout=120) as url:
        for what, seconds, goal in run(url, args.reps):
            verdict = "met" if seconds < goal else "NOT met"
            print(f"{what:<46} {seconds:6.2f} s  (goal < {goal:g} s: {verdict})", flush=True)


if __name__ == "__main__":
    main()
