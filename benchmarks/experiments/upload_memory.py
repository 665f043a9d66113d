"""Server memory of one browser tab that uploads many checkpoints in a row (issue 30, item 2),
measured with a real `streamlit run` server and headless Chromium (AppTest bypasses
Streamlit's upload store, so only a real server shows what it keeps).

    python -m benchmarks.experiments.upload_memory [--uploads 12] [--base CHECKPOINT]

Each upload is a different pair (the base checkpoint with one bias changed, so every pair
has its own hash) put into the sidebar's own-checkpoint uploader; after each, the page must
say it is loaded, and the server process's resident memory (VmRSS) is read. Prints the
memory after the first upload, after each later one, and the growth per upload after the
first few (the app holds one loaded model per tab and lets go of the uploaded bytes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vt_explorer.appserver import running_app, wait_idle
from vt_explorer.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def server_pid(port: str) -> int:
    """The pid of the streamlit process serving ``port``."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "streamlit" in cmd and f"--server.port={port}" in cmd:
                return int(proc.name)
    raise RuntimeError(f"no streamlit process on port {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--uploads", type=int, default=12, help="checkpoint pairs uploaded in a row")
    p.add_argument(
        "--base",
        default=str(ROOT / "checkpoints" / "imagenet-lite0-pool-vt-filter-diverse"),
        help="the checkpoint whose variants are uploaded (default: a 40 MB pair)",
    )
    args = p.parse_args()
    base = load_checkpoint(args.base)
    size = Path(args.base + ".safetensors").stat().st_size / 2**20
    rss = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_app(timeout=90) as url,
        sync_playwright() as pw,
    ):
        pid = server_pid(url.rsplit(":", 1)[1])
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless"]
        )
        page = browser.new_page(viewport={"width": 1500, "height": 2400})
        page.goto(url)
        page.locator(".st-key-upload input[type=file]").wait_for(state="attached")
        for i in range(args.uploads):
            with torch.no_grad():
                next(p for p in base.model.parameters() if p.ndim == 1).add_(1e-3)
            stem = Path(tmp) / f"pair{i}"
            save_checkpoint(base.model, stem)
            files = [str(stem) + ".safetensors", str(stem) + ".json"]
            wait_idle(page)
            page.locator('[class*="st-key-ck_upload"] input[type=file]').set_input_files(files)
            loaded = page.get_by_text(f"Loaded: yours: pair{i}")
            refused = page.get_by_text("Cannot use that checkpoint")
            loaded.or_(refused).first.wait_for(timeout=300_000)
            if refused.count():
                raise RuntimeError(refused.first.inner_text())
            wait_idle(page)
            time.sleep(1)
            rss.append(rss_mb(pid))
            print(f"upload {i + 1}: server RSS {rss[-1]:.0f} MB", flush=True)
        browser.close()
    later = rss[3:] if len(rss) > 4 else rss
    per = (later[-1] - later[0]) / max(1, len(later) - 1)
    print(
        f"{args.uploads} uploads of a {size:.0f} MB pair: RSS {rss[0]:.0f} MB after the first, "
        f"{rss[-1]:.0f} MB after the last; {per:+.1f} MB per upload after the third"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
