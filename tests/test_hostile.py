"""Hostile and broken input (issue 13): hand-edited cards, foreign resume files, odd images,
out-of-range flags. Each must end in one line naming the culprit, never a traceback, never
a model bigger than the weights file, never a partial result."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vt_explorer.checkpoint as checkpoint_module
from vt_explorer.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_checkpoint_bytes,
    read_card,
    save_checkpoint,
)
from vt_explorer.cli import main
from vt_explorer.model import create_model
from vt_explorer.preprocess import Preprocess
from vt_explorer.train import TrainArgs, TrainInterrupted, train

from .imagegen import make_dataset, make_image

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def stem(tmp_path) -> Path:
    model = create_model("vt_resnet20", num_classes=3, classes=("a", "b", "c"))
    save_checkpoint(model, tmp_path / "ck")
    return tmp_path / "ck"


def _edit(stem: Path, change) -> None:
    card_path = stem.with_suffix(".json")
    card = json.loads(card_path.read_text())
    change(card)
    card_path.write_text(json.dumps(card))


def _set(path: str, value):
    def change(card: dict) -> None:
        *parents, last = path.split(".")
        d = card
        for p in parents:
            d = d[p]
        d[last] = value

    return change


# (card edit, the field the one-line message must name)
BAD_CARDS = {
    "classes: 10": (_set("classes", 10), "classes"),
    "format_version '9'": (_set("format_version", "9"), "format_version"),
    "format_version 99": (_set("format_version", 99), "newer than this vt_explorer"),
    "mean [0.5]": (_set("mean", [0.5]), "mean"),
    "std 0": (_set("std", [0.2, 0.0, 0.2]), "std[1]"),
    "resize zoom": (_set("resize", "zoom"), "resize"),
    "interpolation lanczos": (_set("interpolation", "lanczos"), "interpolation"),
    "tokens -5": (_set("config.vt.tokens", -5), "config.vt.tokens"),
    "tokens 3.5": (_set("config.vt.tokens", 3.5), "config.vt.tokens"),
    "input_size abc": (_set("input_size", "abc"), "input_size"),
    "input_size 10^9": (_set("input_size", 10**9), "input_size"),
    "token_dim 60000": (_set("config.vt.token_dim", 60000), "config.vt.token_dim"),
    "family nope": (_set("config.family", "nope"), "config.family"),
    "widths strings": (_set("config.widths", ["a"]), "config.widths[0]"),
    "unknown vt field": (_set("config.vt.evil", 1), "unknown fields"),
    "class names not strings": (_set("classes", [1, 2, 3]), "classes"),
    "num_classes mismatch": (_set("config.num_classes", 4), "class names for 4 outputs"),
    "extra nested": (_set("config.extra", {"a": {"b": 1}}), "config.extra.a"),
    "metrics a list": (_set("metrics", [1]), "metrics"),
    # the fields the card panel shows (issue 30, item 6)
    "accuracy hi": (_set("metrics", {"accuracy": "hi", "n": 3}), "metrics.accuracy"),
    "accuracy without n": (_set("metrics", {"accuracy": 0.5}), "metrics.n"),
    "per_class text": (_set("metrics", {"per_class": {"a": "x"}}), "metrics.per_class.a"),
    "confusion ragged": (
        _set("metrics", {"classes": ["a", "b"], "confusion": [[1, 2], [3]]}),
        "metrics.confusion[1]",
    ),
    "holdout without n": (
        _set("metrics", {"holdout": {"v": {"agreement": 0.5}}}),
        "metrics.holdout.v.n",
    ),
    "history text": (_set("history", [{"epoch": 1, "val_acc": "high"}]), "history[0].val_acc"),
    "history no epoch": (_set("history", [{"val_acc": 0.5}]), "history[0]"),
    "complexity text": (
        _set("complexity", {"stages": {"vt": {"params": "many", "flops": 1}}}),
        "complexity.stages.vt.params",
    ),
    "hardware a list": (_set("hardware", ["gpu"]), "hardware"),
}


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_every_bad_card_field_is_one_line_naming_file_and_field(stem, case, capsys) -> None:
    change, field = BAD_CARDS[case]
    _edit(stem, change)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(stem)
    msg = str(err.value)
    assert msg.startswith(str(stem.with_suffix(".json"))) and field in msg and "\n" not in msg
    # the same through the CLI: exit code 2, one line
    assert main(["predict", str(stem), str(stem.with_suffix(".json"))]) == 2
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 1 and field in out[0] and "Traceback" not in out[0]


def test_deeply_nested_and_huge_cards_are_refused(stem) -> None:
    card_path = stem.with_suffix(".json")
    card_path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"nested too deeply|invalid JSON"):
        read_card(stem)
    card_path.write_bytes(b" " * (17 * 2**20))
    with pytest.raises(CheckpointError, match="at most"):
        read_card(stem)


def test_shapes_are_checked_from_the_header_before_anything_is_built(stem, monkeypatch) -> None:
    """A card asking for a wide model beside small weights fails on the header alone: no
    real (non-meta) model is ever built, so nothing near the card's size is allocated."""
    built = []
    real = checkpoint_module.build_model

    def spy(cfg):
        model = real(cfg)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(checkpoint_module, "build_model", spy)
    _edit(stem, _set("config.vt.token_dim", 16000))
    _edit(stem, lambda card: card.pop("weights_sha256"))
    with pytest.raises(CheckpointError, match=r"wrong shapes \(e\.g\. .*file .*implies"):
        load_checkpoint(stem)
    assert built == ["meta"]
    # an empty weights file: refused from its first 8 bytes
    stem.with_suffix(".safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(stem)


def test_uploaded_checkpoint_messages_never_show_server_folders(stem) -> None:
    w = stem.with_suffix(".safetensors").read_bytes()
    card = json.loads(stem.with_suffix(".json").read_text())
    card["resize"] = "zoom"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_bytes(w, json.dumps(card).encode(), "../../etc/mine")
    assert str(err.value).startswith(".._.._etc_mine.json: resize")
    ck = load_checkpoint_bytes(w, stem.with_suffix(".json").read_bytes(), "mine")
    assert ck.classes == ["a", "b", "c"]


def test_any_aspect_ratio_is_safe_to_preprocess() -> None:
    """centre crop works from the short side: a 60000 x 1 strip is one crop-box resize (it
    used to resize the whole strip to 256 x 15.4M pixels first: MemoryError)."""
    pre = Preprocess(224, (0.5,) * 3, (0.5,) * 3, "center_crop", "bilinear")
    t0 = time.perf_counter()
    x = pre(Image.new("RGB", (60_000, 1), (255, 0, 0)))
    assert x.shape == (3, 224, 224) and time.perf_counter() - t0 < 5
    assert pre(Image.new("RGB", (1, 60_000))).shape == (3, 224, 224)
    # on an ordinary photo-shaped image it equals "short side to 256, crop 224" closely
    img = make_image((120, 60, 30), 64).resize((400, 300))
    old = img.resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240))
    ref = (torch.from_numpy(np.asarray(old, np.float32) / 255).permute(2, 0, 1) - 0.5) / 0.5
    assert (pre(img) - ref).abs().mean() < 0.02


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "CK", "x.png", "--top", "-1"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--batch-size", "0"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--lr", "nan"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--lr", "inf"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--epochs", "0"],
        ["train", "--config", "vt_resnet20", "--train", "D", "--out", "O", "--warmup", "2"],
        ["explain", "x.png", "-c", "CK", "--out", "O", "--cmap", "nosuchmap"],
        ["explain", "x.png", "-c", "CK", "--out", "O", "--alpha", "7"],
        ["info", "--input-size", "0"],
        ["tokens", "CK", "D", "--out", "O", "--batch-size", "0"],
        ["eval", "CK", "D", "--batch-size", "-3"],
    ],
)
def test_out_of_range_flags_are_refused_with_one_line(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "error: argument" in err[0]


def test_set_with_an_invalid_value_is_one_line(tmp_path, capsys) -> None:
    argv = ["train", "--config", "vt_resnet20", "--train", str(tmp_path), "--out", "O"]
    assert main([*argv, "--set", "tokens=-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.vt.tokens: -3 is outside" in err[0]


def test_predict_on_a_folder_without_images_fails_naming_it(stem, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(stem), str(tmp_path / "empty")]) == 2
    assert f"no image files in {tmp_path / 'empty'}" in capsys.readouterr().err


def test_predict_and_explain_read_only_regular_files(stem, tmp_path, capsys) -> None:
    """A device (/dev/zero never ends) or a FIFO named as an image is one line naming it,
    and the run goes on; nothing blocks on reading it."""
    import os

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    targets = [str(fifo)] + (["/dev/zero"] if Path("/dev/zero").exists() else [])
    assert main(["predict", str(stem), *targets]) == 1  # 1: some files could not be read
    err = capsys.readouterr().err
    assert all(f"{t}: not a regular file" in err for t in targets)
    code = main(["explain", *targets, "-c", str(stem), "--out", str(tmp_path / "x")])
    assert code != 0 and f"{fifo}: not a regular file" in capsys.readouterr().err


# ---- resume ---------------------------------------------------------------------------


def _args(data: Path, out: Path, **kw) -> TrainArgs:
    base = dict(config="vt_resnet20", train=str(data), val=str(data), out=str(out), epochs=2)
    base |= dict(batch_size=16, lr=0.05, workers=1)
    return TrainArgs(**(base | kw))


def _kill_in_epoch_2(epoch: int, step: int) -> None:
    if epoch == 1 and step == 0:
        raise TrainInterrupted("simulated kill")


@pytest.mark.slow
def test_resume_refuses_a_changed_recipe_or_class_set(tmp_path) -> None:
    data = make_dataset(tmp_path / "data", per_class=16)
    out = tmp_path / "run"
    with pytest.raises(TrainInterrupted):
        train(_args(data, out), on_step=_kill_in_epoch_2, progress=False)
    with pytest.raises(ValueError) as err:
        train(_args(data, out, resume=True, batch_size=8, lr=0.01), progress=False)
    msg = str(err.value)
    assert "batch_size: 16 -> 8" in msg and "lr: 0.05 -> 0.01" in msg and "--resume-anyway" in msg
    # other classes: one line, not a size-mismatch traceback
    (data / "purple").mkdir()
    for i in range(16):
        make_image((120, 0, 120), seed=i).save(data / "purple" / f"{i}.png")
    with pytest.raises(ValueError, match="classes: 3 -> 4"):
        train(_args(data, out, resume=True), progress=False)
    for f in (data / "purple").iterdir():
        f.unlink()
    (data / "purple").rmdir()
    # --resume-anyway: accepted, and the card says from which epoch what changed
    card = train(_args(data, out, resume=True, resume_anyway=True, lr=0.01), progress=False)
    assert card["history"][1]["recipe_changed"] == {"lr": 0.01}
    assert "recipe_changed" not in card["history"][0] and card["recipe"]["lr"] == 0.01


def test_a_foreign_resume_file_is_one_line_without_unpickling(tmp_path, capsys) -> None:
    data = make_dataset(tmp_path / "data", per_class=8)
    out = tmp_path / "run"

    class Payload:
        def __reduce__(self):
            return (print, ("PAYLOAD RAN",))

    with open(tmp_path / "run.resume.pt", "wb") as f:
        pickle.dump({"model": Payload()}, f)
    argv = ["train", "--config", "vt_resnet20", "--train", str(data), "--out", str(out)]
    assert main([*argv, "--epochs", "1", "--batch-size", "8", "--resume"]) == 2
    cap = capsys.readouterr()
    err = [line for line in cap.err.splitlines() if "error" in line]
    assert len(err) == 1 and "not a resume state written by vt-explorer train" in err[0]
    assert "weights_only" not in cap.err and "PAYLOAD RAN" not in cap.out


@pytest.mark.slow
def test_a_run_killed_in_its_final_evaluation_is_unfinished_until_resumed(
    tmp_path, monkeypatch, capsys
) -> None:
    data = make_dataset(tmp_path / "data", per_class=8)
    out = tmp_path / "run"
    import vt_explorer.train as train_module

    def killed(*a, **k):
        raise TrainInterrupted("killed during the final evaluation")

    monkeypatch.setattr(train_module, "evaluate_checkpoint", killed)
    with pytest.raises(TrainInterrupted):
        train(_args(data, out, epochs=1, batch_size=8), progress=False)
    monkeypatch.undo()
    assert read_card(out)["finished"] is False
    with pytest.raises(CheckpointError, match=r"unfinished: .* --resume"):
        load_checkpoint(out)
    assert main(["eval", str(out), str(data)]) == 2
    assert "unfinished" in capsys.readouterr().err
    card = train(_args(data, out, epochs=1, batch_size=8, resume=True), progress=False)
    assert card["finished"] is True and card["metrics"]["n"] == 24
    assert load_checkpoint(out).card["metrics"]["n"] == 24


def test_a_diverging_run_stops_without_a_checkpoint(tmp_path) -> None:
    data = make_dataset(tmp_path / "data", per_class=8)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"training diverged: the loss is (nan|inf)"):
        train(_args(data, out, epochs=1, batch_size=8, lr=1e30, warmup=0.0), progress=False)
    assert not out.with_suffix(".json").exists()


def test_a_model_over_the_servers_budget_is_refused_before_it_is_built(stem, monkeypatch) -> None:
    """Issue 30, item 1: a small file describing a huge model (a CIFAR-stem VT at 2048 px
    needs gigabytes of activations) is refused in one line naming the measure and the
    variable that sets it, from the meta device (nothing allocated); the operator's limits
    apply; every shipped checkpoint is within the default budget."""
    from vt_explorer.cardcheck import Budget, meta_model, model_cost
    from vt_explorer.checkpoint import list_checkpoints
    from vt_explorer.model import build_model
    from vt_explorer.model.config import ModelConfig

    _edit(stem, _set("input_size", 2048))
    with pytest.raises(
        CheckpointError,
        match=r"G multiply-adds per image, more than this server allows \(10 G; VT_EXPLORER_MAX_GMACS\)",
    ):
        load_checkpoint(stem)
    _edit(stem, _set("input_size", 32))
    load_checkpoint(stem)
    monkeypatch.setenv("VT_EXPLORER_MAX_MPARAMS", "0.01")
    with pytest.raises(CheckpointError, match=r"parameters, more than this server allows"):
        load_checkpoint(stem)
    monkeypatch.delenv("VT_EXPLORER_MAX_MPARAMS")
    budget = Budget()
    for ck in list_checkpoints():
        cfg = ModelConfig.from_dict(json.loads(Path(ck + ".json").read_text())["config"])
        params, macs, act = model_cost(meta_model(cfg, build_model), cfg.input_size)
        assert params < budget.mparams * 1e6 / 5 and macs < budget.gmacs * 1e9 / 5
        assert act < budget.activation_mb * 2**20 / 5, ck


def test_weights_of_the_wrong_dtype_are_refused(stem) -> None:
    """uint8 or bool tensors where the model has floats are refused, naming the tensor;
    float16 weights load (cast to the model's float32)."""
    from safetensors.torch import load_file, save_file

    from vt_explorer.checkpoint import sha256_file

    weights = stem.with_suffix(".safetensors")
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    for dtype, ok in ((torch.uint8, False), (torch.bool, False), (torch.float16, True)):
        save_file({**state, name: state[name].to(dtype)}, str(weights))
        _edit(stem, _set("weights_sha256", sha256_file(weights)))
        if ok:
            assert load_checkpoint(stem).model.state_dict()[name].dtype == torch.float32
        else:
            with pytest.raises(CheckpointError, match=f"tensor {name} is"):
                load_checkpoint(stem)
