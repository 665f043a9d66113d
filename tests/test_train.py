"""Training, resuming, distributed training and evaluation on tiny generated datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vt_explorer.checkpoint import load_checkpoint, read_card
from vt_explorer.cli import main
from vt_explorer.train import TrainArgs, TrainInterrupted, train

from .imagegen import make_dataset

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", per_class=32)


def _args(data: Path, out: Path, **kw) -> TrainArgs:
    base = dict(config="vt_resnet20", train=str(data), val=str(data), out=str(out), epochs=2)
    base |= dict(batch_size=16, lr=0.05, workers=1)
    return TrainArgs(**(base | kw))


def test_two_epochs_lower_the_loss_and_write_a_loadable_checkpoint(data, tmp_path, capsys) -> None:
    out = tmp_path / "run" / "tiny"
    card = train(_args(data, out), progress=False)
    hist = card["history"]
    assert len(hist) == 2 and hist[1]["train_loss"] < hist[0]["train_loss"]
    assert card["metrics"]["n"] == 96 and card["dataset"]["train"]["n"] == 96
    assert {"hardware", "command", "code_version", "recipe", "complexity"} <= set(card)
    assert not (tmp_path / "run" / "tiny.resume.pt").exists()
    assert len((tmp_path / "run" / "tiny.log.jsonl").read_text().splitlines()) == 2
    ck = load_checkpoint(out)
    assert ck.classes == ["blue", "green", "red"]
    capsys.readouterr()
    assert main(["eval", str(out), str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["accuracy"] == card["metrics"]["accuracy"]
    assert res["confusion"] == card["metrics"]["confusion"]
    # --write-card stores the evaluation (here: the same top-1) without touching the weights
    assert main(["eval", str(out), str(data), "--json", "--no-tta", "--write-card"]) == 0
    new = read_card(out)
    assert new["metrics"]["flip_tta"] is False and new["metrics_by_device"]["cpu"]["n"] == 96
    assert new["weights_sha256"] == ck.card["weights_sha256"]


def test_killed_run_resumes_and_matches_an_uninterrupted_one(data, tmp_path) -> None:
    ref = train(_args(data, tmp_path / "ref", epochs=3), progress=False)

    def kill(epoch: int, step: int) -> None:
        if epoch == 1 and step == 2:
            raise TrainInterrupted("simulated kill")

    out = tmp_path / "killed"
    with pytest.raises(TrainInterrupted):
        train(_args(data, out, epochs=3), on_step=kill, progress=False)
    assert (tmp_path / "killed.resume.pt").exists()
    assert not (tmp_path / "killed.safetensors").exists()
    resumed = train(_args(data, out, epochs=3, resume=True), progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["metrics"]["accuracy"] == ref["metrics"]["accuracy"]
    a = load_checkpoint(tmp_path / "ref").model.state_dict()
    b = load_checkpoint(out).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_cli_train_with_a_stray_file_warns_and_trains(data, tmp_path) -> None:
    (data / "red" / "Thumbs.db").write_bytes(b"\x00\x01junk")
    out = tmp_path / "stray"
    argv = ["train", "--config", "vt_resnet20", "--train", str(data), "--val", str(data)]
    argv += ["--out", str(out), "--epochs", "1", "--batch-size", "16", "--momentum", "0.8"]
    with pytest.warns(UserWarning, match=r"Thumbs.db: not an image"):
        assert main(argv) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["dataset"]["train"]["skipped"] == 1
    assert card["recipe"]["momentum"] == 0.8 and card["recipe"]["flip_tta"] is True


def test_cli_errors(tmp_path, capsys) -> None:
    assert main(["train", "--config", "nope", "--train", "x", "--out", "y"]) == 2
    assert "unknown model" in capsys.readouterr().err
    code = main(["train", "--config", "resnet20", "--train", str(tmp_path / "no"), "--out", "y"])
    assert code == 2 and "no such file" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing"), str(tmp_path)]) == 2
    assert "model card not found" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_distributed_run(data, tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "vt_explorer", "train", "--config", "vt_resnet20", "--train", str(data)]
    cmd += ["--val", str(data), "--out", str(out), "--epochs", "2", "--batch-size", "16"]
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["recipe"]["world_size"] == 2
    assert len(card["history"]) == 2
    load_checkpoint(out)


def test_cpu_inference_batch_is_capped_and_logits_agree(monkeypatch) -> None:
    import vt_explorer.device as device_mod
    from vt_explorer.device import inference_batch
    from vt_explorer.evaluate import predict
    from vt_explorer.model import create_model

    assert inference_batch(256, 224, "cpu") == (1 << 18) // (224 * 224) == 5
    assert inference_batch(256, 32, "cpu") == 256  # small images keep the asked batch
    assert inference_batch(256, 4096, "cpu") == 1
    assert inference_batch(256, 224, torch.device("cuda")) == 256  # accelerators: unchanged
    model = create_model("vt_resnet20").eval()
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    args = (model, images, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    whole = predict(*args, batch_size=7)
    monkeypatch.setattr(device_mod, "CPU_BATCH_PIXELS", 2 * 32 * 32)  # batches of 2
    assert inference_batch(7, 32, "cpu") == 2
    small = predict(*args, batch_size=7)
    torch.testing.assert_close(small, whole, rtol=1e-5, atol=1e-5)  # float rounding only
    top2 = whole.topk(2, 1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # rows without a near-tie between the best two
    assert torch.equal(small.argmax(1)[clear], whole.argmax(1)[clear])


def test_resume_after_a_finished_run_refuses_instead_of_retraining(data, tmp_path) -> None:
    """--resume beside a finished checkpoint (no resume state left) says the run is finished
    and leaves the checkpoint alone; --resume with nothing there starts from scratch."""
    from vt_explorer.checkpoint import sha256_file
    from vt_explorer.flags import UserError

    out = tmp_path / "done"
    train(_args(data, out), progress=False)
    before = sha256_file(out.with_suffix(".safetensors"))
    with pytest.raises(UserError, match="this run is finished"):
        train(_args(data, out, resume=True), progress=False)
    assert sha256_file(out.with_suffix(".safetensors")) == before
    card = train(_args(data, tmp_path / "fresh", resume=True), progress=False)
    assert card["finished"] is True
