"""Command-line interface: ``mdln`` (or ``python -m multimodal_dln``).

Subcommands:

- ``mdln simulate``: one toy-data configuration, N seeds as one batched solve; a table, or
  one JSON object with ``--json``.
- ``mdln sweep``: a grid of toy configurations x seeds, chunked, resumable, written to a folder.
- ``mdln run``: the paper's toy late-fusion experiment (time ratio and misattribution against
  rho, a training trajectory), with figures, CSV and a theory-vs-simulation summary.

`main(argv)` returns the exit status (0 success, 2 bad input) instead of exiting, so it can be
called in-process; the console script passes it to `sys.exit`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]

_FLAG_NAMES = {
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
    "out_dir": "--out",
}

_EPILOG_MAIN = """\
examples:
  mdln simulate --rho 0.5 --ratio 2 --seeds 4
  mdln simulate --depth 4 --fusion-layer 4 --init aligned --init-scale 0.1 --json
  mdln sweep --fusion-layer 2 --rho=-0.5,0,0.5 --ratio 1.5,2 --width 16 --seeds 3 --out sweep1
  mdln run --quick

Times are in gradient-flow units (tau = 1); for gradient descent, steps x lr.
Run 'mdln COMMAND --help' for the options of each command.
"""

_EPILOG_SIMULATE = """\
examples:
  mdln simulate --rho 0.5 --ratio 2 --seeds 4
  mdln simulate --rho=-0.5 --ratio 3 --init entrywise --init-scale 1e-9 --json
  mdln simulate --method gd --lr 0.01 --width 16
  mdln simulate --depth 4 --fusion-layer 3 --init aligned --init-scale 0.1

Theory (leading order in u0): late fusion (L_f = L) t_B/t_A = 1 + (r^2 - 1)/(1 - rho^2) and
misattribution rho/r; early fusion (L_f = 1) t_B/t_A = 1; none here for 1 < L_f < L.
"""

_EPILOG_SWEEP = """\
examples:
  mdln sweep --fusion-layer 2 --rho=-0.9:0.9:9 --ratio 1.5,2,3 --width 32 --seeds 3 --out sweep-rho
  mdln sweep --depth 4 --fusion-layer 1,2,3,4 --init aligned --init-scale 0.1 --rho 0 \\
      --ratio 2 --seeds 2 --out sweep-depth
  mdln sweep ... --out sweep-rho --resume     # continue or extend an interrupted sweep

Lists are comma-separated (1.5,2,3) or START:STOP:NUM for NUM evenly spaced values.
Writes results.csv (appended after every chunk), config.json, summary.json, time_ratio.png.
"""

_EPILOG_RUN = """\
examples:
  mdln run                      # full run, about 30 s on 2 CPU cores
  mdln run --quick --out /tmp/mdln-quick

Full run: depth 2, late fusion (L_f = 2), width 100, random init u0 = 1e-12 (float64),
rho in linspace(-0.9, 0.9, 9), ratio in {1, 1.5, 2, 3}, 3 seeds, gradient flow.
Writes results.csv, config.json, summary.json, time_ratio.png, misattribution.png and
trajectory.png (ratio 2, rho 0.5) into the output folder.
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised, turned into exit status 2 by `main`)."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
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


def _wrap(text: str) -> str:
    import textwrap

    return textwrap.fill(" ".join(text.split()), width=88)


# ------------------------------------------------------------------------------------------------
# argument types
# ------------------------------------------------------------------------------------------------
def _pos_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return v


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be finite; got {text!r}")
    return v


def _float_list(text: str) -> list[float]:
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


def _int_list(text: str) -> list[int]:
    vals = _float_list(text)
    if not all(v.is_integer() for v in vals):
        raise argparse.ArgumentTypeError(
            f"must be a comma-separated list of integers; got {text!r}"
        )
    return [int(v) for v in vals]


_NEG_VALUE = re.compile(r"^-(\.?\d|\d)")


