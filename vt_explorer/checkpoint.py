"""Checkpoints: weights in safetensors beside a JSON model card.

A checkpoint called ``checkpoints/NAME`` is two files:

* ``NAME.safetensors``: the state dict (tensors only; loading never executes code);
* ``NAME.json``: the model card: format marker, full architecture config, class names,
  input size, mean/std, the weights' SHA-256, and whatever training adds (dataset, recipe,
  metrics, hardware, command, code version).

``load_checkpoint`` accepts the stem or either file's path and raises
:class:`CheckpointError` with a message naming the culprit for a missing file, a file that
is not ours, a corrupted weights file, or a card that does not match its weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .cardcheck import (
    MAX_CARD_BYTES,
    check_budget,
    check_card,
    check_shapes,
    meta_model,
    read_json_bounded,
    safetensors_header,
)
from .flags import UserError
from .model import ModelConfig, build_model
from .preprocess import Preprocess

FORMAT = "vt_explorer.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint could not be read; the message names the file and the reason."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns: a ready model, its card, its preprocessing."""

    model: nn.Module
    card: dict[str, Any]
    preprocess: Preprocess
    config: ModelConfig

    @property
    def classes(self) -> list[str]:
        """Class names, index-aligned with the logits."""
        return list(self.card["classes"])


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, card) paths for a stem or for either file's path."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    card: dict[str, Any] | None = None,
    resize: str = "stretch",
) -> tuple[Path, Path]:
    """Write ``model`` (which must carry ``.cfg``) and its card; returns (weights, card) paths.

    ``card`` entries are added to the card (dataset, recipe, metrics...). Both files are
    written atomically: a crash never leaves a half-written file under either name.
    """
    cfg: ModelConfig = model.cfg
    weights_path, card_path = checkpoint_paths(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes a metadata dict in hash-map order, which differs
    # between calls, so two keys made identical weights hash differently
    meta = {"vt_explorer": json.dumps({"format": FORMAT, "model": cfg.name}, sort_keys=True)}
    atomic_write(weights_path, lambda tmp: save_file(state, tmp, metadata=meta))
    classes = list(cfg.classes) if cfg.classes else [str(i) for i in range(cfg.num_classes)]
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": Path(weights_path).stem,
        "config": cfg.to_dict(),
        "classes": classes,
        "input_size": cfg.input_size,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "resize": resize,
        "interpolation": cfg.extra.get("interpolation", "bicubic"),
        "weights_sha256": sha256_file(weights_path),
    }
    full.update(card or {})
    text = json.dumps(full, indent=2, sort_keys=False) + "\n"
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(text))
    return weights_path, card_path


