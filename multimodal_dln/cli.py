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
    "t_max": "--t-max",
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
misattribution rho/r; early fusion (L_f = 1) t_B/t_A = 1; for 1 < L_f < L the leading-order
deep formula theory.time_ratio_deep_toy (valid as u0 -> 0; at u0 = 0.1 aligned networks differ
by ~3.5-6.6 %, random init comes out ~18 % below it); none for depth 1 or ratio < 1.

Every seed is reported with its status (OK, or why not: DIVERGED, NOT_CONVERGED, ...) and a
reason with the remedy; a failed seed's phase times are '-' (null in --json), and a final
"warning: N of M members failed" line goes to stderr (the exit status stays 0).
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
        "--t-max",
        type=_float,
        default=None,
        metavar="T",
        help="horizon in gradient-flow time, kept as given (members not converged by then are "
        "flagged NOT_CONVERGED); for --method gd it sets n_steps = ceil(T / lr) (default: an "
        "estimate from the data and u0, extended up to 64x for members that have not converged)",
    )
    g.add_argument(
        "--noise", type=_float, default=0.0, metavar="S", help="label-noise std of the toy data"
    )
    _add_data_options(p, list_values=list_values)


def _add_data_options(p: argparse.ArgumentParser, *, list_values: bool) -> None:
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
    """A number, or '-' for no value (None or NaN: e.g. a failed member's phase times)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def _median(values) -> float:
    import numpy as np

    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def _cmd_simulate(args) -> int:
    from .sweep import MemberConfig, _jsonable, simulate_toy

    setup = _simulate_setup(args)
    settings, grid = setup["settings"], setup["grid"]
    configs = [
        MemberConfig(
            grid["fusion_layer"][0], grid["rho"][0], grid["ratio"][0], grid["init_scale"][0], s
        )
        for s in range(args.seeds)
    ]
    t0 = time.perf_counter()
    res, divergence = _divergence_notes(
        lambda: simulate_toy(
            configs,
            **{
                k: settings[k] for k in ("depth", "width", "init", "method", "lr", "noise", "t_max")
            },
        )
    )
    wall = time.perf_counter() - t0
    theory = _simulate_theory(
        args.depth, setup["fusion_layer"], args.rho, args.ratio, setup["init_scale"]
    )
    members = [_member_record(r) for r in res.rows]
    summary = _simulate_summary(res.rows, theory, wall)
    if args.json:
        doc = {"config": _simulate_config(args, setup), "members": members, "summary": summary}
        print(json.dumps(_jsonable(doc), allow_nan=False))
    else:
        _print_simulate(args, setup, members, summary, theory, wall)
    for note in divergence:
        print(f"warning: {note}", file=sys.stderr)
    _warn_failures(res.rows)
    return 0


def _divergence_notes(fn):
    """Call `fn()`; return its result and the messages of the `DivergenceWarning`s it raised
    (printed by the caller as one-line warnings; other warnings pass through unchanged)."""
    import warnings

    from .sweep import DivergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    notes = []
    for w in caught:
        if issubclass(w.category, DivergenceWarning):
            notes.append(" ".join(str(w.message).split()))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return out, notes


def _simulate_setup(args) -> dict:
    """Validated settings and one-point grid of `mdln simulate` (errors name the flags)."""
    from .sweep import validate_grid, validate_settings

    fusion_layer = args.depth if args.fusion_layer is None else args.fusion_layer
    init_scale = _default_init_scale(args.depth) if args.init_scale is None else args.init_scale
    settings = validate_settings(
        depth=args.depth,
        width=args.width,
        init=args.init,
        method=args.method,
        lr=args.lr,
        noise=args.noise,
        t_max=args.t_max,
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
    return {
        "settings": settings,
        "grid": grid,
        "fusion_layer": fusion_layer,
        "init_scale": init_scale,
    }


def _simulate_config(args, setup) -> dict:
    s = setup["settings"]
    return {
        "depth": s["depth"],
        "fusion_layer": setup["fusion_layer"],
        "width": s["width"],
        "rho": args.rho,
        "ratio": args.ratio,
        "init_scale": setup["init_scale"],
        "seeds": args.seeds,
        "init": s["init"],
        "noise": s["noise"],
        "method": s["method"],
        "lr": s["lr"],
        "t_max": s["t_max"],
        "data": "toy",
        "time_units": "gradient-flow time (tau = 1); for gd, steps x lr",
    }


_PHASE_KEYS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss")


def _member_record(row) -> dict:
    """One member for the table / JSON: status NAME and reason; phase values only when OK."""
    rec = {k: row[k] for k in ("seed", *_PHASE_KEYS, "final_loss", "success", "status", "reason")}
    rec |= {"t_end": row["t_end"], "num_steps": row["num_steps"]}
    if not row["success"]:
        rec |= dict.fromkeys(_PHASE_KEYS, math.nan)  # never a plausible number for a failure
    return rec


_U0_NOTE = (
    "valid as u0 -> 0; at the paper's u0 = 0.1 aligned networks differ from it by ~3.5-6.6 %, "
    "random init comes out ~18 % below it"
)


def _simulate_theory(depth, fusion_layer, rho, ratio, init_scale) -> dict:
    """The time-ratio and misattribution theory for one toy point, with where it comes from
    (`source`) or why there is none (`none`)."""
    from .sweep import theory_misattribution, theory_time_ratio

    value = theory_time_ratio(depth, fusion_layer, rho, ratio, init_scale)
    out = {
        "value": value,
        "misattribution": theory_misattribution(depth, fusion_layer, rho, ratio),
        "source": None,
        "note": None,
        "none": None,
    }
    if depth == 1:
        out["none"] = "none for depth 1 (a one-layer network converges linearly; no unimodal phase)"
    elif ratio < 1:
        out["none"] = "none here for ratio < 1 (B is learned first; swap the modalities)"
    elif not math.isfinite(value):
        out["none"] = "none here"
    elif fusion_layer == 1:
        out["source"] = "early fusion: no unimodal phase"
    elif fusion_layer == depth:
        out["source"] = "late fusion: 1 + (r^2 - 1)/(1 - rho^2)"
    else:
        out["source"] = (
            "intermediate fusion: leading-order deep formula, theory.time_ratio_deep_toy"
        )
        out["note"] = _U0_NOTE
    return out


def _simulate_summary(rows, theory, wall) -> dict:
    from .sweep import failures

    ok_rows = [r for r in rows if r["success"]]
    tr_med = _median([r["time_ratio"] for r in ok_rows])
    th = theory["value"] if theory["none"] is None else math.nan
    return {
        "time_ratio_median": tr_med,
        "time_ratio_theory": th,
        "time_ratio_theory_source": theory["source"],
        "time_ratio_theory_note": theory["note"] or theory["none"],
        "misattribution_median": _median([r["misattribution"] for r in ok_rows]),
        "misattribution_theory": theory["misattribution"],
        "n_success": len(ok_rows),
        "n_members": len(rows),
        "failures": failures(rows),
        "rel_error_median": tr_med / th - 1.0
        if math.isfinite(th) and math.isfinite(tr_med)
        else None,
        "wall_time_s": wall,
    }


def _print_simulate(args, setup, members, summary, theory, wall) -> None:
    s, lf = setup["settings"], setup["fusion_layer"]
    kind = (
        "one layer"
        if args.depth == 1
        else "early fusion"
        if lf == 1
        else "late fusion"
        if lf == args.depth
        else "intermediate fusion"
    )
    method = "gradient flow" if s["method"] == "flow" else f"gradient descent, lr = {s['lr']:g}"
    horizon = "automatic horizon" if s["t_max"] is None else f"t_max = {s['t_max']:g} (as given)"
    print(
        f"toy data: rho = {args.rho:.12g}, ratio sigma_A/sigma_B = {args.ratio:.12g}, "
        f"noise = {s['noise']:g}"
    )
    print(
        f"network: depth L = {args.depth}, fusion layer L_f = {lf} ({kind}), width {s['width']}, "
        f"init {s['init']} u0 = {setup['init_scale']:g}; {method}, {horizon}"
    )
    print()
    for line in _member_table(members):
        print(line)
    n_ok, n = summary["n_success"], summary["n_members"]
    if n_ok:
        print(
            f"median over {n_ok}/{n} successful seeds: "
            f"t_B/t_A = {_fmt(summary['time_ratio_median'])}, "
            f"misattribution = {_fmt(summary['misattribution_median'], '.4f')}"
        )
    else:
        print(f"no successful seed (0/{n}): no measured time ratio")
    for line in _theory_lines(theory, summary["time_ratio_median"]):
        print(line)
    unit = " (steps x lr)" if s["method"] == "gd" else ""
    print(f"times in gradient-flow units{unit}; solved in {wall:.1f} s")


def _member_table(members) -> list[str]:
    """The per-seed table; a failed member's phase columns are '-', its reason follows."""
    header = (
        f"{'seed':>4} {'t_A':>10} {'t_B':>10} {'t_B/t_A':>9} {'misattr.':>9} {'plateau':>9} "
        f"{'final loss':>11}  status  reason"
    )
    lines = [header, "-" * len(header)]
    for m in members:
        lines.append(
            f"{m['seed']:>4} {_fmt(m['t_A']):>10} {_fmt(m['t_B']):>10} {_fmt(m['time_ratio']):>9} "
            f"{_fmt(m['misattribution'], '.4f'):>9} {_fmt(m['plateau_loss'], '.3g'):>9} "
            f"{_fmt(m['final_loss'], '.2e'):>11}  {m['status']}  {m['reason']}"
        )
    lines.append("-" * len(header))
    return lines


