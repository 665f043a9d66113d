"""Replay issue 13's attacks against this checkout and print one line per attack.

    python -m benchmarks.experiments.hostile [--uploads 50]

Each line says HOLDS or FAILS and what was seen: damaged CIFAR archives given to `eval`,
a thin image and a hostile card uploaded through the app (Streamlit's AppTest), no
server path reachable from the browser, hand-edited cards, concurrent randomisation
checks, resume and flag edges, the upload limit, and the memory of one browser session
that uploads ``--uploads`` different checkpoints in a row (the app keeps one per tab).
Exit code 1 when any attack is not held. Takes about two minutes on the 2-core VM.

What it adds beyond ``tests/test_hostile.py`` (cards, flags, resume states and uploads at
test scale): damaged real CIFAR archives given to ``eval``, the thin image and hostile card
uploaded through the app, concurrent randomisation checks from several threads, and
``--uploads`` checkpoints uploaded in one browser session with the memory growth printed:
end to end on the shipped data, too slow for the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vt_explorer.analysis import randomisation_check
from vt_explorer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vt_explorer.cli import main
from vt_explorer.model import create_model

ROOT = Path(__file__).resolve().parents[2]

CIFAR_TEST = ROOT.parent / "shared" / "data" / "cifar10" / "test.tar.gz"
APP = str(ROOT / "app.py")
RESULTS: list[bool] = []


def report(name: str, ok: bool, seen: str) -> None:
    RESULTS.append(ok)
    print(f"{'HOLDS' if ok else 'FAILS'}  {name}: {seen}", flush=True)


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cli(*argv: str) -> tuple[int, list[str]]:
    """Run the CLI in a subprocess: (exit code, stderr lines that are not progress bars)."""
    p = subprocess.run(
        [sys.executable, "-m", "vt_explorer", *argv], capture_output=True, text=True, cwd=ROOT
    )
    parts = p.stderr.replace("\r", "\n").splitlines()  # progress bars end in \r
    lines = [x for x in parts if x.strip() and "img/s" not in x and "%|" not in x]
    return p.returncode, lines


def one_line(code: int, lines: list[str]) -> bool:
    return code == 2 and len(lines) == 1 and "Traceback" not in lines[0]


def archives(tmp: Path, ck: str) -> None:
    if not CIFAR_TEST.is_file():
        report("damaged archives", False, f"{CIFAR_TEST} not found")
        return
    data = CIFAR_TEST.read_bytes()
    flipped = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 64):
        flipped[i] ^= 0xFF
    (tmp / "flipped.tar.gz").write_bytes(bytes(flipped))
    (tmp / "truncated.tar.gz").write_bytes(data[: len(data) // 2])
    for name in ("flipped.tar.gz", "truncated.tar.gz"):
        code, lines = cli("eval", ck, str(tmp / name))
        ok = one_line(code, lines) and f"{name}: damaged archive" in lines[0]
        report(
            f"eval on a {name.split('.')[0]} CIFAR test archive",
            ok,
            (lines or ["(nothing)"])[-1][-150:],
        )


def files(tmp: Path, ck: str) -> None:
    """Issue 30, items 4, 5 and 10: what files the tools read, and how."""
    import hashlib
    import tarfile

    img = Image.new("RGB", (32, 32), (200, 30, 30))
    for fmt in ("ICO", "TGA", "PCX", "EPS"):
        fake = tmp / f"{fmt.lower()}-named.png"
        img.save(fake, fmt)
        code, lines = cli("predict", ck, str(fake))
        ok = code == 1 and any("not an image (JPEG, PNG" in x for x in lines)
        report(f"a {fmt} file named .png", ok, (lines or ["(nothing)"])[-1][-110:])
    from vt_explorer.data import decode_image

    ramp = np.tile(np.linspace(0, 1000, 64, dtype=np.float32), (4, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp, mode="F").save(buf, "TIFF")
    row = np.asarray(decode_image(buf.getvalue(), "f.tif"))[0, :, 0]
    report("a float32 TIFF (0-1000)", row[0] == 0 and row[-1] == 255, f"row {row[:3]}...{row[-3:]}")
    model = create_model("vt_resnet20")
    digests = {
        hashlib.sha256(save_checkpoint(model, tmp / f"same{i}")[0].read_bytes()).hexdigest()
        for i in range(4)
    }
    report("the same weights saved four times", len(digests) == 1, f"{len(digests)} hashes")
    good = io.BytesIO()
    img.save(good, "PNG")
    with tarfile.open(tmp / "lost.tar.gz", "w:gz") as tar:
        for member, data in (
            ("cat/a.png", good.getvalue()),
            ("bird/a.png", good.getvalue()),
            ("dog/a.png", b"not an image"),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    code, lines = cli("eval", ck, str(tmp / "lost.tar.gz"))
    ok = code == 2 and any("without a readable image: dog" in x for x in lines)
    report("an archive whose 'dog' files are all unreadable", ok, (lines or ["-"])[-1][-110:])


def stale(tmp: Path) -> None:
    """Issue 30, item 3: a weights file replaced on the server; the page shows the new
    model's answer, not a cached one (AppTest, the example gallery)."""
    from streamlit.testing.v1 import AppTest

    folder = tmp / "stale"
    folder.mkdir()

    def favouring(cls: int) -> None:
        torch.manual_seed(0)
        model = create_model("vt_resnet20")
        with torch.no_grad():
            model.fc.bias.zero_()
            model.fc.bias[cls] = 50.0
        save_checkpoint(model, folder / "cifar10-vt-recurrent")

    favouring(3)
    os.environ["VT_EXPLORER_CHECKPOINTS"] = str(folder)
    try:
        at = AppTest.from_file(APP, default_timeout=300).run()
        at.toggle(key="examples").set_value(True).run()
        favouring(5)
        at.run()
        said = [m.value for m in at.markdown if " predicts " in m.value]
        ok = bool(said) and all("**dog**" in x for x in said)  # CIFAR-10 class 5
        report("a weights file replaced on the server", ok, (said or ["-"])[0][:110])
    finally:
        del os.environ["VT_EXPLORER_CHECKPOINTS"]


