"""Figures: each plot returns a Figure, writes a PNG, and leaves no pyplot state behind."""

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import is_png as _is_png, pyplot_figures as _pyplot_figures, toy_rows as _fake_rows
from matplotlib.figure import Figure

import multimodal_dln as mdln
from multimodal_dln._status import Status
from multimodal_dln.experiments import figures
from multimodal_dln.sweeps import PHASE_COLUMNS


@pytest.mark.parametrize(
    "x, hue, kwargs",
    [
        ("rho", "ratio", {}),
        (
            "ratio",
            "fusion_layer",
            {"depth": 3, "fusion_layers": (1, 2, 3), "rhos": (0.0,), "ratios": (1.5, 2, 3)},
        ),
        (
            "init_scale",
            "fusion_layer",
            {"fusion_layers": (1, 2), "rhos": (0.0,), "u0s": (1e-3, 1e-6, 1e-12)},
        ),
        (
            "fusion_layer",
            None,
            {"depth": 4, "fusion_layers": (1, 2, 3, 4), "rhos": (0.0,), "ratios": (2.0,)},
        ),
    ],
)
def test_plot_time_ratio_png(tmp_path, x, hue, kwargs):
    before = _pyplot_figures()
    path = tmp_path / f"tr_{x}.png"
    fig = figures.plot_time_ratio(_fake_rows(**kwargs), x=x, hue=hue, path=path)
    assert isinstance(fig, Figure)
    assert _is_png(path) and path.stat().st_size > 5000
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_legend() is not None
    assert _pyplot_figures() == before


def test_plot_time_ratio_accepts_rows_columns_and_ax(tmp_path):
    """Figures take rows (a list of dicts, a dict of columns, or a DataFrame's records), not
    files."""
    rows = _fake_rows()
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    fig = figures.plot_time_ratio(cols)
    assert len(fig.axes[0].lines) > 0
    import pandas as pd

    figures.plot_time_ratio(pd.DataFrame(rows).to_dict("records"), path=tmp_path / "df.png")
    assert _is_png(tmp_path / "df.png")
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("rho\n0.0\n")
    with pytest.raises(ValueError, match="not files"):
        figures.plot_time_ratio(csv_path)
    outer = Figure()
    ax = outer.subplots()
    assert figures.plot_time_ratio(rows, ax=ax) is outer
    with pytest.raises(ValueError, match="no rows"):
        figures.plot_time_ratio([])


def test_plot_misattribution_png(tmp_path):
    path = tmp_path / "mis.png"
    fig = figures.plot_misattribution(
        _fake_rows(ratios=(1.5, 2.0, 3.0)), hue_order=[1.0, 1.5, 2.0, 3.0], path=path
    )
    assert isinstance(fig, Figure) and _is_png(path)
    # theory lines rho / r: one per ratio
    slopes = set()
    for line in fig.axes[0].lines:
        xs, ys = (np.asarray(a, float) for a in line.get_data())
        if xs.size > 50:
            slopes.add(round(float(np.polyfit(xs, ys, 1)[0]), 6))
    assert slopes == {round(1 / 1.5, 6), 0.5, round(1 / 3, 6)}


class _Run(NamedTuple):
    trajectory: object
    measurements: object
    stats: object


def _toy_run(**kw) -> _Run:
    """Four two-layer late-fusion networks (width 8) on the toy data rho 0.5, ratio 2."""
    stats = jax.vmap(mdln.Statistics.toy)(jnp.full(4, 0.5), jnp.full(4, 2.0))
    nets = jax.vmap(
        lambda k: mdln.FusionDLN.init(k, depth=2, fusion_layer=2, width=8, d_A=1, d_B=1,
                                      init_scale=1e-12)
    )(jax.random.split(jax.random.key(0), 4))  # fmt: skip
    traj = mdln.gradient_flow(nets, stats, **kw)
    return _Run(traj, mdln.measure(traj, stats), stats)


@pytest.fixture(scope="module")
def run():
    return _toy_run()


