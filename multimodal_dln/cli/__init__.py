"""Command-line interface: ``mdln`` (or ``python -m multimodal_dln``).

Subcommands, one thin module each (parse -> call the experiments / library -> print):

- ``mdln simulate`` (`simulate`): one toy-data configuration, N seeds as one batched solve;
  a table, or one JSON object with ``--json``.
- ``mdln sweep`` (`sweep`): a grid of toy configurations x seeds, chunked, resumable, written
  to a folder.
- ``mdln run`` (`run`): the paper's toy late-fusion experiment (time ratio and
  misattribution against rho, a training trajectory), with figures, CSV and a summary.
- ``mdln greedy`` (`greedy`) and ``mdln reproduce`` (`reproduce`): Wu et al. 2022's greedy
  learning experiments and the paper figures of Zhang et al. 2024.

Each module exposes ``add_parser(subparsers)`` and ``main(args) -> int``. `main(argv)` here
returns the exit status (0 success, 2 bad input) instead of exiting, so it can be called
in-process; the console script passes it to `sys.exit`.
"""

from __future__ import annotations

import importlib
import sys

from ._common import Formatter, Parser, UsageError, join_negative_values, missing_extra, wrap

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  mdln simulate --rho 0.5 --ratio 2 --seeds 4
  mdln simulate --depth 4 --fusion-layer 4 --init aligned --init-scale 0.1 --json
  mdln sweep --fusion-layer 2 --rho=-0.5,0,0.5 --ratio 1.5,2 --width 16 --seeds 3 --out sweep1
  mdln run --quick

Times are in gradient-flow units (tau = 1); for gradient descent, steps x lr.
Run 'mdln COMMAND --help' for the options of each command.
"""

SUBCOMMANDS = ("simulate", "sweep", "run", "greedy", "reproduce")


def _register(subparsers, name: str) -> None:
    """Register subcommand `name` (`multimodal_dln.cli.<name>.add_parser`)."""
    importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)


def build_parser() -> Parser:
    """The ``mdln`` parser with every subcommand registered."""
    from .. import __version__

    parser = Parser(
        prog="mdln",
        description=wrap(
            "Simulate and explain how multimodal deep linear networks learn: when each "
            "modality is learned, the time ratio t_B/t_A, misattribution, and the closed-form "
            "theory of Zhang, Latham & Saxe (ICML 2024), on the paper's toy data."
        ),
        epilog=EPILOG,
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in SUBCOMMANDS:
        _register(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(join_negative_values(argv))
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"mdln {args.command}"
    try:
        return int(args.func(args) or 0)
    except ValueError as err:
        msg = " ".join(str(err).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        msg = missing_extra(err)
        if msg is None:
            raise
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
