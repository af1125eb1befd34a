"""Figures: each plot returns a Figure, writes a PNG, and leaves no pyplot state behind."""

import importlib
import math
import unittest.mock
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from helpers import is_png as _is_png, pyplot_figures as _pyplot_figures, toy_rows as _fake_rows
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

import multimodal_dln as mdln
from multimodal_dln import sweeps
from multimodal_dln._status import Status
from multimodal_dln.experiments import _style, figures, sweep_report
from multimodal_dln.experiments.wu2022 import digits as wu_digits, toy as wu_toy
from multimodal_dln.experiments.zhang2024 import (
    FIGURES,
    convergence,
    deep,
    generalization,
    random_cov,
    relu,
    superficial,
    toy,
    trajectories,
)
from multimodal_dln.sweeps import PHASE_COLUMNS
from multimodal_dln.sweeps._frame import to_frame


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


# ------------------------------------------------------------------------------------------------
# the one style (issue 14): legends explain every mark, axes labelled, titles inside the figure
# and off other panels, value-keyed colours, one time axis. Small synthetic rows, no simulation.
# ------------------------------------------------------------------------------------------------
_NONE = (None, "None", "none", "", " ")


def _legend_handles(fig) -> list:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [h for lg in legends + list(fig.legends) for h in lg.legend_handles]


def _shows_mark(h) -> bool:
    if isinstance(h, Line2D):
        line = h.get_linestyle() not in _NONE and h.get_linewidth() > 0
        return h.get_marker() not in _NONE or line
    if isinstance(h, Patch):
        return h.get_facecolor()[3] > 0 and (h.get_alpha() is None or h.get_alpha() > 0)
    return h.get_visible()


def _drawn_marks(fig) -> tuple[set, set]:
    """(markers, line styles) of every drawn, non-empty Line2D."""
    markers, styles = set(), set()
    for ax in fig.axes:
        for ln in ax.lines:
            if not ln.get_visible() or np.size(ln.get_xdata()) == 0:
                continue
            if ln.get_marker() not in _NONE:
                markers.add(ln.get_marker())
            if ln.get_linestyle() not in _NONE:
                styles.add(ln.get_linestyle())
    return markers, styles


def _style_problems(fig) -> list[str]:
    """Everything the figure style forbids (empty when the figure is fine)."""
    problems = []
    handles = _legend_handles(fig)
    problems += [f"legend entry without a mark: {h.get_label()!r}" for h in handles
                 if not _shows_mark(h)]  # fmt: skip
    markers, styles = _drawn_marks(fig)
    lines = [h for h in handles if isinstance(h, Line2D)]
    missing_m = markers - {h.get_marker() for h in lines}
    missing_s = styles - {h.get_linestyle() for h in lines if h.get_linewidth() > 0}
    problems += [f"marker {m!r} drawn but not in a legend" for m in sorted(missing_m)]
    problems += [f"line style {s!r} drawn but not in a legend" for s in sorted(missing_s)]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis, name in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            shown = axis.get_visible() and ax.get_visible()
            ticks = [t for t in axis.get_ticklabels() if shown and t.get_visible() and t.get_text()]
            if ticks and not axis.label.get_text().strip():
                problems.append(f"{name} axis with tick labels but no label ({ax.get_title()!r})")
    # each panel's frame, tick labels, labels and title
    areas = [(ax, ax.get_tightbbox(renderer, bbox_extra_artists=[])) for ax in fig.axes]
    texts = [(ax, t) for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)]
    if fig._suptitle is not None:
        texts.append((None, fig._suptitle))
    for owner, t in texts:
        if not (t.get_visible() and t.get_text().strip()):
            continue
        bb = t.get_window_extent(renderer).shrunk(0.98, 0.9)  # touching is not overlapping
        if not fig.bbox.padded(1).contains(bb.x0, bb.y0) or not fig.bbox.padded(1).contains(
            bb.x1, bb.y1
        ):
            problems.append(f"text clipped by the figure edge: {t.get_text()!r}")
        for other, area in areas:
            same = owner is not None and np.allclose(other.bbox.bounds, owner.bbox.bounds)
            if other is not owner and not same and bb.overlaps(area):
                problems.append(f"text {t.get_text()!r} overlaps another panel")
    return problems