def _theory_lines(theory, tr_med) -> list[str]:
    if theory["none"] is not None:
        lines = [f"theory: {theory['none']}"]
    else:
        th = theory["value"]
        line = f"theory ({theory['source']}): t_B/t_A = {th:.4g}"
        if math.isfinite(tr_med):
            line += f"  (sim/theory - 1 = {100 * (tr_med / th - 1):+.2f}%)"
        lines = [line]
        if theory["note"]:
            lines.append(f"  ({theory['note']})")
    if math.isfinite(theory["misattribution"]):
        lines.append(f"theory misattribution rho/r = {theory['misattribution']:.4f}")
    return lines


def _warn_failures(rows, what="members") -> None:
    """A final stderr line when members failed (the exit status stays 0: results are flagged)."""
    from .sweep import failure_line

    line = failure_line(rows, what)
    if line:
        print(f"warning: {line}", file=sys.stderr)


def _cmd_sweep(args) -> int:
    from .sweep import format_error_table, run_sweep

    fusion = [args.depth] if args.fusion_layer is None else args.fusion_layer
    u0 = [_default_init_scale(args.depth)] if args.init_scale is None else args.init_scale
    grid = {"fusion_layer": fusion, "rho": args.rho, "ratio": args.ratio, "init_scale": u0}
    res, divergence = _divergence_notes(
        lambda: run_sweep(
            grid,
            depth=args.depth,
            width=args.width,
            seeds=args.seeds,
            init=args.init,
            method=args.method,
            lr=args.lr,
            noise=args.noise,
            t_max=args.t_max,
            out_dir=args.out,
            resume=args.resume,
            chunk_size=args.chunk_size,
            progress=not args.no_progress,
            names=_FLAG_NAMES,
        )
    )
    s = res.summary
    print(
        f"ran {res.n_run} member(s), skipped {res.n_skipped} already done; {s['n_success']}/{s['n_members']} "
        f"rows successful; {res.wall_time_s:.1f} s"
    )
    print(format_error_table(s))
    print("files: " + ", ".join(str(p) for p in res.files.values()))
    for note in divergence:
        print(f"warning: {note}", file=sys.stderr)
    _warn_failures(res.rows, "rows")
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
    from .sweep import _write_json, run_sweep

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
    figs = _run_figures(rows, spec, out, depth=depth, lf=lf, u0=u0, init=init)
    lines, table = _run_table(rows, spec["ratio"])
    r0 = figs.pop("row")
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
            for k in (
                "rho",
                "ratio",
                "t_A",
                "t_B",
                "time_ratio",
                "misattribution",
                "success",
                "status",
                "reason",
            )
        },
        "wall_time_s": wall,
        "files": {k: str(v) for k, v in res.files.items()} | {k: str(v) for k, v in figs.items()},
    }
    summary = dict(res.summary)
    summary["run"] = run_summary
    _write_json(out / "summary.json", summary)
    print()
    print("\n".join(lines))
    print(_trajectory_line(r0, depth, lf, u0))
    print(
        f"wrote {out}/: results.csv, config.json, summary.json, time_ratio.png, misattribution.png, "
        f"trajectory.png ({wall:.1f} s)"
    )
    _warn_failures(rows, "runs")
    return 0


