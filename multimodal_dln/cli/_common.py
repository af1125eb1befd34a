"""What the subcommands share: the parser class and formatter, argument types, the joining of
negative values, the model and toy-data options, and warnings printed as one line each.

Every subcommand module exposes ``add_parser(subparsers) -> ArgumentParser`` (it registers
``main`` as the parser's ``func``) and ``main(args) -> int`` (parse -> call -> print).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap

from .._constants import AUTHORS_LR

__all__ = [
    "FLAG_NAMES",
    "Formatter",
    "Parser",
    "UsageError",
    "add_model_options",
    "add_subparser",
    "float_list",
    "int_list",
    "join_negative_values",
    "missing_extra",
    "number",
    "pos_int",
    "warn_failures",
    "wrap",
]

FLAG_NAMES = {
    "depth": "--depth",
    "width": "--width",
    "init": "--init",
    "method": "--method",
    "lr": "--lr",
    "noise": "--noise",
    "fusion_layer": "--fusion-layer",
    "rho": "--rho",
    "ratio": "--ratio",
    "init_scale": "--init-scale",
    "seeds": "--seeds",
    "t_max": "--t-max",
    "out_dir": "--out",
}
"""Parameter -> flag, for error messages of the experiments (their `names` argument)."""


class UsageError(Exception):
    """A command-line usage error (one line; `main` turns it into exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, turned into exit status 2 by `main`)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped description and epilog; appends "(default: X)" where meaningful."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if (
            "%(default)" not in help_text
            and action.option_strings
            and action.default not in (None, False, argparse.SUPPRESS)
        ):
            help_text += " (default: %(default)s)"
        return help_text


OPTIONAL = {"sklearn": ("scikit-learn", "repro")}
"""Optional packages some commands import: module -> (distribution, pyproject extra)."""


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """One line saying which extra to install for a missing optional package, or None when
    the missing module is not an optional one (a broken install: the traceback is shown)."""
    found = OPTIONAL.get((err.name or "").split(".")[0])
    if found is None:
        return None
    dist, extra = found
    return (
        f"this command needs {dist}, which the base install leaves out; install the "
        f"'{extra}' extra: pip install -e '.[{extra}]' (or pip install {dist})."
    )


def wrap(text: str) -> str:
    """`text` re-wrapped to 88 columns (for descriptions)."""
    return textwrap.fill(" ".join(text.split()), width=88)


def add_subparser(subparsers, name: str, *, help: str, description: str, epilog: str):
    """A subcommand parser with the shared formatter and a wrapped description."""
    return subparsers.add_parser(
        name,
        help=help,
        description=wrap(description),
        epilog=epilog,
        formatter_class=Formatter,
    )


# ------------------------------------------------------------------------------------------------
# argument types
# ------------------------------------------------------------------------------------------------
def pos_int(text: str) -> int:
    """An integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return v


def number(text: str) -> float:
    """A finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite; got {text!r}")
    return v


def float_list(text: str) -> list[float]:
    """'1.5,2,3' or 'START:STOP:NUM' (NUM evenly spaced values, ends included)."""
    text = text.strip()
    if text.count(":") == 2 and "," not in text:
        a, b, n = text.split(":")
        try:
            start, stop, num = float(a), float(b), int(n)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"START:STOP:NUM needs two numbers and an integer; got {text!r}"
            ) from None
        if num < 1:
            raise argparse.ArgumentTypeError(f"NUM in START:STOP:NUM must be >= 1; got {text!r}")
        if num == 1:
            return [start]
        return [round(start + (stop - start) * i / (num - 1), 12) for i in range(num)]
    try:
        out = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of numbers; got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError("needs at least one value")
    return out


def int_list(text: str) -> list[int]:
    """'1,2,4' (or START:STOP:NUM landing on integers)."""
    vals = float_list(text)
    if not all(v.is_integer() for v in vals):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of integers; got {text!r}"
        )
    return [int(v) for v in vals]


_NEG_VALUE = re.compile(r"^-(\.?\d|\d)")