def _color_of(fig, label) -> tuple:
    """The colour of the legend entry `label`."""
    for h in _legend_handles(fig):
        if h.get_label() == label:
            return tuple(np.round(matplotlib.colors.to_rgba(h.get_color()), 6))
    raise AssertionError(f"no legend entry {label!r}")


def _zhang_toy_rows(ratios=(1.0, 1.5, 2.0, 3.0), rhos=(-0.5, 0.0, 0.5), gd=True):
    """Rows of zhang2024.toy's time-ratio entry: flow (and GD), ReLU, theory curves."""
    rows = []
    for r in ratios:
        for rho in rhos:
            th = float(mdln.theory.time_ratio_toy(rho, r))
            for kind in ("flow", "gd", "relu") if gd else ("flow", "relu"):
                rows.append({"kind": kind, "ratio": r, "rho": rho, "seed": 0,
                             "time_ratio": th * 1.02, "misattribution": rho / r + 0.01,
                             "success": True})  # fmt: skip
    return rows


def _mis_rows(ratios=(1.5, 2.0, 3.0)):
    rows = _zhang_toy_rows(ratios, gd=False)
    for r in ratios:
        rows += [{"kind": "theory", "ratio": r, "rho": x, "theory": x / r} for x in (-0.9, 0.9)]
    return rows


def _deep_rows():
    rows = []
    for Lf in (1, 2, 3, 4):
        for rho in (-0.5, 0.0, 0.5):
            base = {"L_f": Lf, "rho": rho, "ratio": 2.0, "init_scale": 0.1}
            tr = float(mdln.theory.time_ratio_deep_toy(4, Lf, rho, 2.0, 0.1))
            rows.append(base | {"kind": "formula", "time_ratio": tr})
            rows.append(base | {"kind": "reduced", "time_ratio": tr * 1.01, "success": True})
            rows.append(base | {"kind": "aligned", "time_ratio": tr * 1.01, "success": True})
            for s in range(2):
                ok = not (Lf == 4 and rho == -0.5 and s == 1)
                rows.append(base | {"kind": "random", "seed": s, "success": ok,
                                    "time_ratio": 11.0 if not ok else tr * 0.9})  # fmt: skip
    return rows, {"settings": {"init_scale": 0.1}}


def _trajectory_rows():
    rows, summary = [], {}
    ts = np.linspace(0, 1500, 60)
    for name in ("late", "early"):
        for rho in (0.0, 0.5, -0.5):
            step = lambda t0: 1 / (1 + np.exp(-(ts - t0) / 10))  # noqa: E731
            rows += [{"fusion": name, "rho": rho, "epoch": t, "loss_normalized": 1 - a,
                      "W_A": a, "W_B": b} for t, a, b in zip(ts, step(100), step(450))]  # fmt: skip
            summary[f"{name}_rho={rho:g}"] = {"t_A_theory_epochs": 100.0,
                                              "t_B_theory_epochs": 450.0,
                                              "plateau_theory": 0.2}  # fmt: skip
    return rows, summary


