"""``python -m vt_explorer``: the command line (see :mod:`vt_explorer.cli`)."""

from .cli import entry

entry()
