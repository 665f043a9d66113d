"""Run plumbing shared by ``train`` and ``distill``: the one-cycle learning-rate schedule,
provenance for model cards (machine, code version, command) and resume states (read back
with ``weights_only=True``, never unpickled; a resumed run is refused when its recipe
changed)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .flags import UserError


def lr_at(step: int, total: int, peak: float, warmup: float) -> float:
    """One-cycle learning rate at ``step`` of ``total``."""
    w = max(1, int(total * warmup))
    if step < w:
        return peak / 25 + (peak - peak / 25) * step / w
    t = (step - w) / max(1, total - w)
    return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * t))


def hardware() -> str:
    """A one-line description of the machine (GPU name, or CPU model and cores)."""
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads (CPU)"


def code_version() -> str:
    """git commit of the source tree (with -dirty), or the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"{__version__}+{rev}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def program_name() -> str:
    """How the running command was called (``python -m vt_explorer`` counts as vt-explorer)."""
    name = Path(sys.argv[0]).name
    return "vt-explorer" if name in ("__main__.py", "vt-explorer", "") else name


#: what a ``train`` resume state holds
TRAIN_STATE_KEYS = frozenset({"model", "optimizer", "epoch", "args", "history", "elapsed"})


def read_resume_state(
    path: Path, need: frozenset[str] = TRAIN_STATE_KEYS, writer: str = "vt-explorer train"
) -> dict[str, Any]:
    """A resume file written by ``writer`` (tensors and plain data only: loaded with
    ``weights_only=True``, never unpickled) holding the keys ``need``, its ``args`` a dict;
    UserError with one line otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes about a foreign file
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, zip errors...
        raise UserError(
            f"{path}: not a resume state written by {writer} ({type(err).__name__}); "
            "delete it to start from scratch"
        ) from None
    if not isinstance(state, dict) or not need <= set(state) or not isinstance(state["args"], dict):
        raise UserError(f"{path}: not a resume state written by {writer}")
    return state


def changed_settings(
    saved: dict[str, Any], args: Any, run_only: frozenset[str]
) -> dict[str, tuple[Any, Any]]:
    """{setting: (saved, now)} for every field of the dataclass ``args`` outside ``run_only``
    whose value differs from the one a resume state saved."""
    return {
        k: (saved.get(k), v)
        for k, v in dataclasses.asdict(args).items()
        if k not in run_only and saved.get(k, v) != v
    }


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """``"lr: 0.1 -> 0.01; batch_size: 16 -> 8"``."""
    return "; ".join(f"{k}: {old} -> {new}" for k, (old, new) in changes.items())


def config_changes(saved: Any, now: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted field: (saved, now)} for every field of two model configs (dataclasses or
    their dicts) that differs; a long list (the class names) is shown by its length."""
    a = saved if isinstance(saved, dict) else dataclasses.asdict(saved)
    b = now if isinstance(now, dict) else dataclasses.asdict(now)
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out.update(config_changes(x, y, f"{prefix}{k}."))
        elif isinstance(x, (list, tuple)) and len(str(x)) > 80:
            out[f"{prefix}{k}"] = (f"{len(x)} entries", f"{len(y or ())} entries")
        else:
            out[f"{prefix}{k}"] = (x, y)
    return out


def refuse_finished_resume(stem: Path, resume: Path) -> None:
    """``--resume`` with no resume state beside a finished checkpoint: UserError saying so,
    instead of training again from scratch over it."""
    card = stem.with_name(stem.name + ".json")
    if resume.is_file() or not card.is_file():
        return
    try:
        finished = json.loads(card.read_text()).get("finished", True) is not False
    except (OSError, ValueError, AttributeError):
        finished = True  # unreadable: never overwrite it silently either
    if finished:
        raise UserError(
            f"{card}: this run is finished (no {resume.name} to resume from); delete the "
            "checkpoint or choose another --out to train again"
        )
