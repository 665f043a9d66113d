"""vt_explorer: see what a Visual Transformer (Wu et al., arXiv 2006.03677) actually does.

The model library lives in :mod:`vt_explorer.model`; checkpoints in
:mod:`vt_explorer.checkpoint`; the command line in :mod:`vt_explorer.cli`.
"""

from .model import Trace, create_model, list_models

__version__ = "0.1.0"

__all__ = ["Trace", "__version__", "create_model", "list_models"]
