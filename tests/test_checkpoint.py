"""Checkpoint round trip and every way a checkpoint file can be wrong."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from vt_explorer.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    read_card,
    record_metrics,
    save_checkpoint,
)
from vt_explorer.model import create_model


@pytest.fixture
def saved(tmp_path):
    model = create_model("vt_resnet20", num_classes=3, classes=("a", "b", "c")).eval()
    save_checkpoint(model, tmp_path / "tiny", card={"metrics": {"top1": 0.5}})
    return model, tmp_path / "tiny"


def test_round_trip_keeps_card_preprocessing_and_outputs(saved) -> None:
    model, stem = saved
    for path in (stem, stem.with_suffix(".safetensors"), stem.with_suffix(".json")):
        ck = load_checkpoint(path)
        assert ck.classes == ["a", "b", "c"]
        assert ck.card["metrics"] == {"top1": 0.5}
        assert ck.preprocess.input_size == 32
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(ck.model(x), model(x))
    assert not list(stem.parent.glob("*.tmp"))  # atomic writes leave no temporaries


def test_missing_files(tmp_path, saved) -> None:
    with pytest.raises(CheckpointError, match="model card not found"):
        load_checkpoint(tmp_path / "nothing")
    _, stem = saved
    stem.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(stem)


def test_corrupted_weights_are_detected(saved) -> None:
    _, stem = saved
    w = stem.with_suffix(".safetensors")
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(stem)


def test_truncated_weights_without_hash_check(saved) -> None:
    _, stem = saved
    w = stem.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(stem, verify_hash=False)


def test_card_that_does_not_match_weights(saved) -> None:
    _, stem = saved
    card_path = stem.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["config"]["vt"]["tokens"] = 8
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        load_checkpoint(stem, verify_hash=False)


def test_foreign_files(tmp_path) -> None:
    _w, c = checkpoint_paths(tmp_path / "foreign")
    c.write_text('{"hello": "world"}')
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(tmp_path / "foreign")
    c.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        read_card(c)


def test_pickle_is_never_unpickled(tmp_path, saved) -> None:
    """A torch.save / pickle file under the weights name is rejected, not executed."""
    _, stem = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("executed",))

    stem.with_suffix(".safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(stem, verify_hash=False)
    assert not marker.exists()


def test_class_names_must_match_outputs(saved) -> None:
    _, stem = saved
    card_path = stem.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["classes"] = ["a", "b"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="2 class names for 3 outputs"):
        load_checkpoint(stem)


def test_record_metrics_keeps_every_devices_top1_and_the_weights(saved) -> None:
    _, stem = saved
    weights = stem.with_suffix(".safetensors").read_bytes()
    gpu = {"accuracy": 0.5, "correct": 5, "n": 10, "device": "cuda", "flip_tta": True}
    cpu = {"accuracy": 0.6, "correct": 6, "n": 10, "device": "cpu", "flip_tta": True}
    record_metrics(stem, gpu)
    card = record_metrics(stem, cpu)
    assert card == read_card(stem) and card["metrics"] == cpu
    assert card["metrics_by_device"]["cuda"]["correct"] == 5
    assert card["metrics_by_device"]["cpu"]["accuracy"] == 0.6
    assert stem.with_suffix(".safetensors").read_bytes() == weights
    load_checkpoint(stem)  # the card still matches its weights
    assert not list(stem.parent.glob("*.tmp"))


@pytest.mark.parametrize("bad", ["nan", "inf", "uint8"])
def test_weights_with_nan_inf_or_the_wrong_kind_are_refused_naming_the_tensor(tmp_path, bad):
    from safetensors.torch import load_file, save_file

    from vt_explorer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from vt_explorer.model import create_model

    weights, _card = save_checkpoint(create_model("vt_resnet20"), tmp_path / "ck")
    state = load_file(str(weights))
    key = "fc.weight"
    if bad == "uint8":
        state[key] = state[key].to(torch.uint8)
    else:
        state[key] = state[key].clone()
        state[key][0, 0] = float(bad)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=f"tensor {key} "):
        load_checkpoint(tmp_path / "ck", verify_hash=False)


def test_a_device_that_cannot_run_a_model_is_refused() -> None:
    from vt_explorer.device import select_device

    with pytest.raises(ValueError, match="not one to run a model on"):
        select_device("meta")


def test_the_same_weights_always_give_the_same_file_and_hash(tmp_path) -> None:
    """Saving one model several times writes byte-identical weights (the card's
    weights_sha256 is reproducible), whatever order safetensors keeps metadata in."""
    from vt_explorer.checkpoint import save_checkpoint, sha256_file
    from vt_explorer.model import create_model

    torch.manual_seed(0)
    model = create_model("vt_resnet20")
    hashes = {sha256_file(save_checkpoint(model, tmp_path / f"m{i}")[0]) for i in range(6)}
    assert len(hashes) == 1