def cards(tmp: Path) -> None:
    stem = tmp / "card"
    save_checkpoint(create_model("vt_resnet20"), stem)
    good = json.loads(stem.with_suffix(".json").read_text())
    edits = {
        "classes: 10": ("classes", 10),
        'format_version: "9"': ("format_version", "9"),
        "mean: [0.5]": ("mean", [0.5]),
        'resize: "zoom"': ("resize", "zoom"),
        "tokens: -5": ("config.vt.tokens", -5),
        'input_size: "abc"': ("input_size", "abc"),
        "token_dim: 60000": ("config.vt.token_dim", 60000),
        "token_dim: 16000 (in range, wrong shapes)": ("config.vt.token_dim", 16000),
        "input_size: 2048 (in range, over the server's budget)": ("input_size", 2048),
        'metrics: {"accuracy": "hi"}': ("metrics", {"accuracy": "hi", "n": 1}),
        'hardware: ["x"]': ("hardware", ["x"]),
    }
    for label, (path, value) in edits.items():
        card = json.loads(json.dumps(good))
        d = card
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
        card.pop("weights_sha256")
        stem.with_suffix(".json").write_text(json.dumps(card))
        before = rss_mb()
        try:
            load_checkpoint(stem)
            report(f"card {label}", False, "loaded")
        except CheckpointError as err:
            grew = rss_mb() - before
            ok = "\n" not in str(err) and "card.json" in str(err) and grew < 100
            report(
                f"card {label}", ok, f"{str(err).split('card.json: ')[-1][:110]} (+{grew:.0f} MB)"
            )
    stem.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    try:
        load_checkpoint(stem)
        report("card nested 100,000 deep", False, "loaded")
    except CheckpointError as err:
        report("card nested 100,000 deep", True, str(err).split("card.json: ")[-1])
    from vt_explorer.preprocess import Preprocess

    before = rss_mb()
    x = Preprocess(224, (0.5,) * 3, (0.5,) * 3, "center_crop")(Image.new("RGB", (60_000, 1)))
    report(
        "center_crop of a 60000x1 image",
        x.shape == (3, 224, 224),
        f"{tuple(x.shape)}, +{rss_mb() - before:.0f} MB",
    )


def concurrency() -> None:
    torch.manual_seed(0)
    model = create_model("vt_resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    out: list[np.ndarray] = []
    lock = threading.Lock()

    def run() -> None:
        r = randomisation_check(model, x, seed=0).correlation
        with lock:
            out.append(r)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spread = max(float(np.abs(r - out[0]).max()) for r in out)
    report("4 concurrent randomisation checks", spread == 0.0, f"max difference {spread}")


def flags(tmp: Path, ck: str) -> None:
    argvs = [
        ["predict", ck, "x.png", "--top", "-1"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--batch-size", "0"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--lr", "nan"],
        [
            "train",
            "--config",
            "vt_resnet20",
            "--train",
            str(tmp),
            "--out",
            "O",
            "--set",
            "tokens=-3",
        ],
        ["explain", "x.png", "-c", ck, "--out", "O", "--cmap", "nosuchmap"],
        ["explain", "x.png", "-c", ck, "--out", "O", "--random-orders", "1000000000"],
        ["info", "--input-size", "0"],
        ["tokens", ck, "D", "--out", "O", "--batch-size", "0"],
    ]
    for argv in argvs:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = int(e.code or 0)
        lines = err.getvalue().strip().splitlines()
        report(
            " ".join(argv[:1] + argv[-2:]),
            one_line(code, lines),
            (lines or ["(nothing)"])[-1][-110:],
        )
    (tmp / "empty").mkdir(exist_ok=True)
    code, lines = cli("predict", ck, str(tmp / "empty"))
    report("predict on an empty folder", one_line(code, lines), (lines or ["(nothing)"])[-1][-110:])
    fifo = tmp / "pipe.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    code, lines = cli("predict", ck, str(fifo))
    report(
        "predict on a FIFO",
        code == 1 and lines == [f"error: {fifo}: not a regular file"],
        (lines or ["(nothing)"])[-1][-110:],
    )
    used = tmp / "used"
    used.mkdir(exist_ok=True)
    (used / "mine.txt").write_text("keep")
    code, lines = cli("explain", __file__, "-c", ck, "--out", str(used), "--overwrite")
    ok = code == 2 and (used / "mine.txt").is_file()
    report(
        "explain --overwrite into a folder that is not an explain output",
        ok,
        (lines or ["(nothing)"])[-1][-110:],
    )
    (tmp / "run.resume.pt").write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 4)
    code, lines = cli(
        "train",
        "--config",
        "vt_resnet20",
        "--train",
        str(tmp),
        "--out",
        str(tmp / "run"),
        "--resume",
    )
    ok = one_line(code, lines) and "weights_only" not in lines[0]
    report("--resume with a pickled file", ok, (lines or ["(nothing)"])[-1][-110:])