def _zhang_figures() -> dict:
    """Every zhang2024 figure, from synthetic rows (theory curves are the library's)."""
    figs = {}
    figs["toy-time-ratio"] = toy.plot_time_ratio(_zhang_toy_rows())
    figs["misattribution"] = toy.plot_misattribution(_mis_rows())
    rows, summary = trajectories.summarize_heatmaps({"n": 6})
    figs["heatmaps"] = trajectories.plot_heatmaps(rows, summary)
    figs["trajectories"] = trajectories.plot_trajectories(*_trajectory_rows())
    rows, summary = _deep_rows()
    figs["deep-rho"] = deep.plot_deep(rows, summary, "rho")
    loss_rows = [
        {"L_f": Lf, "kind": k, "epoch": e, "loss_normalized": 1 / (1 + e / 100)}
        for Lf in (1, 2, 3, 4)
        for k in ("random", "aligned")
        for e in (1, 100, 1e4)
    ]
    figs["deep-loss"] = deep.plot_deep_loss(loss_rows, {"plateau_theory": 0.2})
    sup = superficial.summarize_superficial(
        {"ts": np.linspace(0, 20, 30), "loss": np.linspace(1, 0, 30),
         "m": {"plateau_loss": [0.64], "initial_loss": [1.0]}, "L(M_A)/L(M_0)": 0.64,
         "L(M_B)/L(M_0)": 0.36, "learned_first": "A"}
    )  # fmt: skip
    figs["superficial"] = superficial.plot_superficial(*sup)
    rc = [{"theory": t, "sim_u0_1e-9": t * 1.1, "sim_u0_1e-100": t, "success_1e-9": True,
           "success_1e-100": True} for t in (2.0, 5.0, 12.0)]  # fmt: skip
    figs["random-cov"] = random_cov.plot_random_cov(rc)
    conv = [{"rho": rho, "ratio": r, "ln_1_over_u0": ell, "leading_order": 4.0,
             "reduced": 4 + 1 / ell, "first_order": 4 + 0.9 / ell, "sim_aligned": 4 + 1 / ell,
             "sim_random": 4 + 1.2 / ell, "success_aligned": True, "success_random": True}
            for rho, r in convergence._PAIRS for ell in (5.0, 20.0, 60.0)]  # fmt: skip
    figs["init-convergence"] = convergence.plot_init_convergence(conv)
    gen, gsum = [], {}
    for n in (70, 700):
        for name in ("early", "late"):
            gen += [{"fusion": name, "n": n, "epoch": e, "loss_normalized": 1 / (1 + e),
                     "E_g": 0.5} for e in (0.0, 100.0, 1e4)]  # fmt: skip
            gsum[f"{name}_n={n}"] = {"predicted_final_E_g": 0.5, "E_g_unimodal_M_A": 0.8}
    figs["generalization"] = generalization.plot_generalization(gen, gsum)
    xor, xsum = [], {}
    for name in ("early", "late"):
        for sg in (1.0, 2.0, 3.0):
            base = {"fusion": name, "sigma_A": sg, "seed": 0}
            xor += [base | {"epoch": e, "loss_normalized": 1 / (1 + e)} for e in (1.0, 1e3)]
            xor += [base | {"unit": u, "w_B1": np.cos(u), "w_B2": np.sin(u), "w_A": u - 2.0,
                            "w_out": 1.0 - u / 3} for u in range(5)]  # fmt: skip
            xsum[f"{name}_sigmaA={sg:g}_seed=0"] = {"xor_directions_used": 4}
    figs["xor"] = relu.plot_xor(xor, xsum)
    dig = [{"L_f": Lf, "epoch": e, "acc_A": 0.9, "acc_B": 0.1 + e / 4000, "acc_AB": 0.9,
            "loss": 1 / (1 + e)} for Lf in (1, 2, 3, 4) for e in (0, 1000, 3000)]  # fmt: skip
    figs["digits"] = relu.plot_digits(dig, {"settings": {"lr": 0.2}})
    if "weight-decay" in FIGURES:  # registered with its module
        wd = importlib.import_module("multimodal_dln.experiments.zhang2024.weight_decay")
        wd_rows = [{"fusion": f, "rho": rho, "lambda_over_lambda_c": x, "W_A": 1.0, "W_B": 0.5,
                    "time_ratio": 2.0} for f in ("late", "early") for rho in wd._RHOS
                   for x in (0.0, 0.5)]  # fmt: skip
        figs["weight-decay"] = FIGURES["weight-decay"].plot(wd_rows, {})
    if "unbalanced-init" in FIGURES:  # registered with its module
        ub = importlib.import_module("multimodal_dln.experiments.zhang2024.unbalanced")
        ub_rows = [{"rho": 0.5, "series": s, "delta_A": d, "delta_B": d, "abs_delta": abs(d),
                    "t_A": 1.0, "t_B": 5.0, "time_ratio": 5.0, "success": True}
                   for s in ub.SERIES for d in (0.0, 1e-6, -1e-6)]  # fmt: skip
        figs["unbalanced-init"] = FIGURES["unbalanced-init"].plot(ub_rows, {})
    if "minibatch-noise" in FIGURES:  # registered with its module
        mb = importlib.import_module("multimodal_dln.experiments.zhang2024.minibatch")
        one = {"t_A": 1.0, "t_B": 5.0, "time_ratio": 5.0, "success": True}
        runs = {b: {"t_A": np.array([1.02, 1.04]), "t_B": np.array([5.0, 4.9]),
                    "time_ratio": np.array([4.9, 4.7]), "success": np.array([True, True]),
                    "status": ["OK", "OK"]} for b in (1, 4)}  # fmt: skip
        sim = {"cfg": {"n": 8, "batch_sizes": [1, 4], "seeds": 2, "width": 2}, "sgd": runs,
               "gd": one, "flow": one | {"time_ratio": 5.1}, "slowdown": {1: 1.03, 4: 1.01}}
        figs["minibatch-noise"] = FIGURES["minibatch-noise"].plot(*mb.summarize_minibatch(sim))
    if "modalities" in FIGURES:  # registered with its module
        md = importlib.import_module("multimodal_dln.experiments.zhang2024.modalities")
        md_rows = [{"group": g[0], "success": True, "learned_rank": k, "t_sim": 1.01 * k,
                    "t_theory0": float(k), "t_theory1": float(k)}
                   for g in md.GROUPS for k in range(1, g[1] + 1)]  # fmt: skip
        figs["modalities"] = FIGURES["modalities"].plot(md_rows, {})
    return figs