def join_negative_values(argv: list[str]) -> list[str]:
    """Let `--rho -0.5` and `--rho -0.5,0.5` work: argparse would take the value for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if (
            tok.startswith("--")
            and "=" not in tok
            and i + 1 < len(argv)
            and _NEG_VALUE.match(argv[i + 1])
        ):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


# ------------------------------------------------------------------------------------------------
# shared options
# ------------------------------------------------------------------------------------------------
def _list_or_one(list_values: bool, one, many, metavar: str):
    """(type, metavar) of an option taking one value, or a list with `list_values`."""
    return (many, f"{metavar}[,{metavar}...]") if list_values else (one, metavar)


def add_model_options(p: argparse.ArgumentParser, *, list_values: bool) -> None:
    """Network, training and toy-data options (lists of grid values with `list_values`)."""
    g = p.add_argument_group("network and training")
    g.add_argument(
        "--depth", type=pos_int, default=2, metavar="L", help="total depth L of the network"
    )
    kind, meta = _list_or_one(list_values, int, int_list, "LF")
    what = "fusion layer(s) L_f" if list_values else "fusion layer L_f"
    g.add_argument(
        "--fusion-layer",
        type=kind,
        default=None,
        metavar=meta,
        help=f"{what} in [1, L] (1 early, L late fusion) (default: L)",
    )
    g.add_argument(
        "--width", type=pos_int, default=100, metavar="H", help="hidden width of every hidden layer"
    )
    g.add_argument(
        "--init",
        choices=("random", "aligned", "entrywise"),
        default="random",
        help="initialization: authors' Gaussian scheme with per-layer norm u0 (random), "
        "balanced rank-one along the solution (aligned), or every entry N(0, u0^2) (entrywise)",
    )
    g.add_argument(
        "--method",
        choices=("flow", "gd"),
        default="flow",
        help="gradient flow (adaptive ODE solver) or full-batch gradient descent",
    )
    g.add_argument(
        "--lr",
        type=number,
        default=AUTHORS_LR,
        metavar="ETA",
        help="learning rate for --method gd (ignored for flow)",
    )
    g.add_argument(
        "--t-max",
        type=number,
        default=None,
        metavar="T",
        help="horizon in gradient-flow time, kept as given (members not converged by then are "
        "flagged NOT_CONVERGED); for --method gd it sets n_steps = ceil(T / lr) (default: an "
        "estimate from the data and u0, extended up to 64x for members that have not converged)",
    )
    g.add_argument(
        "--noise", type=number, default=0.0, metavar="S", help="label-noise std of the toy data"
    )
    _add_data_options(p, list_values=list_values)


# (flag, metavar, default as typed, help): the toy-data axes, one value or a list each.
_DATA_AXES = (
    ("--rho", "R", "0", "correlation{s} between the modalities, in (-1, 1)"),
    ("--ratio", "K", "2", "std ratio{s} r = sigma_A / sigma_B > 0 (A is learned first when r > 1)"),
    (
        "--init-scale",
        "U",
        None,
        "initialization scale{s} u0 > 0; (default: 1e-12 for depth <= 2, else 0.1)",
    ),
)


def _add_data_options(p: argparse.ArgumentParser, *, list_values: bool) -> None:
    d = p.add_argument_group("toy data (x_A, x_B scalar, y = x_A + x_B)")
    s = "(s)" if list_values else ""
    for flag, letter, default, text in _DATA_AXES:
        kind, meta = _list_or_one(list_values, number, float_list, letter)
        if default is not None and not list_values:
            default = float(default)
        d.add_argument(flag, type=kind, default=default, metavar=meta, help=text.format(s=s))
    d.add_argument(
        "--seeds",
        type=pos_int,
        default=3,
        metavar="N",
        help="number of seeds (0..N-1) per configuration",
    )


# ------------------------------------------------------------------------------------------------
# warnings
# ------------------------------------------------------------------------------------------------
def warn_failures(line: str | None) -> None:
    """A final stderr line when members failed (the exit status stays 0: results are flagged)."""
    if line:
        print(f"warning: {line}", file=sys.stderr)
