"""The `mdln run` experiment: the paper's two-layer late-fusion toy experiment.

Time ratio t_B / t_A and misattribution against rho for several variance ratios (simulation
against theory; docs/theory.md §2 and §4) and one training trajectory (ratio 2, rho 0.5), with
figures, CSV and JSON in one folder. `run_experiment` does the work on the sweep engine
(`multimodal_dln.sweeps`: its folder store never deletes or mixes results; a folder holding a
run needs `resume` or `overwrite`) and returns what the CLI prints; nothing here prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from .. import sweeps, theory
from .._gradient_flow import gradient_flow
from .._io import write_json
from .._measurements import measure
from .figures import plot_misattribution, plot_time_ratio, plot_trajectory
from .summary import median, summarize, text_table

__all__ = [
    "RUN_FULL",
    "RUN_QUICK",
    "RunResult",
    "files_line",
    "header_line",
    "run_experiment",
    "run_figures",
    "run_table",
    "trajectory_line",
]

RUN_FULL = {
    "width": 100,
    "seeds": 3,
    "rho": [round(-0.9 + 0.225 * i, 12) for i in range(9)],
    "ratio": [1.0, 1.5, 2.0, 3.0],
    "chunk_size": 36,
}
RUN_QUICK = {
    "width": 8,
    "seeds": 1,
    "rho": [-0.9, -0.45, 0.0, 0.45, 0.9],
    "ratio": [1.0, 2.0, 3.0],
    "chunk_size": 4,
}
DEPTH, FUSION_LAYER, INIT_SCALE, INIT = 2, 2, 1e-12, "random"
TRAJECTORY_POINT = {"rho": 0.5, "ratio": 2.0}
_TRAJECTORY_KEYS = (
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


@dataclass
class RunResult:
    """What `run_experiment` returns: every row, the per-ratio table (lines and entries), the
    trajectory's row, the summary written to summary.json, and the wall time."""

    out: Path
    rows: list[dict]
    table_lines: list[str]
    table: list[dict]
    trajectory_row: dict
    summary: dict
    wall_time_s: float


def header_line(quick: bool, out) -> str:
    """The line printed before the run starts."""
    spec, out = (RUN_QUICK if quick else RUN_FULL), Path(out)
    return (
        f"mdln run{' --quick' if quick else ''}: two-layer late fusion on the toy data, width "
        f"{spec['width']}, {INIT} init u0 = {INIT_SCALE:g}, {spec['seeds']} seed(s), gradient "
        f"flow -> {out}/"
    )


def run_experiment(
    out,
    *,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
):
    """Run the sweep into `out` (a folder holding a run needs `resume` or `overwrite`; the
    overwritten files are kept in ``out/replaced-<time>/``), draw the figures, write
    summary.json and return a `RunResult`."""
    t0 = time.perf_counter()
    spec = RUN_QUICK if quick else RUN_FULL
    out = Path(out)
    sweep = sweeps.product(
        depth=DEPTH,
        fusion_layer=FUSION_LAYER,
        width=spec["width"],
        init=INIT,
        init_scale=INIT_SCALE,
        rho=spec["rho"],
        ratio=spec["ratio"],
        seed=range(spec["seeds"]),
    )
    df = sweeps.run(
        sweep,
        out,
        resume=resume,
        overwrite=overwrite,
        chunk_size=spec["chunk_size"],
        progress=progress,
    )
    rows = df.to_dict("records")
    figs, r0 = run_figures(rows, spec, out)
    lines, table = run_table(rows, spec["ratio"])
    wall = time.perf_counter() - t0
    files = {"results": out / "results.csv", "config": out / "config.json"} | figs
    run_summary = {
        "experiment": "two-layer late fusion, toy data (Zhang et al. 2024; docs/theory.md §2)",
        "quick": bool(quick),
        "depth": DEPTH,
        "fusion_layer": FUSION_LAYER,
        "width": spec["width"],
        "init": INIT,
        "init_scale": INIT_SCALE,
        "seeds": spec["seeds"],
        "rho": spec["rho"],
        "ratio": spec["ratio"],
        "per_ratio": table,
        "trajectory": {k: r0[k] for k in _TRAJECTORY_KEYS},
        "wall_time_s": wall,
        "files": {k: str(v) for k, v in files.items()},
    }
    summary = summarize(rows) | {"run": run_summary}
    write_json(out / "summary.json", summary)
    return RunResult(out, rows, lines, table, r0, summary, wall)


def run_figures(rows, spec, out: Path) -> tuple[dict, dict]:
    """time_ratio.png, misattribution.png (r > 1 only) and trajectory.png (r = 2, rho = 0.5,
    seed 0: the sweep's own member, simulated again to keep its trajectory); returns their
    paths and the trajectory's row."""
    order = sorted(spec["ratio"])
    tr_path, mis_path = out / "time_ratio.png", out / "misattribution.png"
    plot_time_ratio(rows, x="rho", hue="ratio", hue_order=order, path=tr_path)
    mis_rows = [r for r in rows if r["ratio"] > 1.0]  # a unimodal phase exists only for r > 1
    if mis_rows:
        plot_misattribution(mis_rows, hue_order=order, path=mis_path)
    traj0, meas0, stats0 = _trajectory_member(spec)
    traj_path = out / "trajectory.png"
    plot_trajectory(
        traj0,
        meas0,
        stats0,
        path=traj_path,
        title="late fusion, toy data: $\\sigma_A/\\sigma_B$ = 2, $\\rho$ = 0.5",
    )
    r0 = _trajectory_row(rows, meas0)
    figs = {"time_ratio_figure": tr_path, "misattribution_figure": mis_path}
    return figs | {"trajectory_figure": traj_path}, r0