@pytest.fixture(scope="module")
def zhang_figures():
    return _zhang_figures()


def test_every_reproduction_figure_follows_the_style(zhang_figures):
    """Legends explain every mark drawn (not titles), every legend entry shows its mark, every
    axis with tick labels is labelled, no title or label is clipped or lies over another panel
    (e.g. a y label over the neighbouring colour bar)."""
    assert set(zhang_figures) == set(FIGURES) - {"deep-ratio", "deep-init"}  # same plot_deep
    bad = {name: p for name, fig in zhang_figures.items() if (p := _style_problems(fig))}
    assert not bad, bad


def test_one_time_axis(zhang_figures, run):
    """Every time axis is gradient-flow time t with the one label (no 'epoch' axes)."""
    labels = {
        ax.get_xlabel() for fig in zhang_figures.values() for ax in fig.axes if ax.get_xlabel()
    }
    assert not [lab for lab in labels if "epoch" in lab.lower()], labels
    for name in ("trajectories", "superficial", "deep-loss", "generalization", "xor", "digits"):
        assert _style.TIME_LABEL in {ax.get_xlabel() for ax in zhang_figures[name].axes}, name
    traj = figures.plot_trajectory(run.trajectory[0], None, jax.tree.map(lambda a: a[0], run.stats))
    assert {ax.get_xlabel() for ax in traj.axes} == {_style.TIME_LABEL}
    assert not _style_problems(traj)
    # rows in the paper's epochs at lr 0.04 are drawn at t = epochs x 0.04; digits at its lr
    late0 = zhang_figures["trajectories"].axes[0]
    assert late0.lines[0].get_xdata()[-1] == pytest.approx(1500 * 0.04)
    dig = zhang_figures["digits"].axes[0]
    assert dig.lines[0].get_xdata()[-1] == pytest.approx(3000 * 0.2)


def test_heatmap_panels_titled_with_labelled_colour_bars(zhang_figures):
    fig = zhang_figures["heatmaps"]
    maps = [ax for ax in fig.axes if ax.collections and ax.get_xlabel()]
    bars = [ax for ax in fig.axes if ax not in maps]
    assert len(maps) == 2 and len(bars) == 2
    assert all(ax.get_title() for ax in maps)
    assert all(ax.get_ylabel() for ax in bars)


def test_a_value_has_one_colour_in_every_figure():
    """sigma_A / sigma_B = 1.5 is the same colour whatever else a figure shows (before, the
    colour followed the position in the figure's list: blue in one figure, red in another)."""
    label = "$\\sigma_A/\\sigma_B$ = 1.5"
    a = figures.plot_time_ratio(_fake_rows(ratios=(1.5, 2.0)))
    b = figures.plot_time_ratio(_fake_rows(ratios=(1.0, 1.5, 3.0)))
    c = toy.plot_time_ratio(_zhang_toy_rows(ratios=(1.5, 3.0), rhos=(0.0,), gd=False))
    d = figures.plot_misattribution(_fake_rows(ratios=(1.5,)))
    colors = {_color_of(f, label) for f in (a, b, c, d)}
    assert len(colors) == 1
    # the sweep report keys by value too (its legend says r = ...)
    members = sweeps.product(rho=[0.0, 0.5], ratio=[1.5, 2.0]).members()
    rows = [m | dict.fromkeys(sweeps.COLUMNS[len(sweeps.AXIS_NAMES):], math.nan)
            | {"time_ratio": 3.0, "success": True, "status": "OK", "reason": "ok",
               "num_steps": 10, "theory_time_ratio": 3.0} for m in members]  # fmt: skip
    fig = sweep_report.plot_sweep(to_frame([], rows, sweeps.COLUMNS), x="rho", hue="ratio")
    assert _color_of(fig, "r = 1.5") in colors
    # distinct values get distinct colours, integer axes a fixed table
    ratios = [_style.value_color("ratio", r) for r in (1.0, 1.5, 2.0, 3.0)]
    assert len(set(ratios)) == 4
    assert _style.value_color("fusion_layer", 4) == matplotlib.colors.to_rgba("#e41a1c")
    deep_fig = deep.plot_deep(*_deep_rows(), "rho")
    assert _color_of(deep_fig, "$L_f$ = 4") == tuple(np.round(_style.value_color("L_f", 4), 6))


