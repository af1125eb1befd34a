"""The `mdln` command line, run in-process through `main([...])`.

Simulations use depth 2, L_f 2, width 8, random init and 4 seeds: the same batched shapes as the
sweep tests (chunks of 4), so the solver compiles once per session.
"""

import json
import math
import re
import subprocess
import sys

import pytest
from helpers import CLI_BASE as BASE, simulate_json as _simulate_json

from multimodal_dln import sweeps, theory
from multimodal_dln.cli import main

MEMBER_KEYS = {
    "seed",
    "t_A",
    "t_B",
    "time_ratio",
    "misattribution",
    "final_loss",
    "success",
    "status",
    "reason",
    "t_end",
    "num_steps",
}
PHASE_KEYS = ("t_A", "t_B", "time_ratio", "misattribution", "plateau_loss")
SUMMARY_KEYS = {
    "time_ratio_median",
    "time_ratio_theory",
    "misattribution_median",
    "misattribution_theory",
    "n_success",
}


def _table_rows(out):
    """The per-seed lines of the simulate table, split into whitespace tokens."""
    return [line.split() for line in out.splitlines() if re.match(r"^\s*\d+\s", line)]


def test_simulate_json(capsys):
    doc = _simulate_json(capsys, "--rho", "0.5", "--ratio", "2")
    assert set(doc) == {"config", "members", "summary"}
    assert doc["config"]["fusion_layer"] == 2 and doc["config"]["method"] == "flow"
    assert [m["seed"] for m in doc["members"]] == [0, 1, 2, 3]
    for m in doc["members"]:
        assert MEMBER_KEYS <= set(m)
        assert m["success"] is True and m["status"] == "OK" and m["reason"] == "ok"
        assert m["t_B"] > m["t_A"] > 0
    s = doc["summary"]
    assert SUMMARY_KEYS <= set(s)
    assert s["n_success"] == 4
    assert s["time_ratio_theory"] == pytest.approx(5.0)
    assert s["time_ratio_median"] == pytest.approx(5.0, rel=0.015)  # +0.72 % measured
    assert s["misattribution_theory"] == pytest.approx(0.25)
    assert s["misattribution_median"] == pytest.approx(0.25, rel=0.01)  # -0.27 % measured


def test_simulate_json_nan_becomes_null(capsys):
    # ratio < 1: no theory here, and modality A is learned second, so its crossing is not
    # measured: every member fails (NO_CROSSING), its NaN phase values print as null
    doc = _simulate_json(capsys, "--rho", "0.5", "--ratio", "0.5")
    assert doc["summary"]["time_ratio_theory"] is None
    assert doc["summary"]["misattribution_theory"] is None
    assert doc["summary"]["time_ratio_median"] is None
    for m in doc["members"]:
        assert m["success"] is False and m["status"] != "OK"
        assert all(m[k] is None for k in PHASE_KEYS), m
        assert isinstance(m["final_loss"], float) and math.isfinite(m["final_loss"])


