"""``mdln run``: the paper's toy late-fusion experiment (`experiments.run`), with figures, CSV
and a theory-vs-simulation summary."""

from __future__ import annotations

from ..experiments.run import files_line, header_line, run_experiment, trajectory_line
from ..experiments.summary import failure_line
from ..sweeps import SweepError
from ._common import add_subparser, warn_failures

__all__ = ["add_parser", "main"]

EPILOG = """\
examples:
  mdln run                      # full run, about 30 s on 2 CPU cores
  mdln run --quick --out /tmp/mdln-quick

Full run: depth 2, late fusion (L_f = 2), width 100, random init u0 = 1e-12 (float64),
rho in linspace(-0.9, 0.9, 9), ratio in {1, 1.5, 2, 3}, 3 seeds, gradient flow.
Writes results.csv, config.json, summary.json, time_ratio.png, misattribution.png and
trajectory.png (ratio 2, rho 0.5) into the output folder. A folder that holds a run is never
replaced silently: pass --resume to continue it or --overwrite to replace it.
"""


def add_parser(subparsers):
    p = add_subparser(
        subparsers,
        "run",
        help="the paper's toy late-fusion experiment, with figures and a summary",
        description="Reproduce the paper's two-layer late-fusion toy experiment: time ratio "
        "t_B/t_A and misattribution against rho for several variance ratios (simulation vs "
        "theory), and one training trajectory; writes figures, CSV and JSON, and prints a summary.",
        epilog=EPILOG,
    )
    p.add_argument("--out", default="mdln-results", metavar="DIR", help="output folder")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke-test version (width 8, 5 correlations, 1 seed; a few seconds)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR")
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in DIR (its files are kept in DIR/replaced-<time>/)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    print(header_line(args.quick, args.out), flush=True)
    try:
        res = run_experiment(
            args.out,
            quick=args.quick,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except SweepError as err:
        raise ValueError(str(err)) from None
    print()
    print("\n".join(res.table_lines))
    print(trajectory_line(res.trajectory_row))
    print(files_line(res.out, res.wall_time_s))
    warn_failures(failure_line(res.rows, "runs"))
    return 0
