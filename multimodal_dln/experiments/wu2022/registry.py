"""The reproduction entries ``greedy-*`` (Wu et al. 2022 on deep linear networks) and their
output files.

`REPRODUCE` maps each entry name to ``fn(out_dir, quick=False) -> summary dict``; each writes
``<name>.csv`` (one row per member), ``<name>.json`` (the summary, rows included) and its figures
into `out_dir`. `run_digits(out_dir, quick, seeds)` is the digits entry with a chosen number of
seeds (``mdln greedy digits --seeds N``); `run_colored(out_dir, quick, seeds)` likewise for the
coloured-digits entry.
"""

from __future__ import annotations

from pathlib import Path

from ..._constants import AUTHORS_LR
from ..._io import write_csv, write_json
from ._common import ToySetting
from .colored import colored_experiment, colored_findings, plot_colored
from .deep import deep_experiment
from .digits import digits_experiment, plot_digits
from .ode import ode_experiment
from .toy import curve_rows, plot_toy, toy_experiment

__all__ = [
    "REPRODUCE",
    "reproduce_colored",
    "reproduce_deep",
    "reproduce_digits",
    "reproduce_ode",
    "reproduce_toy",
    "run_colored",
    "run_digits",
    "write_entry",
]


def write_entry(out_dir: Path, name: str, rows, summary: dict) -> None:
    """``<name>.csv`` (columns of the first row) and ``<name>.json`` (indent 2) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if rows:
        write_csv(out_dir / f"{name}.csv", rows, list(rows[0]), nan="nan")
    write_json(out_dir / f"{name}.json", summary, indent=2, newline=False, atomic=False)


def reproduce_toy(out_dir, quick: bool = False) -> dict:
    """``greedy-toy``: vanilla vs balanced two-layer late fusion, plus d_util / d_speed figures."""
    out_dir = Path(out_dir)
    kw = dict(setting=ToySetting(rhos=(0.5, 0.0)), n_steps=2000) if quick else {}
    rows, run = toy_experiment(**kw)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = plot_toy(rows, curve_rows(rows, run), out_dir)
    summary = {
        "entry": "greedy-toy",
        "units": f"steps (t = steps x lr in gradient-flow units, lr = {AUTHORS_LR})",
        "rows": rows,
        "figures": [str(p) for p in figs],
    }
    write_entry(out_dir, "greedy_toy", rows, summary)
    return summary


def reproduce_ode(out_dir, quick: bool = False) -> dict:
    """``greedy-ode``: the hybrid ODE against the discrete loop (t_A, t_B within 5 %)."""
    out_dir = Path(out_dir)
    kw = dict(setting=ToySetting(rhos=(0.5, 0.0)), n_steps=1500) if quick else {}
    rows, _, _ = ode_experiment(**kw)
    summary = {"entry": "greedy-ode", "units": "steps (ODE time / lr)", "rows": rows}
    write_entry(out_dir, "greedy_ode", rows, summary)
    return summary


def reproduce_deep(out_dir, quick: bool = False) -> dict:
    """``greedy-deep``: L = 4, L_f in {2, 3, 4}, vanilla vs balanced."""
    out_dir = Path(out_dir)
    kw = dict(fusion_layers=(4,), rhos=(0.5,), n_steps=3000, width=32) if quick else {}
    rows = deep_experiment(**kw)
    units = f"steps (t = steps x lr, lr = {AUTHORS_LR})"
    summary = {"entry": "greedy-deep", "units": units, "rows": rows}
    write_entry(out_dir, "greedy_deep", rows, summary)
    return summary


def _run_seeded(out_dir, quick, seeds, entry, experiment, plot, findings=None) -> dict:
    """A two-head digits entry (`entry` = "greedy-digits" or "greedy-colored") with `seeds`
    seeds (default: 5; quick: 2 and a short run): rows, summary (and `findings` of the rows),
    figure, CSV and JSON."""
    out_dir = Path(out_dir)
    kw = dict(seeds=2, n_steps=200, width=16, n_save=4) if quick else {}
    if seeds is not None:
        kw["seeds"] = seeds
    rows, summ = experiment(**kw)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = plot(summ, out_dir)
    summary = {"entry": entry, "summary": summ}
    if findings is not None:
        summary["findings"] = findings(rows)
    summary |= {"rows": rows, "figures": [str(fig)]}
    write_entry(out_dir, entry.replace("-", "_"), rows, summary)
    return summary


def run_digits(out_dir, quick: bool = False, seeds: int | None = None) -> dict:
    """``greedy-digits`` with `seeds` seeds (default: 5; quick: 2)."""
    return _run_seeded(out_dir, quick, seeds, "greedy-digits", digits_experiment, plot_digits)


def reproduce_digits(out_dir, quick: bool = False) -> dict:
    """``greedy-digits``: vanilla vs balanced vs random on two noisy digit views."""
    return run_digits(out_dir, quick)


def run_colored(out_dir, quick: bool = False, seeds: int | None = None) -> dict:
    """``greedy-colored`` with `seeds` seeds (default: 5; quick: 2)."""
    return _run_seeded(
        out_dir, quick, seeds, "greedy-colored", colored_experiment, plot_colored,
        colored_findings,
    )  # fmt: skip


def reproduce_colored(out_dir, quick: bool = False) -> dict:
    """``greedy-colored``: vanilla vs balanced vs random vs a unimodal ensemble on coloured
    digits (a colour cue predictive in training only)."""
    return run_colored(out_dir, quick)


REPRODUCE = {
    "greedy-toy": reproduce_toy,
    "greedy-ode": reproduce_ode,
    "greedy-deep": reproduce_deep,
    "greedy-digits": reproduce_digits,
    "greedy-colored": reproduce_colored,
}
