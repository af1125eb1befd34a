"""``mdln reproduce FIGURE [--quick] [--out DIR]``: regenerate a figure of Zhang, Latham & Saxe
(ICML 2024) with this package (`experiments.zhang2024`): simulations, theory curves and their
measured agreement (NAME.csv, NAME.png, NAME.json per entry)."""

from __future__ import annotations

import argparse
import time

from .._cache import release_compiled_if_crowded
from ..experiments.zhang2024 import FIGURES, help_table, reproduce

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``reproduce FIGURE [--quick] [--out DIR]`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "reproduce",
        help="regenerate the paper's figures (CSV + PNG + JSON agreement summary)",
        description="Regenerate a figure of Zhang, Latham & Saxe (ICML 2024) with this package: "
        "simulations, theory curves and their measured agreement.",
        epilog=f"figures (label as in docs/reproduction.md, theory section of docs/theory.md):\n"
        f"{help_table()}\n  all               every entry (shared runs computed once)\n\n"
        "examples:\n  mdln reproduce toy-time-ratio --quick\n"
        "  mdln reproduce all --quick --out results/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("figure", metavar="FIGURE", help="a figure name (see below) or 'all'")
    p.add_argument(
        "--quick", action="store_true", help="small, fast versions (smoke test; minutes for all)"
    )
    p.add_argument(
        "--out",
        default="mdln-reproduce",
        metavar="DIR",
        help="output folder (default: %(default)s)",
    )
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    """Runs the entry (or all), prints one line per entry with its outputs."""
    names = list(FIGURES) if args.figure == "all" else [args.figure]
    for n in names:
        if n not in FIGURES:
            raise ValueError(f"FIGURE must be one of {', '.join(FIGURES)} or 'all'; got {n!r}.")
    t0 = time.time()
    for n in names:
        release_compiled_if_crowded()  # `all` compiles many structures in one process
        print(f"[{n}] {FIGURES[n].title}", flush=True)
        res = reproduce(n, quick=args.quick, out=args.out, log=lambda s: print(s, flush=True))
        print(f"[{n}] {res.seconds:.1f} s -> {', '.join(str(f) for f in res.files)}", flush=True)
    print(f"done in {time.time() - t0:.1f} s", flush=True)
    return 0
