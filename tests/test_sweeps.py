"""The declarative sweep engine (`multimodal_dln.sweeps`): declaration, grouping, results
against theory, independence from chunking and grid history, resume, the DataFrame."""

import math

import jax
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import sweeps, theory
from multimodal_dln.sweeps._run import chunks

TOY = dict(depth=2, width=100)


# ---- declaration ------------------------------------------------------------------------------
def test_product_zipped_and_concatenation_count_members():
    a = sweeps.product(rho=[0.0, 0.5], seed=range(3))
    b = sweeps.zipped(ratio=[2.0, 3.0], init_scale=[1e-6, 1e-8])
    assert len(a * b) == 12
    assert len(a + a) == 12 and len((a + a).members()) == 6  # repeats dropped
    m = (a * b).members()
    assert {(x["ratio"], x["init_scale"]) for x in m} == {(2.0, 1e-6), (3.0, 1e-8)}


def test_axes_that_do_not_apply_are_empty_and_do_not_duplicate():
    m = sweeps.product(method=["flow", "gd"], lr=[0.01, 0.04]).members()
    assert len(m) == 3  # one flow member: lr does not apply to it
    flow = [x for x in m if x["method"] == "flow"][0]
    assert flow["lr"] is None and flow["rtol"] == 1e-8
    rnd = sweeps.product(data="random", rho=0.5, d_A=3).members()[0]
    assert rnd["rho"] is None and rnd["d_A"] == 3 and rnd["d_B"] == 10
    red = sweeps.product(method="reduced", depth=3, fusion_layer=2).members()[0]
    assert red["width"] is None and red["seed"] is None and red["init_scale"] == 0.1


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(depth=3, fusion_layer=[2, 4]), r"member 1: fusion_layer must be in 1..depth = 3"),
        (dict(rho=[0.0, 1.5]), r"member 1: rho must be in \(-1, 1\).*got 1.5"),
        (dict(depth=2.5), r"member 0: depth must be an integer; got 2.5"),
        (dict(method="sgd"), r"method must be one of flow, gd, reduced.*got 'sgd'"),
        (dict(data="toy", d_A=3), r"toy data has d_A = d_B = d_out = 1"),
        (dict(depht=2), r"unknown sweep axis 'depht'; the axes are: data, rho"),
    ],
)
def test_bad_members_get_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        sweeps.product(**kw).members()
    assert "\n" not in str(e.value)


def test_chunks_fit_the_group_without_padding_waste():
    assert chunks(12, 64) == [(0, 12, 12)]
    assert chunks(100, 64) == [(0, 50, 50), (50, 100, 50)]
    assert chunks(7, 3) == [(0, 3, 3), (3, 6, 3), (6, 7, 3)]
    assert chunks(5, 64, multiple=4) == [(0, 5, 8)]


# ---- theory columns ---------------------------------------------------------------------------
def test_theory_columns_equal_the_theory_functions():
    """Toy members at every fusion depth of L = 4 against `time_ratio_toy_network`; random
    covariances against `time_ratio_deep` (measured agreement: round-off)."""
    from multimodal_dln.sweeps._theory import theory_columns

    rho, ratio, u0 = np.array([-0.5, 0.0, 0.5]), np.array([2.0, 3.0, 1.5]), np.full(3, 0.05)
    stats = jax.vmap(mdln.Statistics.toy)(rho, ratio)
    for lf in (1, 2, 3, 4):
        cols = theory_columns(dict(depth=4, fusion_layer=lf), stats, u0)
        want = theory.time_ratio_toy_network(4, lf, rho, ratio, u0)
        np.testing.assert_allclose(cols["theory_time_ratio"], want, rtol=1e-12)
        mis = theory.misattribution_toy_network(4, lf, rho, ratio)
        np.testing.assert_allclose(cols["theory_misattribution"], mis, rtol=1e-12)
    keys = jax.random.split(jax.random.key(0), 4)
    rnd = jax.vmap(lambda k: mdln.Statistics.random(k, 3, 2))(keys)
    cols = theory_columns(dict(depth=3, fusion_layer=2), rnd, np.full(4, 0.05))
    want = np.asarray(theory.time_ratio_deep(rnd, 3, 2, 0.05))
    first_A = np.asarray(theory.learned_first(rnd)) == 0
    np.testing.assert_allclose(cols["theory_time_ratio"], np.where(first_A, want, np.nan))


# ---- runs -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_frame():
    sweep = sweeps.product(**TOY, rho=[0.0, 0.5], ratio=[2.0, 3.0], seed=range(2))
    return sweep, sweeps.run(sweep, chunk_size=8, progress=False)


