"""Reproduce entries greedy-* and the `mdln greedy` subcommand (greedy_experiments)."""

import argparse
import json

import numpy as np
import pytest

from multimodal_dln import greedy_experiments as ge


def _parser():
    p = argparse.ArgumentParser(prog="mdln")
    sub = p.add_subparsers(dest="command")
    ge.add_cli(sub)
    return p


def test_cli_registers_the_greedy_subcommand():
    p = _parser()
    args = p.parse_args(["greedy", "toy", "--quick", "--out", "x"])
    assert args.func is ge.cmd_greedy and args.experiment == "toy" and args.quick
    with pytest.raises(SystemExit):
        p.parse_args(["greedy", "nonsense"])
    assert set(ge.REPRODUCE) == {"greedy-toy", "greedy-ode", "greedy-deep", "greedy-digits"}


@pytest.mark.slow
def test_quick_toy_entry_writes_table_json_and_figures(tmp_path, capsys):
    args = _parser().parse_args(["greedy", "toy", "--quick", "--json", "--out", str(tmp_path)])
    assert ge.cmd_greedy(args) == 0
    out = json.loads(capsys.readouterr().out)
    res = out["greedy-toy"]
    rows = {(r["rho"], r["Q"]): r for r in res["rows"]}
    # same first-crossing steps as the digest's table (2000 steps suffice for rho >= 0)
    for key in ((0.5, None), (0.5, 1), (0.0, None), (0.0, 5)):
        assert rows[key]["t_A_steps"] == pytest.approx(ge.DIGEST_TOY[key][0], rel=0.02)
        assert rows[key]["t_A"] == pytest.approx(rows[key]["t_A_steps"] * 0.04)
    for name in (
        "greedy_toy.csv",
        "greedy_toy.json",
        "greedy_toy_dutil.png",
        "greedy_toy_dspeed.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_digits_views_are_two_standardised_noisy_halves():
    tr, te = ge.digits_views(0, noise_A=0.1, noise_B=0.5, n_train=1000)
    assert tr.x_A.shape == (1000, 32) and tr.x_B.shape == (1000, 32) and tr.y.shape == (1000, 10)
    assert te.x_A.shape == (797, 32)
    np.testing.assert_allclose(np.asarray(tr.x_A).mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(tr.x_B).std(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(tr.y).sum(1), 1.0)


@pytest.mark.slow
def test_quick_digits_entry(tmp_path):
    res = ge.reproduce_digits(tmp_path, quick=True)
    assert set(res["summary"]) == {"vanilla", "balanced", "random"}
    for alg, s in res["summary"].items():
        assert 0.1 < s["test_accuracy"]["mean"] <= 1.0, alg
        assert np.isfinite(s["d_util"]["mean"])
    assert (tmp_path / "greedy_digits.png").stat().st_size > 0
