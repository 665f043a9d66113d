"""Dataset-level token statistics files (``tokens.json``, written by ``vt-explorer tokens``):
their format marker and reading them back, for the app and the CLI alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .flags import UserError

TOKENS_FORMAT = "vt_explorer.tokens/1"


def parse_token_statistics(data: bytes, name: str) -> dict[str, Any]:
    """The contents of a ``tokens.json`` (as bytes, e.g. an upload); ValueError naming
    ``name`` when they are not token statistics."""
    try:
        stats = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{name}: not a readable token statistics file ({err})") from None
    if not isinstance(stats, dict) or stats.get("format") != TOKENS_FORMAT:
        raise UserError(f"{name}: not a token statistics file (no format {TOKENS_FORMAT!r})")
    return stats


def read_token_statistics(path: str | Path) -> dict[str, Any]:
    """Load a ``tokens.json`` written by :func:`token_statistics`; ValueError naming the file
    when it is not one."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise UserError(f"{p}: not a readable token statistics file ({err})") from None
    return parse_token_statistics(data, str(p))