def _join_negative_values(argv: list[str]) -> list[str]:
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
# parser
# ------------------------------------------------------------------------------------------------
def _add_model_options(p: argparse.ArgumentParser, *, list_values: bool) -> None:
    g = p.add_argument_group("network and training")
    g.add_argument(
        "--depth", type=_pos_int, default=2, metavar="L", help="total depth L of the network"
    )
    if list_values:
        g.add_argument(
            "--fusion-layer",
            type=_int_list,
            default=None,
            metavar="LF[,LF...]",
            help="fusion layer(s) L_f in [1, L] (1 early, L late fusion) (default: L)",
        )
    else:
        g.add_argument(
            "--fusion-layer",
            type=int,
            default=None,
            metavar="LF",
            help="fusion layer L_f in [1, L] (1 early, L late fusion) (default: L)",
        )
    g.add_argument(
        "--width",
        type=_pos_int,
        default=100,
        metavar="H",
        help="hidden width of every hidden layer",
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
        type=_float,
        default=0.04,
        metavar="ETA",
        help="learning rate for --method gd (ignored for flow)",
    )
    g.add_argument(
        "--noise", type=_float, default=0.0, metavar="S", help="label-noise std of the toy data"
    )
    d = p.add_argument_group("toy data (x_A, x_B scalar, y = x_A + x_B)")
    if list_values:
        d.add_argument(
            "--rho",
            type=_float_list,
            default="0",
            metavar="R[,R...]",
            help="correlation(s) between the modalities, in (-1, 1)",
        )
        d.add_argument(
            "--ratio",
            type=_float_list,
            default="2",
            metavar="K[,K...]",
            help="std ratio(s) r = sigma_A / sigma_B > 0 (A is learned first when r > 1)",
        )
        d.add_argument(
            "--init-scale",
            type=_float_list,
            default=None,
            metavar="U[,U...]",
            help="initialization scale(s) u0 > 0; (default: 1e-12 for depth <= 2, else 0.1)",
        )
    else:
        d.add_argument(
            "--rho",
            type=_float,
            default=0.0,
            metavar="R",
            help="correlation between the modalities, in (-1, 1)",
        )
        d.add_argument(
            "--ratio",
            type=_float,
            default=2.0,
            metavar="K",
            help="std ratio r = sigma_A / sigma_B > 0 (A is learned first when r > 1)",
        )
        d.add_argument(
            "--init-scale",
            type=_float,
            default=None,
            metavar="U",
            help="initialization scale u0 > 0; (default: 1e-12 for depth <= 2, else 0.1)",
        )
    d.add_argument(
        "--seeds",
        type=_pos_int,
        default=3,
        metavar="N",
        help="number of seeds (0..N-1) per configuration",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mdln",
        description=_wrap(
            "Simulate and explain how multimodal deep linear networks learn: when each "
            "modality is learned, the time ratio t_B/t_A, misattribution, and the closed-form theory "
            "of Zhang, Latham & Saxe (ICML 2024), on the paper's toy data."
        ),
        epilog=_EPILOG_MAIN,
        formatter_class=_Formatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser(
        "simulate",
        help="simulate one toy configuration for N seeds (one batched solve)",
        description=_wrap(
            "Simulate one toy-data configuration for N seeds as one batched solve and "
            "print the phase times, time ratio and misattribution of each seed next to the theory."
        ),
        epilog=_EPILOG_SIMULATE,
        formatter_class=_Formatter,
    )
    _add_model_options(p, list_values=False)
    p.add_argument(
        "--json",
        action="store_true",
        help="print exactly one JSON object on stdout (NaN as null) instead of a table",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "sweep",
        help="sweep a grid of toy configurations x seeds into a folder (resumable)",
        description=_wrap(
            "Run the cartesian product of the given fusion layers, correlations, ratios and "
            "init scales, times N seeds, in fixed-size batched chunks. Rows are appended to "
            "DIR/results.csv after every chunk, so an interrupted sweep can be resumed."
        ),
        epilog=_EPILOG_SWEEP,
        formatter_class=_Formatter,
    )
    _add_model_options(p, list_values=True)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (required)")
    p.add_argument(
        "--resume", action="store_true", help="continue the sweep in DIR, skipping finished members"
    )
    p.add_argument(
        "--chunk-size",
        type=_pos_int,
        default=64,
        metavar="C",
        help="members per batched solve (fixed, so nothing recompiles)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "run",
        help="the paper's toy late-fusion experiment, with figures and a summary",
        description=_wrap(
            "Reproduce the paper's two-layer late-fusion toy experiment: time ratio t_B/t_A "
            "and misattribution against rho for several variance ratios (simulation vs theory), and "
            "one training trajectory; writes figures, CSV and JSON, and prints a summary."
        ),
        epilog=_EPILOG_RUN,
        formatter_class=_Formatter,
    )
    p.add_argument("--out", default="mdln-results", metavar="DIR", help="output folder")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke-test version (width 8, 5 correlations, 1 seed; a few seconds)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_cmd_run)

    from .greedy_experiments import add_cli as _add_greedy

    _add_greedy(sub)

    from .reproduce import add_cli as _add_reproduce

    _add_reproduce(sub)
    return parser


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _default_init_scale(depth: int) -> float:
    return 1e-12 if depth <= 2 else 0.1


