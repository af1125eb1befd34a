"""Sweeps: incremental CSV, interruption and resume, settings checks, chunk-independence, outputs.

All sweeps here use depth 2, L_f 2, width 8, random init and chunks of 4 members (the shapes
the CLI and figure tests use too), so the batched solver is compiled once per session.
"""

import csv
import json
import math
import warnings

import pytest
from helpers import CHUNK, DEPTH, GRID, SWEEP_KW as COMMON, U0, WIDTH, csv_dicts, same_row

from multimodal_dln import theory
from multimodal_dln.experiments.store import (
    CSV_COLUMNS,
    LEGACY_CSV_COLUMNS,
    read_results,
    row_key,
)
from multimodal_dln.experiments.summary import summarize
from multimodal_dln.experiments.toy import (
    PHASE_COLUMNS,
    DivergenceWarning,
    MemberConfig,
    simulate_toy,
)
from multimodal_dln.experiments.toy_sweep import run_sweep


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep_done")
    res = run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, **COMMON)
    return out, res


def test_finished_sweep_outputs(finished):
    out, res = finished
    rows = read_results(out)
    assert len(rows) == 6 == len(res.rows) == res.n_run
    assert list(csv_dicts(out / "results.csv")[0]) == list(CSV_COLUMNS)
    assert all(r["success"] for r in rows)
    for r in rows:
        assert r["status"] == "OK" and r["reason"] == "ok"
        assert r["t_end"] > r["t_B"] > r["t_A"] > 0 and r["num_steps"] > 0
        assert r["theory_time_ratio"] == pytest.approx(
            theory.time_ratio_toy_network(2, 2, r["rho"], r["ratio"])
        )
        # leading-order theory, width 8, u0 = 1e-12: |rel_error| <= 1.9 % measured
        assert abs(r["rel_error"]) < 0.03
        assert math.isnan(r["lr"])  # flow: no learning rate
    assert (out / "time_ratio.png").stat().st_size > 1000
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["settings"]["width"] == WIDTH and cfg["grid"]["rho"] == GRID["rho"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_members"] == 6 and summary["n_success"] == 6 and summary["failures"] == []
    assert cfg["settings"]["t_max"] is None
    assert summary["by_ratio"][0]["median_abs_rel_error"] < 0.02  # 1.1 % measured


def test_interrupted_sweep_keeps_finished_chunks_and_resumes(tmp_path):
    on_disk = []

    def stop_after_first(rows):
        on_disk.append(len(csv_dicts(tmp_path / "results.csv")))  # written before the callback
        raise _Stop

    with pytest.raises(_Stop):
        run_sweep(
            GRID, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, on_chunk=stop_after_first, **COMMON
        )
    assert on_disk == [CHUNK]
    first = read_results(tmp_path)
    assert len(first) == CHUNK

    # Resume with an extended grid (one more ratio): only missing members run, nothing twice.
    grid = dict(GRID, ratio=[2.0, 3.0])
    res = run_sweep(grid, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, resume=True, **COMMON)
    assert res.n_skipped == CHUNK and res.n_run == 12 - CHUNK
    rows = read_results(tmp_path)
    keys = [row_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 12
    expected = {
        (2, rho, ratio, U0, s) for rho in GRID["rho"] for ratio in (2.0, 3.0) for s in (0, 1)
    }
    assert set(keys) == expected
    assert all(
        same_row(a, b) for a, b in zip(rows[:CHUNK], first, strict=True)
    )  # earlier rows untouched

    # Resuming a complete sweep runs nothing.
    again = run_sweep(grid, seeds=2, out_dir=tmp_path, chunk_size=CHUNK, resume=True, **COMMON)
    assert again.n_run == 0 and len(read_results(tmp_path)) == 12


def test_resume_drops_truncated_line(tmp_path):
    res = run_sweep(
        dict(GRID, rho=[0.5]), seeds=1, out_dir=tmp_path, chunk_size=CHUNK, figure=False, **COMMON
    )
    path = tmp_path / "results.csv"
    with open(path, "a") as fh:
        fh.write("2,2,8,random,flow,nan,0.0,2.0")  # a crash mid-write
    assert len(read_results(path)) == 1
    with pytest.raises(ValueError, match="line 3"):
        read_results(path, strict=True)
    res = run_sweep(
        dict(GRID, rho=[0.5, 0.0]),
        seeds=1,
        out_dir=tmp_path,
        chunk_size=CHUNK,
        resume=True,
        figure=False,
        **COMMON,
    )
    assert res.n_run == 1
    assert len(read_results(path, strict=True)) == 2


@pytest.mark.parametrize(
    "change, word",
    [
        ({"width": 16}, "width"),
        ({"init": "entrywise"}, "init"),
        ({"method": "gd"}, "method"),
        ({"depth": 3}, "depth"),
    ],
)
def test_resume_with_different_settings_is_refused(finished, change, word):
    out, _ = finished
    kwargs = dict(COMMON, **change)
    with pytest.raises(ValueError, match=f"cannot resume.*{word}"):
        run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, resume=True, **kwargs)
    assert len(read_results(out)) == 6  # untouched


def test_existing_sweep_needs_resume(finished):
    out, _ = finished
    with pytest.raises(ValueError, match="resume"):
        run_sweep(GRID, seeds=2, out_dir=out, chunk_size=CHUNK, **COMMON)


def test_same_seed_same_result_whatever_the_chunking(finished, tmp_path):
    _, res4 = finished
    # chunk size 3, and a different grid order: members land at other positions and in other chunks
    grid = dict(GRID, rho=[0.5, 0.0, -0.5])
    res3 = run_sweep(grid, seeds=[1, 0], out_dir=tmp_path, chunk_size=3, figure=False, **COMMON)
    by_key = {row_key(r): r for r in res4.rows}
    assert len(res3.rows) == 6
    for r in res3.rows:
        assert same_row(r, by_key[row_key(r)])  # bit for bit
    # and a single member solved on its own (padded to a chunk) agrees too
    one = simulate_toy([MemberConfig(2, 0.5, 2.0, U0, 1)], depth=DEPTH, width=WIDTH, pad_to=CHUNK)
    ref = by_key[(2, 0.5, 2.0, U0, 1)]
    assert same_row({k: one.rows[0][k] for k in CSV_COLUMNS}, ref)


@pytest.mark.parametrize(
    "grid_change, kwargs, word",
    [
        ({"fusion_layer": [3]}, {}, "fusion_layer"),
        ({"fusion_layer": [0]}, {}, "fusion_layer"),
        ({"rho": [1.0]}, {}, "rho"),
        ({"rho": [-1.2]}, {}, "rho"),
        ({"ratio": [0.0]}, {}, "ratio"),
        ({"ratio": [-2.0]}, {}, "ratio"),
        ({"init_scale": [0.0]}, {}, "init_scale"),
        ({"rho": []}, {}, "rho"),
        ({}, {"seeds": 0}, "seeds"),
        ({}, {"width": 0}, "width"),
        ({}, {"depth": 0}, "depth"),
        ({}, {"init": "orthogonal"}, "init"),
        ({}, {"method": "adam"}, "method"),
        ({}, {"method": "gd", "lr": 0.0}, "lr"),
        ({}, {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_inputs_name_the_parameter(tmp_path, grid_change, kwargs, word):
    args = dict(COMMON, seeds=1, chunk_size=CHUNK)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        run_sweep(dict(GRID, **grid_change), out_dir=tmp_path, **args)
    assert not (tmp_path / "results.csv").exists()


def test_grid_keys_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown key"):
        run_sweep(dict(GRID, beta=[1]), seeds=1, out_dir=tmp_path, **COMMON)
    with pytest.raises(ValueError, match="missing key.*init_scale"):
        run_sweep(
            {k: v for k, v in GRID.items() if k != "init_scale"},
            seeds=1,
            out_dir=tmp_path,
            **COMMON,
        )


def test_gd_sweep(tmp_path):
    res = run_sweep(
        GRID,
        seeds=1,
        out_dir=tmp_path,
        chunk_size=CHUNK,
        method="gd",
        lr=0.005,
        figure=False,
        **COMMON,
    )
    assert len(res.rows) == 3
    for r in res.rows:
        assert r["method"] == "gd" and r["lr"] == 0.005 and r["success"]
        # times in gradient-flow units (steps x lr): |rel_error| <= 1.4 % measured
        assert abs(r["rel_error"]) < 0.025
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["settings"]["lr"] == 0.005
    with pytest.raises(ValueError, match="cannot resume.*lr"):
        run_sweep(GRID, seeds=1, out_dir=tmp_path, method="gd", lr=0.01, resume=True, **COMMON)


def test_t_max_failed_rows_have_empty_phase_cells(tmp_path):
    """A horizon far too short: every member NOT_CONVERGED with the t_max remedy; its phase
    cells are empty in results.csv (NaN when read), it is excluded from the summary, and
    t_max is a setting (resuming with another is refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the all-failed figure draws without warnings
        res = run_sweep(GRID, seeds=1, out_dir=tmp_path, chunk_size=CHUNK, t_max=1e-3, **COMMON)
    raw = csv_dicts(tmp_path / "results.csv")
    assert len(raw) == 3
    for r in raw:
        assert r["status"] == "NOT_CONVERGED" and "t_max" in r["reason"] and r["success"] == "False"
        assert all(r[c] == "" for c in PHASE_COLUMNS), r
        assert float(r["t_end"]) == pytest.approx(1e-3) and int(r["num_steps"]) > 0
    for r in read_results(tmp_path, strict=True):
        assert all(math.isnan(r[c]) for c in PHASE_COLUMNS)
    s = res.summary
    assert s["n_success"] == 0 and s["failures"][0]["status"] == "NOT_CONVERGED"
    assert s["failures"][0]["count"] == 3
    assert all(math.isnan(p["time_ratio_median"]) for p in s["points"])
    assert json.loads((tmp_path / "config.json").read_text())["settings"]["t_max"] == 1e-3
    with pytest.raises(ValueError, match="cannot resume.*t_max"):
        run_sweep(
            GRID, seeds=1, out_dir=tmp_path, chunk_size=CHUNK, t_max=1.0, resume=True, **COMMON
        )
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="t_max"):
            run_sweep(GRID, seeds=1, out_dir=tmp_path / "bad", t_max=bad, **COMMON)


def test_summary_medians_exclude_failed_rows():
    good = {
        "fusion_layer": 2,
        "depth": 2,
        "rho": 0.0,
        "ratio": 2.0,
        "init_scale": U0,
        "seed": 0,
        "time_ratio": 4.0,
        "misattribution": 0.0,
        "rel_error": 0.0,
        "success": True,
        "status": "OK",
        "reason": "ok",
    }
    bad = dict(
        good,
        seed=1,
        time_ratio=1.099,
        misattribution=-1.47e26,
        rel_error=-0.7,
        success=False,
        status="DIVERGED",
        reason="lower lr",
    )
    s = summarize([good, bad])
    p = s["points"][0]
    assert (
        p["time_ratio_median"] == 4.0 and p["misattribution_median"] == 0.0 and p["n_success"] == 1
    )
    assert s["by_ratio"][0]["max_abs_rel_error"] == 0.0
    assert s["failures"] == [{"status": "DIVERGED", "reason": "lower lr", "count": 1}]


def test_resume_of_old_column_set_is_a_clear_error(tmp_path):
    """A results.csv without the status columns: its failed rows cannot be told apart."""
    with open(tmp_path / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LEGACY_CSV_COLUMNS)
        w.writerow(
            [
                2,
                2,
                8,
                "random",
                "gd",
                5.0,
                0.0,
                2.0,
                U0,
                0,
                1.0,
                1.099,
                1.099,
                -1.47e26,
                0.1,
                1e16,
                True,
                4.0,
                -0.72,
            ]
        )
    for call in (
        lambda: run_sweep(GRID, seeds=1, out_dir=tmp_path, resume=True, **COMMON),
        lambda: read_results(tmp_path),
    ):
        with pytest.raises(ValueError, match="older multimodal_dln") as err:
            call()
        assert len(str(err.value).splitlines()) == 1


def test_gd_divergence_warns_once_about_real_members_only(tmp_path):
    """Observed: the padded copies of a chunk were counted as diverged members. Now one
    DivergenceWarning names the real members (by their index in the sweep), never padding."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_sweep(
            GRID,
            seeds=1,
            out_dir=tmp_path,
            chunk_size=CHUNK,
            method="gd",
            lr=5.0,
            figure=False,
            **COMMON,
        )
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and issubclass(caught[0].category, DivergenceWarning), msgs
    assert "3 of 3 sweep member(s)" in msgs[0] and "#2 " in msgs[0] and "#3" not in msgs[0]
    assert all(r["status"] == "DIVERGED" and "lower lr" in r["reason"] for r in res.rows)
    assert all(math.isnan(r[c]) for r in res.rows for c in PHASE_COLUMNS)
    with pytest.warns(DivergenceWarning, match="1 of 1 member") as rec:
        simulate_toy(
            [MemberConfig(2, 0.0, 2.0, U0, 0)],
            depth=DEPTH,
            width=WIDTH,
            method="gd",
            lr=5.0,
            pad_to=CHUNK,
        )
    assert len(rec) == 1