def test_two_layer_toy_sweep_matches_theory(toy_frame):
    """Late fusion at u0 = 1e-12: t_B / t_A within 1 % of 1 + (r^2 - 1)/(1 - rho^2) (measured
    <= 0.6 %); misattribution within 0.01 of rho / r."""
    _, df = toy_frame
    assert len(df) == 8 and df["success"].all(), df[["status", "reason"]]
    np.testing.assert_allclose(df["time_ratio"], df["theory_time_ratio"], rtol=1e-2)
    np.testing.assert_allclose(df["misattribution"], df["theory_misattribution"], atol=1e-2)
    assert (df["num_steps"] > 0).all() and (df["t_end"] > df["t_B"]).all()
    assert str(df["depth"].dtype) == "Int64" and df["lr"].isna().all()


def test_results_do_not_depend_on_chunking(toy_frame):
    """Chunks of 3 (one padded) against one chunk of 8: equal to round-off."""
    sweep, df = toy_frame
    other = sweeps.run(sweep, chunk_size=3, progress=False)
    key = ["rho", "ratio", "seed"]
    a, b = df.sort_values(key).reset_index(drop=True), other.sort_values(key).reset_index(drop=True)
    np.testing.assert_allclose(a["time_ratio"], b["time_ratio"], rtol=1e-9)
    np.testing.assert_allclose(a["t_A"], b["t_A"], rtol=1e-9)


def test_unconverged_members_are_flagged_with_empty_phase_columns():
    sweep = sweeps.product(**TOY, rho=0.0, t_max=[5.0, 1e4])
    df = sweeps.run(sweep, progress=False)
    short = df[df["t_max"] == 5.0].iloc[0]
    assert short["status"] == "NOT_CONVERGED" and not short["success"]
    assert math.isnan(short["t_A"]) and math.isnan(short["time_ratio"])
    assert "t_max" in short["reason"] or "horizon" in short["reason"]
    assert df[df["t_max"] == 1e4].iloc[0]["success"]


def test_gd_member_result_does_not_depend_on_the_grid():
    """A GD member's step budget is its own: alone or inside a larger grid, the same result."""
    one = sweeps.product(**TOY, method="gd", rho=0.5, init_scale=1e-6)
    grid = sweeps.product(**TOY, method="gd", rho=[0.5, -0.5], ratio=[2.0, 4.0], init_scale=1e-6)
    a = sweeps.run(one, progress=False).iloc[0]
    df = sweeps.run(grid, progress=False)
    b = df[(df["rho"] == 0.5) & (df["ratio"] == 2.0)].iloc[0]
    assert a["success"] and a["num_steps"] == b["num_steps"]
    assert a["time_ratio"] == pytest.approx(b["time_ratio"], rel=1e-9)


def test_random_covariance_sweep_with_reduced_prediction():
    """Aligned three-layer networks (L_f = 2) on random covariances against the reduced
    dynamics (docs/theory.md §3; the engine's 1e-4 agreement at aligned init)."""
    sweep = sweeps.product(data="random", d_A=3, d_B=2, draw=range(3), depth=3, fusion_layer=2,
                           width=8, init="aligned", init_scale=0.05)  # fmt: skip
    df = sweeps.run(sweep, reduced=True, progress=False)
    ok = df[df["success"]]
    assert len(ok) >= 2
    np.testing.assert_allclose(ok["time_ratio"], ok["reduced_time_ratio"], rtol=1e-3)


def test_resume_completes_a_grown_sweep_and_load_reads_it(tmp_path, toy_frame):
    """Three members first, then the other five (chunks of 3, one padded): every solve has the
    batch size of test_results_do_not_depend_on_chunking, so no new compile."""
    sweep, full = toy_frame
    half = sweeps.product(**TOY, ratio=2.0) * sweeps.zipped(rho=[0.0, 0.0, 0.5], seed=[0, 1, 0])
    first = sweeps.run(half, tmp_path, progress=False)
    assert len(first) == 3
    with pytest.raises(sweeps.SweepError, match="already holds a sweep"):
        sweeps.run(sweep, tmp_path, progress=False)
    seen = []
    both = sweeps.run(
        sweep, tmp_path, resume=True, chunk_size=3, progress=False, on_chunk=seen.append
    )
    assert len(both) == 8 and sum(map(len, seen)) == 5  # only the new members were solved
    back = sweeps.load(tmp_path)
    key = ["rho", "ratio", "seed"]
    a = back.sort_values(key).reset_index(drop=True)
    b = full.sort_values(key).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a["time_ratio"], b["time_ratio"], rtol=1e-9)
    assert (a["status"] == b["status"]).all() and (a["depth"] == 2).all()


def test_docs_list_every_axis_and_column():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "sweeps.md").read_text()
    for name in sweeps.COLUMNS:
        assert f"`{name}`" in text, name