def _run_figures(rows, spec, out, *, depth, lf, u0, init) -> dict:
    """misattribution.png (r > 1 only) and trajectory.png (r = 2, rho = 0.5); returns their
    paths and the trajectory's row (under "row")."""
    import jax

    from . import figures
    from ._measurements import measure
    from .sweep import MemberConfig, simulate_toy

    mis_rows = [r for r in rows if r["ratio"] > 1.0]  # a unimodal phase exists only for r > 1
    mis_path = out / "misattribution.png"
    if mis_rows:
        figures.plot_misattribution(mis_rows, hue_order=sorted(spec["ratio"]), path=mis_path)
    # padded to the sweep's chunk size: no recompile
    sim = simulate_toy(
        [MemberConfig(lf, 0.5, 2.0, u0, 0)],
        depth=depth,
        width=spec["width"],
        init=init,
        pad_to=spec["chunk_size"],
    )
    traj0 = sim.trajectory[0]
    stats0 = jax.tree.map(lambda a: a[0], sim.stats)
    traj_path = out / "trajectory.png"
    figures.plot_trajectory(
        traj0,
        measure(traj0, stats0),
        stats0,
        path=traj_path,
        title="late fusion, toy data: $\\sigma_A/\\sigma_B$ = 2, $\\rho$ = 0.5",
    )
    return {"misattribution_figure": mis_path, "trajectory_figure": traj_path, "row": sim.rows[0]}


