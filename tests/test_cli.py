"""The command line: `vt-explorer info`."""

from __future__ import annotations

import json
import subprocess
import sys

from vt_explorer.cli import main


def test_info_json(capsys) -> None:
    assert main(["info", "-m", "vt_resnet20", "-m", "resnet20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"vt_resnet20", "resnet20"}
    vt = out["vt_resnet20"]
    assert vt["flops"] == 2 * vt["macs"] and vt["input_size"] == 32
    assert set(vt["stages"]) == {"stem", "layer1", "layer2", "vt", "head"}
    assert sum(s["params"] for s in vt["stages"].values()) == vt["params"]


def test_info_table(capsys) -> None:
    assert main(["info", "-m", "vt_resnet18"]) == 0
    out = capsys.readouterr().out
    assert "vt_resnet18" in out and "GMACs" in out and "vt " in out


def test_info_unknown_model(capsys) -> None:
    assert main(["info", "-m", "bogus"]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "vt_explorer", "info", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--input-size" in res.stdout and "--json" in res.stdout


def test_predict_reports_bad_files_and_keeps_going(tmp_path, capsys) -> None:
    from vt_explorer.checkpoint import save_checkpoint
    from vt_explorer.model import create_model

    from .imagegen import make_image

    save_checkpoint(create_model("vt_resnet20"), tmp_path / "ck")
    make_image((200, 10, 10), 300).save(tmp_path / "big.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code = main(["predict", str(tmp_path / "ck"), str(tmp_path), "--json", "--top", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken.jpg" in captured.err
    (res,) = json.loads(captured.out)
    assert res["image"].endswith("big.png") and len(res["top"]) == 3
    probs = [p["probability"] for p in res["top"]]
    assert probs == sorted(probs, reverse=True)


def test_ctrl_c_is_one_line_saying_how_to_resume(monkeypatch, capsys) -> None:
    """KeyboardInterrupt in a command: exit status 130 and one line, no traceback; train and
    distill say how to continue."""
    import vt_explorer.train as train_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train", interrupted)
    argv = ["train", "--config", "vt_resnet20", "--train", "x", "--out", "o"]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "interrupted; re-run the same command with --resume to continue after the last "
        "finished epoch"
    ]
