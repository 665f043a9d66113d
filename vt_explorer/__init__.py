"""vt_explorer: see what a Visual Transformer (Wu et al., arXiv 2006.03677) actually does.

The model library lives in :mod:`vt_explorer.model`; checkpoints in
:mod:`vt_explorer.checkpoint`; the command line in :mod:`vt_explorer.cli`.

``create_model``, ``list_models`` and ``Trace`` are importable from here; they are loaded on
first use, so that importing a light submodule (the app's upload widgets) does not import
torch and torchvision (about 2 s on a 2-core machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Trace, create_model, list_models

__version__ = "0.1.0"

__all__ = ["Trace", "__version__", "create_model", "list_models"]


def __getattr__(name: str) -> Any:
    """``vt_explorer.create_model`` and friends, imported from :mod:`.model` on first use."""
    if name in ("Trace", "create_model", "list_models"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'vt_explorer' has no attribute {name!r}")
