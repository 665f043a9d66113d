"""Start the Streamlit app in a subprocess and wait until it answers (browser tests, the
README's screenshots, scripted demos).

    with running_app(checkpoints="checkpoints") as url:
        ...  # drive ``url`` with Playwright, requests, ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent.parent / "app.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_app(
    checkpoints: str | os.PathLike | None = None,
    app: str | os.PathLike = APP,
    port: int | None = None,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless on 127.0.0.1 and yield its URL once its health
    endpoint answers; the server is stopped on exit.

    Args:
        checkpoints: folder of checkpoints the app lists (``VT_EXPLORER_CHECKPOINTS``);
            None keeps the app's default (``checkpoints/`` next to ``app.py``).
        app: the Streamlit script (the repository's ``app.py``).
        port: TCP port (default: a free one).
        timeout: seconds to wait for the server to answer.

    Raises:
        FileNotFoundError: ``app`` does not exist.
        TimeoutError: the server did not answer within ``timeout`` seconds (or exited).
    """
    app = Path(app)
    if not app.is_file():
        raise FileNotFoundError(f"{app}: no such Streamlit script")
    port = port or free_port()
    env = dict(os.environ)
    if checkpoints is not None:
        env["VT_EXPLORER_CHECKPOINTS"] = str(checkpoints)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true"]
    cmd += [f"--server.port={port}", "--server.address=127.0.0.1"]
    cmd += ["--browser.gatherUsageStats=false"]
    proc = subprocess.Popen(
        cmd, cwd=app.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise TimeoutError(f"streamlit exited with code {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- driving the running app from Playwright (the browser test, screenshots, benchmarks) ---


def wait_idle(page: Any, quiet: float = 1.0, timeout: float = 60.0) -> None:
    """Wait until a Playwright ``page`` of the app has not been running for ``quiet`` seconds
    (no status widget): a click that lands during a rerun may hit a widget about to be
    replaced. AssertionError after ``timeout`` seconds."""
    deadline, since = time.time() + timeout, time.time()
    while time.time() - since < quiet:
        assert time.time() < deadline, "the app never went idle"
        if page.locator('[data-testid="stStatusWidget"]').count():
            since = time.time()
        time.sleep(0.1)


def click_chart(page: Any, chart: Any, fx: float, fy: float) -> None:
    """Click a Plotly ``chart`` (a locator) at fractions ``fx``, ``fy`` of its plotting area,
    as a visitor's mouse does."""
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