def _fmt(v, spec=".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan" if v is not None else "-"
    return format(v, spec)


def _median(values) -> float:
    import numpy as np

    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def _cmd_simulate(args) -> int:
    from .sweep import (
        MemberConfig,
        _jsonable,
        simulate_toy,
        theory_misattribution,
        theory_time_ratio,
        validate_grid,
        validate_settings,
    )

    fusion_layer = args.depth if args.fusion_layer is None else args.fusion_layer
    init_scale = _default_init_scale(args.depth) if args.init_scale is None else args.init_scale
    settings = validate_settings(
        depth=args.depth,
        width=args.width,
        init=args.init,
        method=args.method,
        lr=args.lr,
        noise=args.noise,
        names=_FLAG_NAMES,
    )
    grid = validate_grid(
        {
            "fusion_layer": [fusion_layer],
            "rho": [args.rho],
            "ratio": [args.ratio],
            "init_scale": [init_scale],
        },
        args.depth,
        names=_FLAG_NAMES,
    )
    configs = [
        MemberConfig(
            grid["fusion_layer"][0], grid["rho"][0], grid["ratio"][0], grid["init_scale"][0], s
        )
        for s in range(args.seeds)
    ]
    t0 = time.perf_counter()
    res = simulate_toy(
        configs,
        depth=settings["depth"],
        width=settings["width"],
        init=settings["init"],
        method=settings["method"],
        lr=settings["lr"],
        noise=settings["noise"],
    )
    wall = time.perf_counter() - t0
    reasons = res.trajectory.failure_reasons()
    th_ratio = theory_time_ratio(args.depth, fusion_layer, args.rho, args.ratio, init_scale)
    th_mis = theory_misattribution(args.depth, fusion_layer, args.rho, args.ratio)
    ok_rows = [r for r in res.rows if r["success"]]
    tr_med = _median([r["time_ratio"] for r in ok_rows])
    mis_med = _median([r["misattribution"] for r in ok_rows])
    config = {
        "depth": settings["depth"],
        "fusion_layer": fusion_layer,
        "width": settings["width"],
        "rho": args.rho,
        "ratio": args.ratio,
        "init_scale": init_scale,
        "seeds": args.seeds,
        "init": settings["init"],
        "noise": settings["noise"],
        "method": settings["method"],
        "lr": settings["lr"],
        "data": "toy",
        "time_units": "gradient-flow time (tau = 1); for gd, steps x lr",
    }
    members = []
    for r, reason in zip(res.rows, reasons, strict=False):
        status = "ok" if r["success"] else (reason if reason != "ok" else "phase times not found")
        members.append(
            {
                "seed": r["seed"],
                "t_A": r["t_A"],
                "t_B": r["t_B"],
                "time_ratio": r["time_ratio"],
                "misattribution": r["misattribution"],
                "final_loss": r["final_loss"],
                "success": r["success"],
                "plateau_loss": r["plateau_loss"],
                "status": status,
            }
        )
    summary = {
        "time_ratio_median": tr_med,
        "time_ratio_theory": th_ratio,
        "misattribution_median": mis_med,
        "misattribution_theory": th_mis,
        "n_success": len(ok_rows),
        "n_members": len(res.rows),
        "rel_error_median": tr_med / th_ratio - 1.0
        if math.isfinite(th_ratio) and math.isfinite(tr_med)
        else None,
        "wall_time_s": wall,
    }
    if args.json:
        print(
            json.dumps(
                _jsonable({"config": config, "members": members, "summary": summary}),
                allow_nan=False,
            )
        )
        return 0
    lf_kind = (
        "early" if fusion_layer == 1 else ("late" if fusion_layer == args.depth else "intermediate")
    )
    print(
        f"toy data: rho = {args.rho:g}, ratio sigma_A/sigma_B = {args.ratio:g}, noise = {settings['noise']:g}"
    )
    print(
        f"network: depth L = {args.depth}, fusion layer L_f = {fusion_layer} ({lf_kind} fusion), "
        f"width {settings['width']}, init {settings['init']} u0 = {init_scale:g}; "
        + (
            "gradient flow"
            if settings["method"] == "flow"
            else f"gradient descent, lr = {settings['lr']:g}"
        )
    )
    print()
    header = f"{'seed':>4} {'t_A':>10} {'t_B':>10} {'t_B/t_A':>9} {'misattr.':>9} {'final loss':>11}  status"
    print(header)
    print("-" * len(header))
    for m in members:
        print(
            f"{m['seed']:>4} {_fmt(m['t_A']):>10} {_fmt(m['t_B']):>10} {_fmt(m['time_ratio']):>9} "
            f"{_fmt(m['misattribution'], '.4f'):>9} {_fmt(m['final_loss'], '.2e'):>11}  {m['status']}"
        )
    print("-" * len(header))
    print(
        f"median over {len(ok_rows)}/{len(members)} successful seeds: t_B/t_A = {_fmt(tr_med)}, "
        f"misattribution = {_fmt(mis_med, '.4f')}"
    )
    if math.isfinite(th_ratio):
        src = (
            "early fusion: no unimodal phase"
            if fusion_layer == 1
            else "late fusion: 1 + (r^2 - 1)/(1 - rho^2)"
        )
        line = f"theory ({src}): t_B/t_A = {th_ratio:.4g}"
        if math.isfinite(tr_med):
            line += f"  (sim/theory - 1 = {100 * (tr_med / th_ratio - 1):+.2f}%)"
        print(line)
    else:
        why = (
            "intermediate fusion"
            if 1 < fusion_layer < args.depth
            else "ratio < 1 (B learned first)"
        )
        print(f"theory: no closed form here for {why}")
    if math.isfinite(th_mis):
        print(f"theory misattribution rho/r = {th_mis:.4f}")
    print(
        f"times in gradient-flow units{' (steps x lr)' if settings['method'] == 'gd' else ''}; "
        f"solved in {wall:.1f} s"
    )
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import format_error_table, run_sweep

    fusion = [args.depth] if args.fusion_layer is None else args.fusion_layer
    u0 = [_default_init_scale(args.depth)] if args.init_scale is None else args.init_scale
    grid = {"fusion_layer": fusion, "rho": args.rho, "ratio": args.ratio, "init_scale": u0}
    res = run_sweep(
        grid,
        depth=args.depth,
        width=args.width,
        seeds=args.seeds,
        init=args.init,
        method=args.method,
        lr=args.lr,
        noise=args.noise,
        out_dir=args.out,
        resume=args.resume,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        names=_FLAG_NAMES,
    )
    s = res.summary
    print(
        f"ran {res.n_run} member(s), skipped {res.n_skipped} already done; {s['n_success']}/{s['n_members']} "
        f"rows successful; {res.wall_time_s:.1f} s"
    )
    print(format_error_table(s))
    print("files: " + ", ".join(str(p) for p in res.files.values()))
    return 0


_RUN_FULL = {
    "width": 100,
    "seeds": 3,
    "rho": [round(-0.9 + 0.225 * i, 12) for i in range(9)],
    "ratio": [1.0, 1.5, 2.0, 3.0],
    "chunk_size": 36,
}
_RUN_QUICK = {
    "width": 8,
    "seeds": 1,
    "rho": [-0.9, -0.45, 0.0, 0.45, 0.9],
    "ratio": [1.0, 2.0, 3.0],
    "chunk_size": 4,
}


def _cmd_run(args) -> int:
    import jax

    from . import figures
    from .measurements import measure
    from .sweep import MemberConfig, _write_json, run_sweep, simulate_toy, theory_time_ratio

    t0 = time.perf_counter()
    spec = _RUN_QUICK if args.quick else _RUN_FULL
    depth, lf, u0, init = 2, 2, 1e-12, "random"
    out = Path(args.out)
    grid = {"fusion_layer": [lf], "rho": spec["rho"], "ratio": spec["ratio"], "init_scale": [u0]}
    print(
        f"mdln run{' --quick' if args.quick else ''}: two-layer late fusion on the toy data, width "
        f"{spec['width']}, {init} init u0 = {u0:g}, {spec['seeds']} seed(s), gradient flow -> {out}/",
        flush=True,
    )
    res = run_sweep(
        grid,
        depth=depth,
        width=spec["width"],
        seeds=spec["seeds"],
        init=init,
        method="flow",
        out_dir=out,
        resume=args.resume,
        overwrite=not args.resume,
        chunk_size=spec["chunk_size"],
        progress=not args.no_progress,
    )
    rows = res.rows
    # misattribution: only where a unimodal phase exists (r > 1)
    mis_rows = [r for r in rows if r["ratio"] > 1.0]
    mis_path = out / "misattribution.png"
    if mis_rows:
        figures.plot_misattribution(mis_rows, hue_order=sorted(spec["ratio"]), path=mis_path)
    # one trajectory: r = 2, rho = 0.5 (padded to the sweep's chunk size: no recompile)
    sim = simulate_toy(
        [MemberConfig(lf, 0.5, 2.0, u0, 0)],
        depth=depth,
        width=spec["width"],
        init=init,
        pad_to=spec["chunk_size"],
    )
    traj0 = sim.trajectory[0]
    stats0 = jax.tree.map(lambda a: a[0], sim.stats)
    m0 = measure(traj0, stats0)
    traj_path = out / "trajectory.png"
    figures.plot_trajectory(
        traj0,
        m0,
        stats0,
        path=traj_path,
        title="late fusion, toy data: $\\sigma_A/\\sigma_B$ = 2, $\\rho$ = 0.5",
    )

    # summary table
    lines = []
    header = (
        f"{'ratio':>6} {'runs':>5} {'ok':>4} {'theory range':>15} {'median |sim/th-1|':>18} {'max':>8}"
        f" {'misattr. median |err|':>22}"
    )
    lines += [header, "-" * len(header)]
    table = []
    for ratio in spec["ratio"]:
        rs = [r for r in rows if r["ratio"] == ratio]
        ok = [r for r in rs if r["success"]]
        errs = [abs(r["rel_error"]) for r in ok if math.isfinite(r["rel_error"])]
        th = [r["theory_time_ratio"] for r in rs]
        mis_err = (
            [abs(r["misattribution"] - r["rho"] / r["ratio"]) for r in ok] if ratio > 1 else []
        )
        entry = {
            "ratio": ratio,
            "n": len(rs),
            "n_success": len(ok),
            "theory_min": min(th),
            "theory_max": max(th),
            "median_abs_rel_error": _median(errs),
            "max_abs_rel_error": max(errs) if errs else math.nan,
            "misattribution_median_abs_error": _median(mis_err),
        }
        table.append(entry)
        mis_s = f"{entry['misattribution_median_abs_error']:.4f}" if mis_err else "- (no phase)"
        th_range = f"{min(th):.3g}" if min(th) == max(th) else f"{min(th):.3g} - {max(th):.3g}"
        lines.append(
            f"{ratio:>6g} {len(rs):>5} {len(ok):>4} {th_range:>15} "
            f"{100 * entry['median_abs_rel_error']:>17.2f}% {100 * entry['max_abs_rel_error']:>7.2f}% {mis_s:>22}"
        )
    th0 = theory_time_ratio(depth, lf, 0.5, 2.0, u0)
    r0 = sim.rows[0]
    traj_line = (
        f"trajectory (r = 2, rho = 0.5): t_A = {r0['t_A']:.4g}, t_B = {r0['t_B']:.4g}, "
        f"t_B/t_A = {r0['time_ratio']:.4g} (theory {th0:.4g}); misattribution "
        f"{r0['misattribution']:.4f} (theory {0.5 / 2.0:.4f})"
    )
    wall = time.perf_counter() - t0
    run_summary = {
        "experiment": "two-layer late fusion, toy data (digest 3, F2-F4)",
        "quick": bool(args.quick),
        "depth": depth,
        "fusion_layer": lf,
        "width": spec["width"],
        "init": init,
        "init_scale": u0,
        "seeds": spec["seeds"],
        "rho": spec["rho"],
        "ratio": spec["ratio"],
        "per_ratio": table,
        "trajectory": {
            k: r0[k]
            for k in ("rho", "ratio", "t_A", "t_B", "time_ratio", "misattribution", "success")
        },
        "wall_time_s": wall,
        "files": {k: str(v) for k, v in res.files.items()}
        | {"misattribution_figure": str(mis_path), "trajectory_figure": str(traj_path)},
    }
    summary = dict(res.summary)
    summary["run"] = run_summary
    _write_json(out / "summary.json", summary)
    print()
    print("\n".join(lines))
    print(traj_line)
    n_fail = sum(1 for r in rows if not r["success"])
    if n_fail:
        print(f"warning: {n_fail} run(s) failed (see the success column of results.csv)")
    print(
        f"wrote {out}/: results.csv, config.json, summary.json, time_ratio.png, misattribution.png, "
        f"trajectory.png ({wall:.1f} s)"
    )
    return 0


# ------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(_join_negative_values(argv))
    except _UsageError as err:
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
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