def test_simulate_table(capsys):
    rc = main(["simulate", *BASE, "--rho", "-0.5", "--ratio", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "t_B/t_A" in out and "theory" in out and "misattr." in out
    rows = [line for line in out.splitlines() if line.strip().split(" ")[0] in {"0", "1", "2", "3"}]
    assert len(rows) == 4 and all(line.rstrip().endswith("ok") for line in rows)
    assert "t_B/t_A = 5" in out  # theory line: 1 + 3 / 0.75


def test_simulate_gd_matches_flow(capsys):
    flow = _simulate_json(capsys, "--rho", "0.5", "--ratio", "2")
    gd = _simulate_json(capsys, "--rho", "0.5", "--ratio", "2", "--method", "gd", "--lr", "0.005")
    assert gd["config"]["lr"] == 0.005 and gd["summary"]["n_success"] == 4
    # times are reported in gradient-flow units (steps x lr), so GD ~ GF for a small lr
    # (measured: t_A +1.2 % for every seed, t_B within 1e-4)
    for f, g in zip(flow["members"], gd["members"], strict=True):
        assert g["t_A"] == pytest.approx(f["t_A"], rel=0.02)
        assert g["t_B"] == pytest.approx(f["t_B"], rel=1e-3)


@pytest.mark.parametrize(
    "args, name",
    [
        (["--rho", "1.5"], "--rho"),
        (["--rho", "-1"], "--rho"),
        (["--rho", "abc"], "--rho"),
        (["--ratio", "0"], "--ratio"),
        (["--fusion-layer", "3"], "--fusion-layer"),
        (["--fusion-layer", "0"], "--fusion-layer"),
        (["--init-scale", "-1e-3"], "--init-scale"),
        (["--seeds", "0"], "--seeds"),
        (["--width", "0"], "--width"),
        (["--depth", "0"], "--depth"),
        (["--init", "orthogonal"], "--init"),
        (["--method", "sgd"], "--method"),
        (["--method", "gd", "--lr", "0"], "--lr"),
        (["--noise", "-1"], "--noise"),
        (["--t-max", "0"], "--t-max"),
        (["--t-max", "-1"], "--t-max"),
        (["--t-max", "inf"], "--t-max"),
        (["--t-max", "nan"], "--t-max"),
        (["--t-max", "abc"], "--t-max"),
    ],
)
def test_simulate_bad_input_exits_2(capsys, args, name):
    rc = main(["simulate", "--width", "8", *args, "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and name in err and "error" in err


@pytest.mark.parametrize("command", [[], ["simulate"], ["sweep"], ["run"]])
def test_help(capsys, command):
    rc = main([*command, "--help"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("usage: mdln")
    assert "examples:" in out
    if command:
        assert "default" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: mdln" in capsys.readouterr().err


def _sweep_args(out, *extra):
    return ["sweep", "--rho", "-0.5,0.5", "--width", "8", "--seeds", "2", "--init-scale",
            "1e-12", "--out", str(out), "--no-progress", *extra]  # fmt: skip


def test_sweep_command_resume_and_new_axes(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(_sweep_args(out)) == 0
    text = capsys.readouterr().out
    assert "4 member(s)" in text and "4 succeeded" in text and "theory_time_ratio" in text
    df = sweeps.load(out)
    assert sorted(df["rho"].unique()) == [-0.5, 0.5] and len(df) == 4
    assert (out / "time_ratio.png").exists()
    # extend with START:STOP:NUM and --resume: only the new correlations run (2 x 2 seeds: the
    # same batch of 4 as every other solve here, so nothing recompiles)
    assert main([*_sweep_args(out)[:2], "-0.5:0.5:4", *_sweep_args(out)[3:], "--resume"]) == 0
    assert "8 member(s)" in capsys.readouterr().out
    df = sweeps.load(out)
    assert len(df) == 8
    assert sorted(df["rho"].unique()) == pytest.approx([-0.5, -1 / 6, 1 / 6, 0.5], abs=1e-12)
    # another init is another axis value (a column): resuming adds those members, mixes nothing
    assert main([*_sweep_args(out), "--resume", "--init", "entrywise"]) == 0
    df = sweeps.load(out)
    assert len(df) == 12 and sorted(df["init"].unique()) == ["entrywise", "random"]
    # an existing folder without --resume / --overwrite: refused, nothing touched
    assert main(_sweep_args(out)) == 2
    assert "--resume" in capsys.readouterr().err and len(sweeps.load(out)) == 12


def test_sweep_bad_input(tmp_path, capsys):
    rc = main(["sweep", "--depth", "2", "--fusion-layer", "1,3", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--fusion-layer" in err and "1..depth = 2; got 3" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_run_quick(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["run", "--quick", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "median |sim/th-1|" in text and "trajectory (r = 2, rho = 0.5)" in text
    for name in (
        "results.csv",
        "config.json",
        "summary.json",
        "time_ratio.png",
        "misattribution.png",
        "trajectory.png",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    per_ratio = {e["ratio"]: e for e in summary["run"]["per_ratio"]}
    assert per_ratio[2.0]["median_abs_rel_error"] < 0.025  # 1.8 % measured
    # the quick grid has no rho = 0.5: the trajectory's own measurement (5.09 measured)
    traj = summary["run"]["trajectory"]
    assert traj["success"] and traj["time_ratio"] == pytest.approx(5.0, rel=0.025)
    # a second run into the same folder is refused; --overwrite keeps the old files aside
    assert main(["run", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", "--quick", "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert len(sweeps.load(out)) == 15
    assert len(list(out.glob("replaced-*/results.csv"))) == 1


def test_python_dash_m_help():
    proc = subprocess.run(
        [sys.executable, "-m", "multimodal_dln", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "usage: mdln" in proc.stdout and "simulate" in proc.stdout


# --------------------------------------------------------------------------------------------
# Trustworthy results: each observed case of the issue, with the new behaviour
# --------------------------------------------------------------------------------------------
def test_gd_divergence_is_flagged_not_measured(capsys):
    """Observed: `--method gd --lr 5` exited 0 showing t_B/t_A 1.099 and misattribution
    -1.47e26. Now: DIVERGED with the lr remedy, empty phase columns, nulls in --json, and a
    final stderr warning; the exit status stays 0."""
    err = []
    doc = _simulate_json(capsys, "--method", "gd", "--lr", "5", err=err)
    for m in doc["members"]:
        assert m["status"] == "DIVERGED" and m["success"] is False and "lower lr" in m["reason"]
        assert all(m[k] is None for k in PHASE_KEYS), m
    assert doc["summary"]["time_ratio_median"] is None and doc["summary"]["n_success"] == 0
    last = err[0].strip().splitlines()[-1]
    assert last.startswith("warning: 4 of 4 members failed: DIVERGED") and "lower lr" in last
    assert main(["simulate", *BASE, "--method", "gd", "--lr", "5"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert len(rows) == 4
    for tok in rows:
        assert tok[1:6] == ["-"] * 5 and tok[7] == "DIVERGED", tok  # t_A .. plateau empty


def test_gd_large_lr_reason_names_the_gd_remedy(capsys):
    """Observed: `--lr 100` said "did not converge before t_max (raise t_max)" though no such
    flag existed; the reason now names what to change for gradient descent."""
    doc = _simulate_json(capsys, "--method", "gd", "--lr", "100")
    for m in doc["members"]:
        assert m["status"] == "DIVERGED" and m["time_ratio"] is None
        assert "lower lr" in m["reason"] and "t_max" not in m["reason"]


def test_depth_one_has_no_theory(capsys):
    """Observed: depth 1 compared a measured 3.988 with "theory 1 (+298.80 %)"."""
    assert main(["simulate", "--depth", "1", "--width", "8", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    theory_lines = [line for line in out.splitlines() if line.startswith("theory")]
    assert theory_lines == [
        "theory: none for depth 1 (a one-layer network converges linearly; no unimodal phase)"
    ]
    assert "%" not in out


def test_intermediate_fusion_prints_the_deep_theory(capsys):
    """Observed: 1 < L_f < L printed "n/a (no theory)"; now the leading-order deep formula."""
    args = [
        "--depth",
        "4",
        "--fusion-layer",
        "3",
        "--init",
        "aligned",
        "--init-scale",
        "0.1",
        "--width",
        "8",
        "--seeds",
        "2",
        "--rho",
        "0.5",
        "--ratio",
        "2",
    ]
    assert main(["simulate", *args]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("theory ("))
    assert "leading-order deep formula" in line and "u0 -> 0" in out
    printed = float(re.search(r"t_B/t_A = ([0-9.eE+-]+)", line).group(1))
    expected = float(theory.time_ratio_deep_toy(4, 3, 0.5, 2.0, 0.1))
    assert f"{printed:.4g}" == f"{expected:.4g}"
    assert "sim/theory - 1" in line  # the seeds succeed and are compared


def test_t_max_is_honoured(capsys):
    """`--t-max`: a horizon far too short gives NOT_CONVERGED members with empty phase
    columns (flow: t_end = T; gd: n_steps = ceil(T / lr))."""
    err = []
    doc = _simulate_json(capsys, "--rho", "0.5", "--ratio", "2", "--t-max", "1e-3", err=err)
    assert doc["config"]["t_max"] == 1e-3
    for m in doc["members"]:
        assert m["status"] == "NOT_CONVERGED" and "t_max" in m["reason"]
        assert all(m[k] is None for k in PHASE_KEYS) and m["t_end"] == pytest.approx(1e-3)
    assert "warning: 4 of 4 members failed: NOT_CONVERGED" in err[0]
    gd = _simulate_json(
        capsys, "--rho", "0.5", "--ratio", "2", "--method", "gd", "--lr", "0.005", "--t-max", "0.1"
    )
    for m in gd["members"]:
        assert m["status"] == "NOT_CONVERGED" and "n_steps" in m["reason"]
        assert m["num_steps"] == 20 and m["time_ratio"] is None
    assert main(["simulate", *BASE, "--t-max", "1e-3"]) == 0
    for tok in _table_rows(capsys.readouterr().out):
        assert tok[1:6] == ["-"] * 5 and tok[7] == "NOT_CONVERGED", tok


def test_rho_near_one_is_not_reported_ok(capsys):
    """Observed: `--rho 0.99999999 --ratio 2` printed status ok with a ratio near 1."""
    doc = _simulate_json(capsys, "--rho", "0.99999999", "--ratio", "2")
    for m in doc["members"]:
        assert m["status"] != "OK" and m["success"] is False and m["time_ratio"] is None
    assert doc["summary"]["n_success"] == 0 and doc["summary"]["time_ratio_median"] is None


def test_sweep_t_max_rows_flagged(tmp_path, capsys):
    out = tmp_path / "short"
    assert main([*_sweep_args(out), "--t-max", "1e-3"]) == 0
    captured = capsys.readouterr()
    assert "0 succeeded" in captured.out
    assert "warning: 4 of 4 members failed (NOT_CONVERGED 4)" in captured.err
    df = sweeps.load(out)
    assert (df["status"] == "NOT_CONVERGED").all()
    assert df[list(sweeps.PHASE_COLUMNS)].isna().all().all()


def test_run_table_counts_successful_members_only(capsys):
    """`mdln run`: the error columns use successful members only; failures are named with
    their reasons (stderr), and a failed trajectory shows its status, not NaN times."""
    from multimodal_dln.cli._common import warn_failures
    from multimodal_dln.experiments.run import run_table, trajectory_line
    from multimodal_dln.experiments.summary import failure_line

    ok = {
        "ratio": 2.0,
        "rho": 0.0,
        "success": True,
        "status": "OK",
        "reason": "ok",
        "rel_error": 0.01,
        "theory_time_ratio": 4.0,
        "misattribution": 0.0,
    }
    bad = dict(
        ok,
        success=False,
        status="NOT_CONVERGED",
        reason="raise t_max",
        rel_error=math.nan,
        misattribution=math.nan,
    )
    lines, table = run_table([ok, bad, dict(bad)], [2.0])
    assert table[0]["n"] == 3 and table[0]["n_success"] == 1
    assert table[0]["median_abs_rel_error"] == pytest.approx(0.01)
    assert lines[-1].split()[:3] == ["2", "3", "1"]
    warn_failures(failure_line([ok, bad, dict(bad)], "runs"))
    assert capsys.readouterr().err.strip() == (
        "warning: 2 of 3 runs failed: NOT_CONVERGED (2): raise t_max"
    )
    line = trajectory_line(dict(bad, t_A=math.nan))
    assert "NOT_CONVERGED: raise t_max" in line and "nan" not in line


@pytest.mark.parametrize("argv", [["reproduce", "digits", "--quick"], ["greedy", "digits"]])
def test_missing_optional_package_names_the_extra(argv, tmp_path, monkeypatch, capsys):
    """Without scikit-learn (the base install) the digits commands fail with one line naming
    the extra to install, not a traceback."""
    # import sklearn -> ModuleNotFoundError; the submodule too, since a test that ran earlier in
    # this process may have imported it (Python then finds it without importing the parent).
    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "scikit-learn" in err and "pip install -e '.[repro]'" in err, err
