"""The `mdln` command line, run in-process through `main([...])`.

Simulations use depth 2, L_f 2, width 8, random init and 4 seeds: the same batched shapes as the
sweep tests (chunks of 4), so the solver compiles once per session.
"""

import json
import math
import subprocess
import sys

import pytest

from multimodal_dln.cli import main
from multimodal_dln.sweep import read_results

BASE = ["--depth", "2", "--width", "8", "--init-scale", "1e-12", "--seeds", "4"]
MEMBER_KEYS = {"seed", "t_A", "t_B", "time_ratio", "misattribution", "final_loss", "success"}
SUMMARY_KEYS = {
    "time_ratio_median",
    "time_ratio_theory",
    "misattribution_median",
    "misattribution_theory",
    "n_success",
}


def _no_nan(token):
    raise AssertionError(f"non-standard JSON constant {token}")


def _simulate_json(capsys, *extra):
    rc = main(["simulate", *BASE, *extra, "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    assert len(out.strip().splitlines()) == 1, "stdout must hold exactly one JSON object"
    return json.loads(out, parse_constant=_no_nan)


def test_simulate_json(capsys):
    doc = _simulate_json(capsys, "--rho", "0.5", "--ratio", "2")
    assert set(doc) == {"config", "members", "summary"}
    assert doc["config"]["fusion_layer"] == 2 and doc["config"]["method"] == "flow"
    assert [m["seed"] for m in doc["members"]] == [0, 1, 2, 3]
    for m in doc["members"]:
        assert MEMBER_KEYS <= set(m)
        assert m["success"] is True
        assert m["t_B"] > m["t_A"] > 0
    s = doc["summary"]
    assert SUMMARY_KEYS <= set(s)
    assert s["n_success"] == 4
    assert s["time_ratio_theory"] == pytest.approx(5.0)
    assert s["time_ratio_median"] == pytest.approx(5.0, rel=0.1)
    assert s["misattribution_theory"] == pytest.approx(0.25)
    assert s["misattribution_median"] == pytest.approx(0.25, rel=0.05)


def test_simulate_json_nan_becomes_null(capsys):
    # ratio < 1: no theory here, and modality A is learned second, so t_A may be undefined
    doc = _simulate_json(capsys, "--rho", "0.5", "--ratio", "0.5")
    assert doc["summary"]["time_ratio_theory"] is None
    assert doc["summary"]["misattribution_theory"] is None
    assert all(m["time_ratio"] is None or math.isfinite(m["time_ratio"]) for m in doc["members"])


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
    for f, g in zip(flow["members"], gd["members"], strict=True):
        assert g["t_A"] == pytest.approx(f["t_A"], rel=0.05)
        assert g["t_B"] == pytest.approx(f["t_B"], rel=0.05)


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


def test_sweep_command_and_resume(tmp_path, capsys):
    out = tmp_path / "sw"
    args = [
        "sweep",
        "--fusion-layer",
        "2",
        "--rho",
        "-0.5,0.5",
        "--ratio",
        "2",
        "--width",
        "8",
        "--seeds",
        "2",
        "--init-scale",
        "1e-12",
        "--chunk-size",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "ran 4 member(s)" in text
    rows = read_results(out)
    assert sorted({r["rho"] for r in rows}) == [-0.5, 0.5] and len(rows) == 4
    assert (out / "time_ratio.png").exists() and (out / "summary.json").exists()
    # extend with START:STOP:NUM and --resume: only the new correlation runs
    assert main([*args[:4], "-0.5:0.5:3", *args[5:], "--resume"]) == 0
    assert "ran 2 member(s), skipped 4" in capsys.readouterr().out
    assert len(read_results(out)) == 6
    # different settings: refused, exit 2, the parameter named
    assert main([*args, "--resume", "--init", "entrywise"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "--init" in err
    # existing folder without --resume
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_sweep_bad_input(tmp_path, capsys):
    rc = main(
        [
            "sweep",
            "--depth",
            "2",
            "--fusion-layer",
            "1,3",
            "--out",
            str(tmp_path / "x"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--fusion-layer" in err and "[1, 2]" in err


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
    assert per_ratio[2.0]["median_abs_rel_error"] < 0.1
    # a second run into the same folder starts afresh
    assert main(["run", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert len(read_results(out)) == 15


def test_python_dash_m_help():
    proc = subprocess.run(
        [sys.executable, "-m", "multimodal_dln", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert "usage: mdln" in proc.stdout and "simulate" in proc.stdout
