"""``mdln sweep``: any sweep axis as a list, crossed (or zipped), run into a folder
(`multimodal_dln.sweeps`), with a summary table and a figure against the swept axis."""

from __future__ import annotations

import argparse
import re
import sys

from ..sweeps import AXES, Sweep, SweepError, product, run, zipped
from ._common import Formatter, add_subparser, float_list, pos_int, warn_failures

__all__ = ["add_parser", "main"]

EPILOG = """\
examples:
  mdln sweep --depth 4 --fusion-layer 1:4 --rho=-0.5,0,0.5 --seeds 3 --out lf
  mdln sweep --data random --d-a 10 --d-b 10 --draw 0:31 --init-scale 1e-6 --out random
  mdln sweep --method gf,gd --lr 0.04 --rho 0,0.5 --ratio 2,3 --zip rho,ratio --out gf-gd
  mdln sweep ... --out lf --resume      # continue or extend a sweep (skips stored members)

Lists: 1.5,2,3 or START:STOP:NUM (NUM evenly spaced values); integer axes also take A:B (A to
B inclusive). Axes not given take their defaults; an axis that does not apply to a member
(rho for random data, lr for gradient flow) is left empty. Writes DIR/results.csv (one row per
member, appended after every chunk), DIR/config.json and DIR/<y>.png.
"""

_ALIASES = {"method": {"gf": "flow", "flow": "flow", "gd": "gd", "reduced": "reduced"}}


def _flag(name: str) -> str:
    return "--" + name.lower().replace("_", "-")


def int_values(text: str) -> list[int]:
    """'1,2,4', 'A:B' (A..B inclusive) or 'START:STOP:NUM' landing on integers."""
    parts = text.strip().split(":")
    if len(parts) == 2:
        try:
            a, b = int(parts[0]), int(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"A:B needs two integers; got {text!r}") from None
        if b < a:
            raise argparse.ArgumentTypeError(f"A:B needs A <= B; got {text!r}")
        return list(range(a, b + 1))
    vals = float_list(text)
    if not all(v.is_integer() for v in vals):
        raise argparse.ArgumentTypeError(f"must be integers; got {text!r}")
    return [int(v) for v in vals]


def _str_values(name: str):
    def parse(text: str) -> list[str]:
        vals = [v.strip() for v in text.split(",") if v.strip()]
        alias = _ALIASES.get(name)
        return [alias.get(v, v) for v in vals] if alias else vals

    return parse


def add_parser(subparsers):
    p = add_subparser(
        subparsers,
        "sweep",
        help="sweep any axes (data, network, method, seeds) into a folder (resumable)",
        description="Run the cartesian product of the given axis values (or zip some of them) "
        "as batched solves grouped by network structure, into a folder that keeps every "
        "finished chunk. Prints a summary per configuration and draws the swept quantity "
        "against the swept axis, with the theory wherever a closed form exists.",
        epilog=EPILOG,
    )
    p.formatter_class = Formatter
    groups = {
        "data": p.add_argument_group("data axes"),
        "network": p.add_argument_group("network axes"),
        "method": p.add_argument_group("method and solver axes"),
    }
    for a in AXES:
        if a.name in ("data_index", "seed"):
            continue
        kind = {"int": int_values, "float": float_list, "str": _str_values(a.name)}[a.kind]
        meta = a.name.upper()
        groups[_group(a.name)].add_argument(
            _flag(a.name), type=kind, default=None, metavar=f"{meta}[,{meta}...]", help=a.doc
        )
    s = p.add_argument_group("seeds and layout")
    seeds = s.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=pos_int, default=None, metavar="N",
                       help="seeds 0..N-1 per configuration (default: 1)")  # fmt: skip
    seeds.add_argument("--seed", type=int_values, default=None, metavar="SEED",
                       help="explicit network seeds")  # fmt: skip
    s.add_argument("--zip", type=_str_values("zip"), default=None, metavar="AXIS,AXIS",
                   help="axes that vary together (equal lengths) instead of crossed")  # fmt: skip
    _add_run_options(p)
    p.set_defaults(func=main)
    return p


def _group(name: str) -> str:
    names = [a.name for a in AXES]
    if names.index(name) < names.index("depth"):
        return "data"
    return "network" if names.index(name) < names.index("method") else "method"


def _add_run_options(p) -> None:
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR", help="output folder (required)")
    mode = o.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the sweep in DIR, skipping stored members")  # fmt: skip
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh; DIR's previous files are moved into replaced-<time>/",
    )
    o.add_argument("--chunk-size", type=pos_int, default=64, metavar="C",
                   help="at most C members per batched solve (groups are cut evenly)")  # fmt: skip
    o.add_argument(
        "--reduced",
        action="store_true",
        help="add the reduced dynamics' prediction per member (reduced_time_ratio)",
    )
    o.add_argument("--y", choices=("time_ratio", "misattribution"), default="time_ratio",
                   help="quantity to plot")  # fmt: skip
    o.add_argument(
        "--x",
        default=None,
        metavar="AXIS",
        help="axis on the figure's x axis (default: the swept axis with most values)",
    )
    o.add_argument("--hue", default=None, metavar="AXIS",
                   help="axis shown by colour (default: the next swept axis)")  # fmt: skip
    o.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    o.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def build_sweep(args) -> Sweep:
    """The declared sweep from parsed arguments (flags -> axes; --zip; seeds)."""
    given = {a.name: getattr(args, a.name) for a in AXES
             if getattr(args, a.name, None) is not None}  # fmt: skip
    if args.seeds is not None:
        given["seed"] = list(range(args.seeds))
    elif args.seed is not None:
        given["seed"] = args.seed
    zip_names = args.zip or []
    for name in zip_names:
        if name not in given:
            raise ValueError(f"--zip names {name!r}, which is not a given axis option.")
    crossed = product(**{k: v for k, v in given.items() if k not in zip_names})
    return crossed * zipped(**{k: given[k] for k in zip_names}) if zip_names else crossed


def _with_flags(err: ValueError) -> ValueError:
    """The library's message with each axis name followed by its flag, e.g. "fusion_layer
    (--fusion-layer)"."""
    text = str(err)
    for a in AXES:
        pattern = rf"(?<![\w-]){a.name}(?= must|:| is)"
        text = re.sub(pattern, f"{a.name} ({_flag(a.name)})", text, count=1)
    return ValueError(text)


def main(args) -> int:
    from ..experiments.sweep_report import plot_sweep, summary_table

    sweep = build_sweep(args)
    try:
        sweep.members()  # every member checked before anything runs
    except ValueError as err:
        raise _with_flags(err) from None
    for name in (args.x, args.hue):
        if name is not None and name not in {a.name for a in AXES}:
            raise ValueError(f"--x / --hue must name an axis; got {name!r}.")
    try:
        df = run(sweep, args.out, resume=args.resume, overwrite=args.overwrite,
                 chunk_size=args.chunk_size, reduced=args.reduced,
                 progress=not args.no_progress)  # fmt: skip
    except SweepError as err:
        raise ValueError(str(err)) from None
    print(f"{len(df)} member(s) in {args.out}/results.csv; {int(df['success'].sum())} succeeded")
    print(summary_table(df, args.y).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if not args.no_figure and df["success"].any():
        path = f"{args.out}/{args.y}.png"
        plot_sweep(df, args.y, args.x, args.hue, path=path)
        print(f"figure: {path}")
    failed = int((~df["success"]).sum())
    if failed:
        counts = df.loc[~df["success"], "status"].value_counts().to_dict()
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        warn_failures(f"{failed} of {len(df)} members failed ({shown}); see the reason column")
    sys.stdout.flush()
    return 0
