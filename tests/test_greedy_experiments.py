"""The Wu et al. 2022 experiments (`experiments.wu2022`, entries greedy-*) and ``mdln greedy``."""

import argparse
import json

import numpy as np
import pytest

from multimodal_dln._constants import AUTHORS_LR
from multimodal_dln.cli import greedy as cli_greedy
from multimodal_dln.experiments import wu2022
from multimodal_dln.experiments.wu2022 import WU2022_REFERENCE_TOY


def _parser():
    p = argparse.ArgumentParser(prog="mdln")
    sub = p.add_subparsers(dest="command")
    cli_greedy.add_parser(sub)
    return p


def test_cli_registers_the_greedy_subcommand():
    p = _parser()
    args = p.parse_args(["greedy", "toy", "--quick", "--out", "x"])
    assert args.func is cli_greedy.main and args.experiment == "toy" and args.quick
    with pytest.raises(SystemExit):
        p.parse_args(["greedy", "nonsense"])
    with pytest.raises(SystemExit):
        p.parse_args(["greedy", "digits", "--seeds", "0"])
    assert set(wu2022.REPRODUCE) == {
        "greedy-toy",
        "greedy-ode",
        "greedy-deep",
        "greedy-digits",
        "greedy-colored",
    }


def test_table_formats_missing_values_and_floats():
    rows = [{"a": 1, "b": None, "c": 0.123456}, {"a": 22, "b": "x", "c": 3.0}]
    assert cli_greedy.table(rows, ("a", "b", "c")).splitlines() == [
        " a  b       c",
        " 1  -  0.1235",
        "22  x       3",
    ]


@pytest.mark.slow
def test_quick_toy_entry_writes_table_json_and_figures(tmp_path, capsys):
    args = _parser().parse_args(["greedy", "toy", "--quick", "--json", "--out", str(tmp_path)])
    assert cli_greedy.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    res = out["greedy-toy"]
    rows = {(r["rho"], r["Q"]): r for r in res["rows"]}
    # same first-crossing steps as the reference table (2000 steps suffice for rho >= 0)
    for key in ((0.5, None), (0.5, 1), (0.0, None), (0.0, 5)):
        assert rows[key]["t_A_steps"] == pytest.approx(WU2022_REFERENCE_TOY[key][0], rel=0.02)
        assert rows[key]["t_A"] == pytest.approx(rows[key]["t_A_steps"] * AUTHORS_LR)
        assert rows[key]["reference_t_A_steps"] == WU2022_REFERENCE_TOY[key][0]
    for name in (
        "greedy_toy.csv",
        "greedy_toy.json",
        "greedy_toy_dutil.png",
        "greedy_toy_dspeed.png",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_digits_views_are_two_standardised_noisy_halves():
    tr, te = wu2022.digits_views(0, noise_A=0.1, noise_B=0.5, n_train=1000)
    assert tr.x_A.shape == (1000, 32) and tr.x_B.shape == (1000, 32) and tr.y.shape == (1000, 10)
    assert te.x_A.shape == (797, 32)
    np.testing.assert_allclose(np.asarray(tr.x_A).mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(tr.x_B).std(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(tr.y).sum(1), 1.0)


# Mean test accuracy over the 2 quick seeds (200 SGD steps, width 16), measured on CPU:
# vanilla 0.706, balanced 0.560, random 0.599 (chance is 0.1). The margin 0.05 (~40 of the 797
# test images) allows for a different BLAS / XLA version, not for a broken trainer.
_QUICK_DIGITS_ACCURACY = {"vanilla": 0.706, "balanced": 0.560, "random": 0.599}


@pytest.mark.slow
def test_quick_digits_entry(tmp_path):
    res = wu2022.reproduce_digits(tmp_path, quick=True)
    assert set(res["summary"]) == set(_QUICK_DIGITS_ACCURACY)
    for alg, s in res["summary"].items():
        assert _QUICK_DIGITS_ACCURACY[alg] - 0.05 < s["test_accuracy"]["mean"] <= 1.0, alg
        assert np.isfinite(s["d_util"]["mean"])
    assert (tmp_path / "greedy_digits.png").stat().st_size > 0