def record_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> dict[str, Any]:
    """Make ``metrics`` (an :func:`~vt_explorer.evaluate.evaluate_checkpoint` result) the
    card's ``metrics``; returns the card, rewritten atomically. The weights are untouched.

    The top-1 of every device the checkpoint was evaluated on stays under
    ``metrics_by_device`` (``{"cuda": {"accuracy", "correct", "n"}, "cpu": ...}``): GPU
    kernels (TF32 convolutions, other reduction orders) can flip a handful of borderline
    images, so a card trained on a GPU is re-evaluated on the CPU where most users verify.
    """
    card = read_card(path)
    by_device = dict(card.get("metrics_by_device") or {})
    for m in (card.get("metrics") or {}, metrics):
        if "accuracy" in m and "device" in m:
            kind = str(m["device"]).split(":")[0]
            by_device[kind] = {k: m.get(k) for k in ("accuracy", "correct", "n", "flip_tta")}
    card["metrics"] = metrics
    card["metrics_by_device"] = by_device
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    _, card_path = checkpoint_paths(path)
    atomic_write(card_path, lambda tmp: Path(tmp).write_text(text))
    return card


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a model card (without touching the weights).

    The whole schema is checked here (:func:`~vt_explorer.cardcheck.check_card`: types and
    ranges of every field a loader uses), so a hostile or damaged card is one
    :class:`CheckpointError` line naming the file and the field, never a traceback.
    """
    _, card_path = checkpoint_paths(path)
    if not card_path.is_file():
        raise CheckpointError(f"{card_path}: model card not found")
    try:
        with open(card_path, "rb") as f:
            data = f.read(MAX_CARD_BYTES + 1)
        card = read_json_bounded(data)
    except OSError as err:
        raise CheckpointError(f"{card_path}: cannot read the model card ({err.strerror})") from None
    except ValueError as err:
        raise CheckpointError(f"{card_path}: not a vt_explorer model card ({err})") from None
    try:
        check_card(card, FORMAT, FORMAT_VERSION)
    except ValueError as err:
        raise CheckpointError(f"{card_path}: {err}") from None
    return card


def load_checkpoint(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    verify_hash: bool = True,
    allow_unfinished: bool = False,
) -> LoadedCheckpoint:
    """Rebuild the model a checkpoint describes and load its weights (in eval mode).

    Never unpickles: weights come from safetensors, the card from JSON. Raises
    :class:`CheckpointError` naming the file for every way a checkpoint can be wrong,
    including a training run that stopped before its final evaluation (its card says
    ``"finished": false``) unless ``allow_unfinished`` (what training's own final
    evaluation uses).
    """
    weights_path, card_path = checkpoint_paths(path)
    card = read_card(card_path)
    if card.get("finished") is False and not allow_unfinished:
        raise CheckpointError(
            f"{card_path}: unfinished: training stopped before its final evaluation; "
            "re-run the same train command with --resume"
        )
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file not found (card {card_path} exists)")
    if verify_hash and card.get("weights_sha256"):
        digest = sha256_file(weights_path)
        if digest != card["weights_sha256"]:
            raise CheckpointError(
                f"{weights_path}: weights do not match their card (SHA-256 {digest[:12]}... "
                f"!= {card['weights_sha256'][:12]}...): the file is corrupted or was replaced"
            )
    try:
        cfg = ModelConfig.from_dict(card["config"])
        meta = meta_model(cfg, build_model)  # shapes, dtypes and cost, nothing allocated
        shapes = meta.state_dict()
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{card_path}: cannot build the model it describes: {err}") from None
    try:  # shapes first, from the header alone: nothing is allocated for a wrong file
        check_shapes(
            {k: v.shape for k, v in shapes.items()},
            safetensors_header(weights_path),
            card_path.name,
        )
    except OSError as err:
        raise CheckpointError(f"{weights_path}: cannot read the weights ({err.strerror})") from None
    except ValueError as err:
        raise CheckpointError(f"{weights_path}: {err}") from None
    try:  # what it would cost, on the meta device, before anything is allocated
        check_budget(meta, int(card["input_size"]))
    except ValueError as err:
        raise CheckpointError(f"{card_path}: {err}") from None
    except (TypeError, KeyError, RuntimeError, NotImplementedError) as err:
        raise CheckpointError(
            f"{card_path}: cannot measure the model it describes: {err}"
        ) from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from None
    check_values(state, shapes, weights_path)
    model = build_model(cfg)
    model.load_state_dict(state)
    model.to(device, memory_format=torch.channels_last).eval()
    pre = Preprocess(
        int(card["input_size"]),
        tuple(card["mean"]),
        tuple(card["std"]),
        card.get("resize", "stretch"),
        card.get("interpolation", "bicubic"),
    )
    return LoadedCheckpoint(model=model, card=card, preprocess=pre, config=cfg)


#: the dtypes a floating-point tensor may be stored in (cast to the model's on load); an
#: integer buffer must have the model's own dtype
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_values(
    state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], path: Path | str
) -> None:
    """Every tensor has a dtype of the model's own kind (float32, float16 or bfloat16 where
    the model's is floating point; exactly the model's where it counts, e.g. BatchNorm's
    ``num_batches_tracked``: uint8 or bool weights are refused) and every float is
    finite: NaN or infinite weights would predict "nan%". CheckpointError naming the file
    and the first tensor at fault."""
    for k, v in state.items():
        ref = reference.get(k)
        allowed = (
            FLOAT_DTYPES
            if ref is not None and ref.is_floating_point()
            else (ref.dtype,)
            if ref is not None
            else ()
        )
        if ref is not None and v.dtype not in allowed:
            raise CheckpointError(
                f"{path}: tensor {k} is {str(v.dtype).replace('torch.', '')}, "
                f"not {str(ref.dtype).replace('torch.', '')} as the model's"
            )
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: tensor {k} holds NaN or infinite values")


def checkpoint_dir() -> Path:
    """Folder of the shipped checkpoints (the first of :func:`checkpoint_dirs`)."""
    return checkpoint_dirs()[0]


def checkpoint_dirs() -> list[Path]:
    """The checkpoint folders a server offers: ``$VT_EXPLORER_CHECKPOINTS`` (one folder, or
    several joined by ``os.pathsep``), else the shipped ``checkpoints/``."""
    env = os.environ.get("VT_EXPLORER_CHECKPOINTS", "").strip()
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return [Path(__file__).resolve().parent.parent / "checkpoints"]


def list_checkpoints(folder: str | os.PathLike | None = None) -> list[str]:
    """Checkpoint stems (paths without suffix) in ``folder`` that have a card and weights."""
    root = Path(folder) if folder else checkpoint_dir()
    if not root.is_dir():
        return []
    return sorted(
        str(p.with_suffix(""))
        for p in root.glob("*.json")
        if p.with_suffix(".safetensors").is_file()
    )


def checkpoint_catalog(folders: list[Path] | None = None) -> dict[str, str]:
    """{name shown to a visitor: checkpoint stem} for every checkpoint in ``folders``
    (default :func:`checkpoint_dirs`). Names are the file stems; a stem found in two
    folders is shown as ``name (folder name)``. The app offers only these: a visitor picks
    a name and never types a server path."""
    found: list[tuple[str, Path, str]] = []
    for folder in folders if folders is not None else checkpoint_dirs():
        found += [(Path(s).name, Path(folder), s) for s in list_checkpoints(folder)]
    counts: dict[str, int] = {}
    for name, _, _ in found:
        counts[name] = counts.get(name, 0) + 1
    return {
        (name if counts[name] == 1 else f"{name} ({folder.name})"): stem
        for name, folder, stem in found
    }


def load_checkpoint_bytes(
    weights: bytes,
    card: bytes,
    name: str,
    device: str | torch.device = "cpu",
    file_names: tuple[str, str] | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint from its two files' bytes (a visitor's upload) with every check of
    :func:`load_checkpoint`. The files go to a private temporary folder that is removed
    before returning; messages never show the server's folders, and name the files as the
    visitor uploaded them (``file_names``: the weights' and the card's; default NAME.*)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "checkpoint"
    with tempfile.TemporaryDirectory(prefix="vt-upload-") as tmp:
        base = Path(tmp) / stem
        base.with_name(stem + ".safetensors").write_bytes(weights)
        base.with_name(stem + ".json").write_bytes(card)
        try:
            return load_checkpoint(base, device=device)
        except CheckpointError as err:
            msg = str(err).replace(tmp + os.sep, "")
            if file_names is not None:
                msg = msg.replace(stem + ".safetensors", file_names[0])
                msg = msg.replace(stem + ".json", file_names[1])
            raise CheckpointError(msg) from None


def card_summary(card: dict[str, Any]) -> str:
    """One line for people: what the model is (its config's description) and its measured
    top-1 on held-out photos, from the card alone (a distilled student: the first held-out
    source with labels, beside the teacher's top-1 and their agreement; a trained model: its
    evaluation). Never raises: a hand-edited card gives what can be read."""
    cfg = card.get("config") if isinstance(card.get("config"), dict) else {}
    what = str(cfg.get("description") or card.get("name") or "a model")
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    try:
        held = metrics.get("holdout")
        if isinstance(held, dict) and held:
            for src, m in held.items():
                if isinstance(m, dict) and isinstance(m.get("top1"), (int, float)):
                    name = str(src).split(".")[0]
                    return (
                        f"{what}. Held-out {name} (n={int(m['n'])}): top-1 "
                        f"{m['top1']:.1%} (Lite0 {m['teacher_top1']:.1%}), agrees "
                        f"with Lite0 on {m['agreement']:.1%}."
                    )
        acc = metrics.get("accuracy")
        if isinstance(acc, (int, float)):
            return f"{what}. Test top-1 {acc:.1%} (n={int(metrics.get('n', 0))})."
    except (KeyError, TypeError, ValueError):
        pass
    return f"{what}. No held-out accuracy in its card."