# ---- presentation (experiments.sweep_report) ---------------------------------------------------
def _fake_frame():
    from multimodal_dln.sweeps._frame import to_frame

    rows = []
    members = sweeps.product(rho=[0.0, 0.5], fusion_layer=[1, 2], seed=range(2)).members()
    for i, m in enumerate(members):
        th = 1.0 if m["fusion_layer"] == 1 else 4.0 / (1 - m["rho"] ** 2)
        ok = i != 3
        rows.append(m | dict.fromkeys(sweeps.COLUMNS[len(sweeps.AXIS_NAMES):], math.nan) | {
            "time_ratio": th * (1.01 if ok else 0.3), "success": ok,
            "status": "OK" if ok else "DIVERGED", "reason": "ok" if ok else "lower lr",
            "num_steps": 10, "theory_time_ratio": th,
        })  # fmt: skip
    return to_frame([], rows, sweeps.COLUMNS)


def test_summary_table_and_figure_use_successful_members_only(tmp_path):
    from multimodal_dln.experiments.sweep_report import plot_sweep, summary_table

    df = _fake_frame()
    table = summary_table(df)
    assert list(table.columns[:2]) == ["rho", "fusion_layer"]
    row = table[(table["rho"] == 0.0) & (table["fusion_layer"] == 2)].iloc[0]
    assert row["n"] == 2 and row["n_ok"] == 1  # member 3 failed
    assert row["median_time_ratio"] == pytest.approx(4.04)
    assert row["median_rel_error"] == pytest.approx(0.01)
    fig = plot_sweep(df, path=tmp_path / "tr.png")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "rho" and (tmp_path / "tr.png").stat().st_size > 5000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "L_f = 1" in labels and "theory" in labels and "simulation (median)" in labels
    for h in ax.get_legend().legend_handles:  # every legend entry shows a mark or a line
        assert h.get_marker() not in (None, "None", "") or h.get_linestyle() not in ("None", "")
    assert "failed" in ax.get_title()
    plotted = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_linestyle() == "None"])
    assert not np.any(np.isclose(plotted, 0.3 * 4.0))  # the failed member is not drawn


def test_supplied_statistics_equal_the_toy_members(toy_frame):
    """A user batch of `Statistics` (data="user"), each paired with a seed, runs the same
    members as the toy axes: every row of the toy sweep, to round-off (chunks of 3, the batch
    size of test_results_do_not_depend_on_chunking)."""
    _, df = toy_frame
    toy = df.sort_values(["seed", "rho", "ratio"]).reset_index(drop=True)
    stats = jax.vmap(mdln.Statistics.toy)(toy["rho"].to_numpy(), toy["ratio"].to_numpy())
    sweep = sweeps.zipped(statistics=stats, seed=toy["seed"].tolist()) * sweeps.product(**TOY)
    user = sweeps.run(sweep, chunk_size=3, progress=False)
    assert (user["data"] == "user").all() and user["rho"].isna().all()
    user = user.sort_values("data_index").reset_index(drop=True)
    np.testing.assert_allclose(user["time_ratio"], toy["time_ratio"], rtol=1e-9)
    np.testing.assert_allclose(user["theory_time_ratio"], toy["theory_time_ratio"], rtol=1e-12)


def test_inputs_are_the_members_run_solves(toy_frame):
    """`sweeps.inputs`: one group per structure in sweep order (networks None for the reduced
    dynamics); integrating a group's inputs gives the `run` rows of its members (to round-off);
    `zipped(statistics=..., seed=...)` pairs entry i with seed i."""
    sweep, df = toy_frame
    groups = sweeps.inputs(sweep + sweeps.product(method="reduced", rho=0.5))
    assert [len(g.members) for g in groups] == [8, 1] and groups[1].nets is None
    g = groups[0]
    assert g.members == sweep.members() and list(g.index) == list(range(8))
    assert g.structure["width"] == 100 and g.stats.sigma_xx.shape == (8, 2, 2)
    m = mdln.measure(mdln.gradient_flow(g.nets, g.objective), g.stats)
    row = df.set_index(["rho", "ratio", "seed"])
    want = [row.loc[(x["rho"], x["ratio"], x["seed"]), "time_ratio"] for x in g.members]
    np.testing.assert_allclose(np.asarray(m.time_ratio), want, rtol=1e-9)
    stats = jax.vmap(mdln.Statistics.toy)(np.array([0.0, 0.5]), np.array([2.0, 3.0]))
    z = sweeps.zipped(statistics=stats, seed=[5, 7])
    assert [(x["data_index"], x["seed"]) for x in z.members()] == [(0, 5), (1, 7)]
    with pytest.raises(ValueError, match="equal lengths; got statistics: 2, seed: 3"):
        sweeps.zipped(statistics=stats, seed=[1, 2, 3])
