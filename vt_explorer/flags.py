"""Command-line flags generated from dataclass fields, and range-checked argparse types.

A run's settings live in one dataclass (``TrainArgs``, ``DistillArgs``); each field says
its default once and its help once, through :func:`flag`, and :func:`add_flags` turns the
fields into ``--flags``. :func:`from_namespace` builds the dataclass back from the parsed
arguments. Every numeric flag is range-checked: a refusal is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")


class UserError(ValueError):
    """Bad input from a user (a file, a flag, a dataset): the CLI prints its message as one
    line and exits with code 2. Anything else is a bug and keeps its traceback."""


class OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose refusals are one line on stderr and exit code 2 (argparse
    prints the whole usage block first); ``--help`` still shows everything."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (hi None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"{v} must be {bound}")
        return v

    parse.__name__ = "integer"
    return parse


def float_in(
    lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite number in the interval from lo to hi (ends open or closed)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low_ok = v > lo if lo_open else v >= lo
        high_ok = v < hi if hi_open else v <= hi
        if not math.isfinite(v) or not (low_ok and high_ok):
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text} must be a finite number in {interval}")
        return v

    parse.__name__ = "number"
    return parse


def colour_map(text: str) -> str:
    """argparse type: a matplotlib colour map name."""
    from matplotlib import colormaps

    if text not in colormaps:
        raise argparse.ArgumentTypeError(
            f"unknown colour map {text!r} (e.g. jet, viridis, inferno, magma, turbo, gray)"
        )
    return text


POSITIVE = int_in(1)


def flag(default: Any, help: str, **argparse_kw: Any) -> Any:
    """A dataclass field that is also a command-line flag: its default and help are written
    here once. ``argparse_kw`` go to ``add_argument`` (``type``, ``choices``, ``metavar``;
    ``name`` replaces the generated ``--field-name``; ``nargs``)."""
    factory = argparse_kw.pop("default_factory", None)
    meta = {"help": help, **argparse_kw}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


REQUIRED = dataclasses.MISSING


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of dataclass ``cls`` that was declared with :func:`flag`.

    A boolean defaulting to False becomes a switch; one defaulting to True becomes
    ``--no-NAME`` (or the ``name`` given). A field without a default is required. The help
    text ends with the default."""
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        name = meta.pop("name", None)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is True:
            parser.add_argument(
                name or "--no-" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_false",
                help=help_text,
            )
        elif f.default is False:
            parser.add_argument(
                name or "--" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_true",
                help=help_text,
            )
        else:
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if not required and default not in (None, []) and "(default" not in help_text:
                help_text += f" (default {default})"
            parser.add_argument(
                name or "--" + f.name.replace("_", "-"),
                dest=f.name,
                required=required,
                default=None if required else default,
                help=help_text,
                **meta,
            )


def from_namespace(cls: type[T], ns: argparse.Namespace, **extra: Any) -> T:
    """The dataclass ``cls`` from parsed arguments (fields absent from ``ns`` keep their
    defaults), with ``extra`` fields set directly."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(ns).items() if k in names}
    return cls(**(values | extra))