def test_simulation_points_are_medians_and_say_so():
    """The open circle is the median over seeds, as in the tables, and the legend says so."""
    rows = _fake_rows(rhos=(0.0,), ratios=(2.0,), seeds=3)
    for r, tr in zip(rows, (1.0, 2.0, 10.0), strict=True):
        r.update(time_ratio=tr, success=True)
    fig = figures.plot_time_ratio(rows)
    circles = [ln for ln in fig.axes[0].lines if ln.get_marker() == "o" and ln.get_markersize() > 5]
    assert [float(ln.get_ydata()[0]) for ln in circles] == [2.0]  # mean would be 4.33
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "simulation (median over seeds)" in texts and not any("mean" in t for t in texts)
    assert not _style_problems(fig)


def test_unmeasured_members_are_counted_not_drawn():
    fig = deep.plot_deep(*_deep_rows(), "rho")
    ys = np.concatenate([ln.get_ydata() for ln in fig.axes[0].lines if ln.get_marker() == "^"])
    assert 11.0 not in ys
    assert "1 network(s) without a measured phase time" in fig.axes[0].get_title()


def test_greedy_figures_follow_the_style(tmp_path):
    """Digits: accuracy and d_util on separately labelled axes; toy: the legend, not the title,
    explains the vertical lines; both files saved with nothing clipped."""
    stats = {"mean": 0.5, "std": 0.01}
    summary = {alg: {k: stats for k in wu_digits.SUMMARY_KEYS} | {"d_util": {"mean": -0.4,
               "std": 0.02}} for alg in ("vanilla", "balanced", "random")}  # fmt: skip
    captured = {}
    real_savefig = wu_digits.savefig

    def keep(fig, path, **kw):
        captured[path.name] = fig
        return real_savefig(fig, path, **kw)

    rows = [{"rho": rho, "Q": q, "alpha": None if q is None else 0.01, "t_A": 4.0, "t_B": 20.0}
            for rho in (0.5, 0.0) for q in (None, 1, 5)]  # fmt: skip
    curves = [{"rho": r["rho"], "Q": r["Q"], "t": t, "d_util": -1 + t / 100, "d_speed": -1.0}
              for r in rows for t in (0.5, 5.0, 50.0)]  # fmt: skip
    patch = unittest.mock.patch.object
    with patch(wu_digits, "savefig", keep), patch(wu_toy, "savefig", keep):
        wu_digits.plot_digits(summary, tmp_path)
        wu_toy.plot_toy(rows, curves, tmp_path)
    assert set(captured) == {"greedy_digits.png", "greedy_toy_dutil.png", "greedy_toy_dspeed.png"}
    for name, fig in captured.items():
        assert not _style_problems(fig), name
        assert _is_png(tmp_path / name)
    acc, dutil = (ax for ax in captured["greedy_digits.png"].axes)
    assert "accuracy" in acc.get_ylabel() and "d_{util}" in dutil.get_ylabel()
    assert all(p.get_height() > 0 for p in acc.patches)
    assert all(p.get_height() < 0 for p in dutil.patches)
    toy_fig = captured["greedy_toy_dutil.png"]
    assert "vertical" not in toy_fig._suptitle.get_text()
    assert {ax.get_xlabel() for ax in toy_fig.axes} == {_style.TIME_LABEL}
