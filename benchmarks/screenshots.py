"""The README's app screenshots: start the app, upload a photo in headless Chromium and save
one screenshot per view into docs/.

    python benchmarks/screenshots.py [--photo PATH] [--out docs]

Needs Debian's chromium (/usr/bin/chromium; `bash scripts/test.sh` installs it) and the
shipped checkpoints. Writes app-upload.png (default comparison, token maps),
app-groups.png (semantic groups tab), app-attention.png (token attention tab) and
app-faithfulness.png (the faithfulness expander).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from vt_explorer.appserver import running_app

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT.parent / "shared" / "data" / "photos" / "n02123045_tabby.JPEG"


def main() -> None:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photo", default=str(PHOTO))
    p.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    with running_app(timeout=60) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
        )
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url, wait_until="domcontentloaded")
        page.locator(".st-key-upload input[type=file]").wait_for(state="attached", timeout=120_000)
        page.locator(".st-key-upload input[type=file]").set_input_files(args.photo)
        name = os.path.basename(args.photo)
        heading = page.get_by_role("heading", name=name)
        heading.wait_for(timeout=180_000)
        for i in range(2):  # both models of the default comparison
            page.get_by_text(" predicts ").nth(i).wait_for(timeout=180_000)
        time.sleep(3)
        heading.scroll_into_view_if_needed()
        page.screenshot(path=str(out / "app-upload.png"))
        shots = [
            ("Groups", "app-groups.png"),
            ("Attention", "app-attention.png"),
        ]
        for tab, fname in shots:
            for t in page.get_by_role("tab", name=tab, exact=True).all()[:2]:
                t.click()
            time.sleep(2)
            page.get_by_role("tab", name=tab, exact=True).first.scroll_into_view_if_needed()
            page.screenshot(path=str(out / fname))
        exp = page.get_by_text("Can these maps be trusted?").first
        exp.click()
        time.sleep(3)
        exp.scroll_into_view_if_needed()
        page.screenshot(path=str(out / "app-faithfulness.png"))
        browser.close()
    print("wrote", ", ".join(sorted(f.name for f in out.glob("app-*.png"))))


if __name__ == "__main__":
    main()