def _ck_uploader(at):
    """The sidebar's own-checkpoint uploader of the latest run (a refused pair replaces it
    with an empty one under a new key)."""
    return next(u for u in at.sidebar.file_uploader if u.key.startswith("ck_upload"))


def app(tmp: Path, uploads: int) -> None:
    from streamlit.testing.v1 import AppTest

    os.chdir(ROOT)  # .streamlit/config.toml
    at = AppTest.from_file(APP, default_timeout=300).run()
    report(
        "no free-text path in the sidebar",
        len(at.text_input) == 0,
        f"{len(at.text_input)} text inputs; models offered by name: "
        f"{', '.join(at.selectbox(key='model_a').options[:3])}...",
    )
    import streamlit as st

    limit = st.get_option("server.maxUploadSize")
    label = at.file_uploader(key="upload").label
    report("upload limit", limit == 64 and f"{limit} MB" in label, f"server {limit} MB; {label}")
    at.checkbox(key="compare").uncheck()
    strip = io.BytesIO()
    Image.new("RGB", (1000, 2), (200, 0, 0)).save(strip, "PNG")
    photo = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 120, 0)).save(photo, "PNG")
    at.file_uploader(key="upload").set_value(
        [("strip.png", strip.getvalue(), "image/png"), ("ok.png", photo.getvalue(), "image/png")]
    ).run()
    errs = [e.value for e in at.error]
    ok = not at.exception and any("too thin" in e for e in errs) and len(at.subheader) == 1
    report("a 1000x2 PNG beside a photo", ok, (errs or ["-"])[0][:110])
    # one session uploads many different checkpoints: it holds only the last one
    stem = tmp / "mine"
    rss = []
    for i in range(uploads):
        torch.manual_seed(i)
        save_checkpoint(create_model("vt_resnet20"), stem)
        files = [
            (f"mine.{s}", stem.with_suffix(f".{s}").read_bytes(), "application/json")
            for s in ("safetensors", "json")
        ]
        _ck_uploader(at).set_value(files).run()
        rss.append(rss_mb())
    ok = not at.exception and at.selectbox(key="model_a").value.startswith("upload:")
    grow = rss[-1] - rss[min(9, len(rss) - 1)]
    report(
        f"{uploads} checkpoints uploaded in one tab",
        ok and grow < 150,
        f"RSS {rss[0]:.0f} MB after the first, {rss[min(9, len(rss) - 1)]:.0f} MB after 10, "
        f"{rss[-1]:.0f} MB after {uploads}",
    )
    bad = json.loads(stem.with_suffix(".json").read_text())
    bad["config"]["vt"]["tokens"] = -5
    files = [
        ("evil.safetensors", stem.with_suffix(".safetensors").read_bytes(), "x"),
        ("evil.json", json.dumps(bad).encode(), "application/json"),
    ]
    _ck_uploader(at).set_value(files).run()
    errs = [e.value for e in at.sidebar.error]
    ok = (
        not at.exception
        and len(errs) == 1
        and "vt-upload" not in errs[0]
        and str(tmp) not in errs[0]
    )
    report("a hostile card uploaded in the app", ok, (errs or ["-"])[0][:120])


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=50, help="checkpoints uploaded in one tab")
    args = parser.parse_args()
    ck = str(ROOT / "checkpoints" / "cifar10-vt-recurrent")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["VT_EXPLORER_CACHE"] = str(tmp / "cache")
        archives(tmp, ck)
        files(tmp, ck)
        stale(tmp)
        cards(tmp)
        concurrency()
        flags(tmp, ck)
        app(tmp, args.uploads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{sum(RESULTS)} of {len(RESULTS)} attacks held; peak RSS {peak:.0f} MB")
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    raise SystemExit(main_())