def _run_table(rows, ratios) -> tuple[list[str], list[dict]]:
    """Per ratio: runs, successful runs, theory range and |sim / theory - 1| over the
    successful runs only (failed runs have no time ratio)."""
    header = (
        f"{'ratio':>6} {'runs':>5} {'ok':>4} {'theory range':>15} {'median |sim/th-1|':>18} {'max':>8}"
        f" {'misattr. median |err|':>22}"
    )
    lines, table = [header, "-" * len(header)], []
    for ratio in ratios:
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
        med_s, max_s = (
            f"{100 * v:.2f}%" if math.isfinite(v) else "-"
            for v in (entry["median_abs_rel_error"], entry["max_abs_rel_error"])
        )
        lines.append(
            f"{ratio:>6g} {len(rs):>5} {len(ok):>4} {th_range:>15} {med_s:>18} {max_s:>8} {mis_s:>22}"
        )
    return lines, table


def _trajectory_line(r0, depth, lf, u0) -> str:
    from .sweep import theory_time_ratio

    head = "trajectory (r = 2, rho = 0.5): "
    if not r0["success"]:
        return head + f"{r0['status']}: {r0['reason']} (no phase times)"
    th0 = theory_time_ratio(depth, lf, 0.5, 2.0, u0)
    return head + (
        f"t_A = {r0['t_A']:.4g}, t_B = {r0['t_B']:.4g}, t_B/t_A = {r0['time_ratio']:.4g} "
        f"(theory {th0:.4g}); misattribution {r0['misattribution']:.4f} (theory {0.5 / 2.0:.4f})"
    )


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