def _trajectory_member(spec):
    """(trajectory, measurement, statistics) of the trajectory member (r = 2, rho = 0.5, seed
    0), built by the sweep engine (the sweep's own member) and solved as a batch of the sweep's
    chunk size with the sweep's solver settings, so that it runs the solve and measurement
    programs the sweep compiled (an unbatched solve would compile both again)."""
    point = {k: [v] for k, v in TRAJECTORY_POINT.items()}
    sw = sweeps.product(
        depth=DEPTH, fusion_layer=FUSION_LAYER, width=spec["width"], init=INIT,
        init_scale=INIT_SCALE, seed=[0], **point,
    )  # fmt: skip
    (batch,) = sweeps.inputs(sw)
    n = spec["chunk_size"]
    nets, stats = jax.tree.map(lambda a: jnp.repeat(a, n, axis=0), (batch.nets, batch.stats))
    st = batch.structure
    traj = gradient_flow(nets, stats, n_save=st["n_save"], rtol=st["rtol"])
    meas = measure(traj, stats)
    first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
    return first(traj), first(meas), first(stats)


def _trajectory_row(rows, meas0) -> dict:
    """The sweep's row of the trajectory member (r = 2, rho = 0.5, seed 0) when the grid holds
    it (the full run), else the re-simulated trajectory's own measurement (the quick grid)."""
    for r in rows:
        if (r["rho"], r["ratio"], r["seed"]) == (0.5, 2.0, 0):
            return r
    return {"rho": 0.5, "ratio": 2.0} | {
        "t_A": float(meas0.t_A), "t_B": float(meas0.t_B), "time_ratio": float(meas0.time_ratio),
        "misattribution": float(meas0.misattribution.reshape(-1)[0]),
        "success": bool(meas0.success), "status": "OK" if meas0.success else "FAILED",
        "reason": "ok" if meas0.success else meas0.failure_reasons()[0],
    }  # fmt: skip


def _ratio_entry(ratio, rows) -> dict:
    rs = [r for r in rows if r["ratio"] == ratio]
    ok = [r for r in rs if r["success"]]
    errs = [abs(r["rel_error"]) for r in ok if math.isfinite(r["rel_error"])]
    th = [r["theory_time_ratio"] for r in rs]
    mis_err = [abs(r["misattribution"] - r["rho"] / r["ratio"]) for r in ok] if ratio > 1 else []
    return {
        "ratio": ratio,
        "n": len(rs),
        "n_success": len(ok),
        "theory_min": min(th),
        "theory_max": max(th),
        "median_abs_rel_error": median(errs),
        "max_abs_rel_error": max(errs) if errs else math.nan,
        "misattribution_median_abs_error": median(mis_err),
    }


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if math.isfinite(v) else "-"


def _theory_range(e) -> str:
    lo, hi = e["theory_min"], e["theory_max"]
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g} - {hi:.3g}"


def _mis_cell(e) -> str:
    v = e["misattribution_median_abs_error"]
    return f"{v:.4f}" if e["ratio"] > 1 and e["n_success"] else "- (no phase)"


_RUN_COLUMNS = (
    ("ratio", 6, lambda e: f"{e['ratio']:g}"),
    ("runs", 5, lambda e: f"{e['n']}"),
    ("ok", 4, lambda e: f"{e['n_success']}"),
    ("theory range", 15, _theory_range),
    ("median |sim/th-1|", 18, lambda e: _pct(e["median_abs_rel_error"])),
    ("max", 8, lambda e: _pct(e["max_abs_rel_error"])),
    ("misattr. median |err|", 22, _mis_cell),
)


def run_table(rows, ratios) -> tuple[list[str], list[dict]]:
    """Per ratio: runs, successful runs, theory range and |sim / theory - 1| over the
    successful runs only (failed runs have no time ratio). Returns (lines, entries)."""
    table = [_ratio_entry(ratio, rows) for ratio in ratios]
    header, *body = text_table(_RUN_COLUMNS, table)
    return [header, "-" * len(header), *body], table


def trajectory_line(r0) -> str:
    """The trajectory run's phase times next to the theory, or why it has none."""
    head = "trajectory (r = 2, rho = 0.5): "
    if not r0["success"]:
        return head + f"{r0['status']}: {r0['reason']} (no phase times)"
    th0 = theory.time_ratio_toy_network(DEPTH, FUSION_LAYER, 0.5, 2.0, INIT_SCALE)
    return head + (
        f"t_A = {r0['t_A']:.4g}, t_B = {r0['t_B']:.4g}, t_B/t_A = {r0['time_ratio']:.4g} "
        f"(theory {th0:.4g}); misattribution {r0['misattribution']:.4f} (theory {0.5 / 2.0:.4f})"
    )


def files_line(out: Path, wall: float) -> str:
    """The closing line: what was written where, and how long it took."""
    return (
        f"wrote {out}/: results.csv, config.json, summary.json, time_ratio.png, "
        f"misattribution.png, trajectory.png ({wall:.1f} s)"
    )
