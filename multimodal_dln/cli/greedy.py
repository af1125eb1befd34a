"""``mdln greedy EXPERIMENT``: greedy multimodal learning (Wu et al. 2022) on deep linear
networks, two noisy digit views and coloured digits (`experiments.wu2022`): vanilla vs balanced
training; tables (or one JSON object) on stdout, results in --out."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .._constants import AUTHORS_LR
from .._io import dumps
from ..experiments.wu2022 import REPRODUCE, run_colored, run_digits
from ._common import pos_int

__all__ = ["COLUMNS", "add_parser", "main", "table"]

EPILOG = f"""\
experiments (reproduce entries greedy-<name>):
  toy      two-layer late fusion, toy data: vanilla vs balanced Q=1,5, figures
  ode      the duty-cycle-averaged hybrid ODE vs the discrete loop (t_A, t_B)
  deep     L=4, L_f in {{2,3,4}}, vanilla vs balanced Q=1,5
  digits   scikit-learn digits, two noisy views, two-head ReLU net, several seeds
  colored  coloured digits (a colour cue spurious at test) vs a unimodal ensemble
  all      every one of the above

examples:
  mdln greedy toy --out greedy-results        # default folder: mdln-results/greedy
  mdln greedy digits --seeds 3
  mdln greedy colored --quick
  mdln greedy all --quick

Times are printed in steps and in gradient-flow units t = steps x lr (lr = {AUTHORS_LR}).
"""

_TIMES = ("t_A_steps", "t_B_steps", "reference_t_A_steps", "reference_t_B_steps")
COLUMNS = {
    "greedy-toy": ("rho", "algorithm", "Q", *_TIMES, "t_A", "t_B", "lag_steps")
    + ("unimodal_steps", "inverted_steps", "rebalance_steps")
    + ("final_d_util", "final_loss", "final_E_g"),
    "greedy-ode": ("rho", "algorithm", "Q", "discrete_t_A_steps", "ode_t_A_steps")
    + ("rel_diff_t_A", "discrete_t_B_steps", "ode_t_B_steps", "rel_diff_t_B", "ode_switches"),
    "greedy-deep": ("rho", "fusion_layer", "algorithm", "Q", *_TIMES, "lag_steps")
    + ("final_d_util", "final_loss"),
}
"""The columns printed per entry (every column is in the CSV)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``mdln greedy`` on an argparse subparsers object; returns the subparser."""
    p = subparsers.add_parser(
        "greedy",
        help="greedy multimodal learning (Wu et al. 2022): vanilla vs balanced training",
        description=(
            "Conditional utilization rate, conditional learning speed and balanced "
            "multimodal learning (Wu et al., ICML 2022) on deep linear fusion networks "
            "and on two noisy views of scikit-learn's digits."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "experiment",
        choices=("toy", "ode", "deep", "digits", "colored", "all"),
        help="which experiment",
    )
    p.add_argument(
        "--out",
        default="mdln-results/greedy",
        metavar="DIR",
        help="output folder (default: mdln-results/greedy)",
    )
    p.add_argument("--quick", action="store_true", help="a small smoke-test version (seconds)")
    p.add_argument(
        "--seeds",
        type=pos_int,
        default=None,
        metavar="N",
        help="digits, colored: number of seeds (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=main)
    return p


def table(rows, cols) -> str:
    """Right-aligned columns; None as '-', floats with 4 significant digits."""

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [list(cols)] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join(
        "  ".join(x.rjust(w) for x, w in zip(row, widths, strict=True)) for row in cells
    )


def _print(name, res, out) -> None:
    print(f"== {name} ({res['seconds']} s; results in {out}/)")
    if name in COLUMNS:
        print(table(res["rows"], COLUMNS[name]))
    else:
        for alg, s in res["summary"].items():
            print(
                f"{alg:>9}: "
                + ", ".join(f"{k} {v['mean']:.3f}±{v['std']:.3f}" for k, v in s.items())
            )
    if res.get("figures"):
        print("figures: " + ", ".join(res["figures"]))


def main(args) -> int:
    """Runs the chosen entries, writes results into --out, prints tables (or JSON)."""
    names = list(REPRODUCE) if args.experiment == "all" else [f"greedy-{args.experiment}"]
    out = Path(args.out)
    results = {}
    for name in names:
        t0 = time.time()
        if name == "greedy-digits" and args.seeds is not None:
            res = run_digits(out, args.quick, args.seeds)
        elif name == "greedy-colored" and args.seeds is not None:
            res = run_colored(out, args.quick, args.seeds)
        else:
            res = REPRODUCE[name](out, quick=args.quick)
        res["seconds"] = round(time.time() - t0, 1)
        results[name] = res
        if not args.json:
            _print(name, res, out)
    if args.json:
        print(dumps(results))
    return 0