def test_plot_trajectory_png(tmp_path, run):
    before = _pyplot_figures()
    traj, meas = run.trajectory[0], jax.tree.map(lambda a: a[0], run.measurements)
    stats = jax.tree.map(lambda a: a[0], run.stats)
    for xscale in ("linear", "log"):
        path = tmp_path / f"traj_{xscale}.png"
        fig = figures.plot_trajectory(traj, meas, stats, xscale=xscale, path=path)
        assert _is_png(path)
        ax_loss, ax_w = fig.axes
        # t_A and t_B dotted lines in both panels
        for ax in (ax_loss, ax_w):
            xs = {
                round(float(line.get_xdata()[0]), 9)
                for line in ax.lines
                if line.get_linestyle() == ":" and np.ptp(line.get_xdata()) == 0
            }
            assert {round(float(meas.t_A), 9), round(float(meas.t_B), 9)} <= xs
        # normalised weights end at 1
        for line in ax_w.lines[:2]:
            assert float(np.asarray(line.get_ydata())[-1]) == pytest.approx(1.0)
    # measurements are computed when not given; a batch of one is accepted
    figures.plot_trajectory(run.trajectory[:1], None, jax.tree.map(lambda a: a[:1], run.stats))
    with pytest.raises(ValueError, match="one run"):
        figures.plot_trajectory(run.trajectory, None, stats)
    assert _pyplot_figures() == before


def _plotted_points(fig):
    """(x, y) of every marker drawn (lines without a line style), NaN-free."""
    pts = []
    for line in fig.axes[0].lines:
        if line.get_linestyle() in ("None", "none", ""):
            xs, ys = (np.asarray(a, float) for a in line.get_data())
            pts += [(a, b) for a, b in zip(xs, ys, strict=True) if math.isfinite(b)]
    return pts


@pytest.mark.parametrize("plot", [figures.plot_time_ratio, figures.plot_misattribution])
def test_failed_members_are_never_plotted(plot):
    """Failed rows are NaN now; even a failed row that still holds a plausible number (e.g.
    built by hand) is not drawn, and no 'nan' legend entry or warning appears."""
    rows = _fake_rows(ratios=(1.5, 2.0))
    planted = dict(rows[0], success=False, status="DIVERGED", reason="lower lr")
    planted |= {"time_ratio": 1234.5, "misattribution": 1234.5, "rho": 0.25}
    all_failed = [
        dict(r, success=False, status="NOT_CONVERGED") | dict.fromkeys(PHASE_COLUMNS, math.nan)
        for r in rows
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot(rows + [planted])
        assert 1234.5 not in {y for _, y in _plotted_points(fig)}
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert not any("nan" in t.lower() for t in texts), texts
        assert "nan" not in fig.axes[0].get_title().lower()
        assert "failed run" in fig.axes[0].get_title()
        fig = plot(all_failed)
        assert _plotted_points(fig) == []


def test_plot_trajectory_failure_subtitle(run):
    stats = jax.tree.map(lambda a: a[0], run.stats)
    traj, meas = run.trajectory[0], jax.tree.map(lambda a: a[0], run.measurements)
    # the run itself is fine but the measurement failed: the subtitle names the measurement's
    # status and reason (the trajectory alone would say "ok")
    bad = eqx.tree_at(lambda m: m.status, meas, jnp.asarray(Status.NO_CROSSING, jnp.int32))
    title = figures.plot_trajectory(traj, bad, stats)._suptitle.get_text()
    assert "NO_CROSSING" in title and "threshold" in title and "ok" not in title.split()
    # a run stopped by a tiny t_max: NOT_CONVERGED, with the flow remedy
    short = _toy_run(t_max=1e-3)
    assert int(short.trajectory.status[0]) == Status.NOT_CONVERGED
    fig = figures.plot_trajectory(short.trajectory[0], None, stats)
    title = fig._suptitle.get_text()
    assert "NOT_CONVERGED" in title and "t_max" in title and "nan" not in title
