"""``mdln sweep``: a grid of toy configurations x seeds, chunked, resumable, written to a folder
(`experiments.toy_sweep.run_sweep`)."""

from __future__ import annotations

import sys

from ..experiments.settings import default_init_scale
from ..experiments.summary import failure_line, format_error_table
from ..experiments.toy import DivergenceWarning
from ..experiments.toy_sweep import run_sweep
from ._common import (
    FLAG_NAMES,
    add_model_options,
    add_subparser,
    divergence_notes,
    pos_int,
    warn_failures,
)

__all__ = ["add_parser", "main"]

EPILOG = """\
examples:
  mdln sweep --fusion-layer 2 --rho=-0.9:0.9:9 --ratio 1.5,2,3 --width 32 --seeds 3 --out sweep-rho
  mdln sweep --depth 4 --fusion-layer 1,2,3,4 --init aligned --init-scale 0.1 --rho 0 \\
      --ratio 2 --seeds 2 --out sweep-depth
  mdln sweep ... --out sweep-rho --resume     # continue or extend an interrupted sweep

Lists are comma-separated (1.5,2,3) or START:STOP:NUM for NUM evenly spaced values.
Writes results.csv (appended after every chunk), config.json, summary.json, time_ratio.png.
"""


def add_parser(subparsers):
    p = add_subparser(
        subparsers,
        "sweep",
        help="sweep a grid of toy configurations x seeds into a folder (resumable)",
        description="Run the cartesian product of the given fusion layers, correlations, ratios "
        "and init scales, times N seeds, in fixed-size batched chunks. Rows are appended to "
        "DIR/results.csv after every chunk, so an interrupted sweep can be resumed.",
        epilog=EPILOG,
    )
    add_model_options(p, list_values=True)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (required)")
    p.add_argument(
        "--resume", action="store_true", help="continue the sweep in DIR, skipping finished members"
    )
    p.add_argument(
        "--chunk-size",
        type=pos_int,
        default=64,
        metavar="C",
        help="members per batched solve (fixed, so nothing recompiles)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    fusion = [args.depth] if args.fusion_layer is None else args.fusion_layer
    u0 = [default_init_scale(args.depth)] if args.init_scale is None else args.init_scale
    grid = {"fusion_layer": fusion, "rho": args.rho, "ratio": args.ratio, "init_scale": u0}
    keys = ("depth", "width", "seeds", "init", "method", "lr", "noise", "t_max", "resume")
    res, divergence = divergence_notes(
        lambda: run_sweep(
            grid,
            **{k: getattr(args, k) for k in keys},
            out_dir=args.out,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            names=FLAG_NAMES,
        ),
        DivergenceWarning,
    )
    s = res.summary
    print(
        f"ran {res.n_run} member(s), skipped {res.n_skipped} already done; "
        f"{s['n_success']}/{s['n_members']} rows successful; {res.wall_time_s:.1f} s"
    )
    print(format_error_table(s))
    print("files: " + ", ".join(str(p) for p in res.files.values()))
    for note in divergence:
        print(f"warning: {note}", file=sys.stderr)
    warn_failures(failure_line(res.rows, "rows"))
    return 0
