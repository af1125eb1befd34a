"""The Zhang et al. 2024 reproductions (`experiments.zhang2024`) and ``mdln reproduce``: the CLI
hook, output files, helpers, summaries computed without matplotlib, and (slow) a few entries run
end to end in quick mode with their scientific claims checked."""

import argparse
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimodal_dln import theory as th
from multimodal_dln.cli import reproduce as cli_reproduce
from multimodal_dln.experiments import zhang2024 as z
from multimodal_dln.experiments.zhang2024 import _common, relu, toy, trajectories


def _parser():
    parser = argparse.ArgumentParser(prog="mdln")
    sub = parser.add_subparsers(dest="command")
    cli_reproduce.add_parser(sub)
    return parser


def test_add_parser_registers_reproduce():
    args = _parser().parse_args(["reproduce", "toy-time-ratio", "--quick", "--out", "somewhere"])
    assert args.func is cli_reproduce.main
    assert (args.figure, args.quick, args.out) == ("toy-time-ratio", True, "somewhere")
    assert _parser().parse_args(["reproduce", "all"]).quick is False
    helptext = _parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
    for name, entry in z.FIGURES.items():
        assert name in helptext and entry.figure in helptext
    assert "digest" not in helptext


def test_unknown_figure_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="figure must be one of"):
        z.reproduce("fig9", out=tmp_path)
    with pytest.raises(ValueError, match="toy-time-ratio"):
        cli_reproduce.main(argparse.Namespace(figure="nope", quick=True, out=str(tmp_path)))


def test_heatmap_entry_writes_csv_png_json(tmp_path, capsys):
    """The pure-theory entry through the CLI handler: files exist, values are the formulas,
    and the PNG is commit-sized (< 200 KB)."""
    args = argparse.Namespace(figure="heatmaps", quick=True, out=str(tmp_path))
    assert cli_reproduce.main(args) == 0
    assert "heatmaps" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "heatmaps.csv")))
    assert len(rows) == 50 * 50
    r = rows[123]
    np.testing.assert_allclose(
        float(r["time_ratio"]), th.time_ratio_toy(float(r["rho"]), float(r["ratio"])), rtol=1e-12
    )
    np.testing.assert_allclose(
        float(r["misattribution"]), float(r["rho"]) / float(r["ratio"]), rtol=1e-12
    )
    summary = json.loads((tmp_path / "heatmaps.json").read_text())
    assert summary["figure"] == "heatmaps" and summary["quick"] is True
    assert summary["reference"] == "F4a/b; docs/theory.md §2, §4"
    png = tmp_path / "heatmaps.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000


def test_helpers():
    np.testing.assert_allclose(z.entrywise_effective_scale(1e-9, 100), 1e-9 * np.sqrt(50))
    pop = z.single_population()
    assert pop.d_A == 50 and pop.d == 100
    np.testing.assert_allclose(th.generalization_error(jnp.zeros((1, 100)), pop), 1.0)
    np.testing.assert_allclose(pop.min_loss(), 0.5 * 0.25, rtol=1e-12)
    data = z.xor_dataset(jax.random.key(0), 2.0, 64)
    xor = -data.x_B[:, 0] * data.x_B[:, 1]
    np.testing.assert_allclose(data.y[:, 0], data.x_A[:, 0] + xor)
    assert data.x_B.shape == (64, 2) and set(np.unique(np.asarray(data.x_B))) == {-1.0, 1.0}
    # XOR-feature counter: four diagonal units (+ noise units below threshold) -> 4 directions
    w = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1], [0.01, 0.0]], float)
    assert relu.xor_features(w, np.ones(5)) == (1.0, 4)
    assert relu.xor_features(np.array([[1.0, 0.0], [1.0, 1.0]]), np.ones(2)) == (0.5, 1)


def test_rel_stats():
    s = _common.rel_stats([1.1, 0.9, np.nan, 2.0], [1.0, 1.0, 1.0, 1.0], [True, True, True, False])
    assert s["n"] == 2 and abs(s["median"] - 0.1) < 1e-12 and abs(s["max"] - 0.1) < 1e-12
    assert _common.rel_stats([np.nan], [1.0]) == {"n": 0, "median": None, "max": None}


def _fake_sweep(noise):
    """A toy sweep whose members sit on the theory up to relative `noise` (no simulation)."""
    rho, ratio, seed = toy._grid([1.0, 2.0], [-0.5, 0.0, 0.5], 1)
    r_rho, r_ratio, r_seed = toy._grid([2.0], [0.0, 0.5], 1)

    def m(rr, ra):
        tr = np.asarray(th.time_ratio_toy(rr, ra)) * (1 + noise)
        mis = (rr / ra * (1 + noise))[:, None, None]
        n = len(rr)
        ok = np.ones(n, bool)
        return {
            "t_A": np.ones(n),
            "t_B": tr,
            "time_ratio": tr,
            "misattribution": mis,
            "success": ok,
            "status": np.array(["OK"] * n, dtype=object),
        }

    return {
        "settings": {"fake": True},
        "grid": (rho, ratio, seed),
        "flow": m(rho, ratio),
        "relu": m(r_rho, r_ratio),
        "relu_grid": (r_rho, r_ratio, r_seed),
        "relu_emp_theory": np.asarray(th.time_ratio_toy(r_rho, r_ratio)),
        "toy_settings": _common.toy_settings(True),
    }


def test_toy_summaries_without_matplotlib():
    """The summaries are computed from simulation outputs alone (matplotlib is not needed):
    members off by 3 % report 3 % errors, ratio 1 separately, misattribution likewise, and
    members without a phase time are counted by kind, ratio and status."""
    sw = _fake_sweep(0.03)
    rows, s = toy.summarize_time_ratio(sw)
    assert s["flow"]["n"] == 3 and s["flow_ratio_1"]["n"] == 3 and s["relu"]["n"] == 2
    np.testing.assert_allclose([s["flow"]["median"], s["relu"]["max"]], 0.03, rtol=1e-9)
    assert {r["kind"] for r in rows} == {"flow", "relu", "theory"} and "gd" not in s
    rows, s = toy.summarize_misattribution(sw)
    assert all(r["ratio"] > 1 for r in rows if r["kind"] != "theory")
    np.testing.assert_allclose(s["flow"]["max_rel_error"], 0.03, rtol=1e-9)
    assert s["flow"]["n"] == 3 and s["relu"]["n"] == 2
    rows, s = trajectories.summarize_heatmaps({"n": 4})
    assert len(rows) == 16 and s["max_time_ratio"] == max(r["time_ratio"] for r in rows)
    assert toy.summarize_time_ratio(sw)[1]["failed"] == {}
    sw["flow"]["success"][0], sw["flow"]["status"][0] = False, "ORDER_REVERSED"  # ratio 1
    sw["relu"]["success"][1], sw["relu"]["status"][1] = False, "NOT_CONVERGED"  # ratio 2
    assert toy.summarize_time_ratio(sw)[1]["failed"] == {
        "flow ratio 1: ORDER_REVERSED": 1,
        "relu ratio 2: NOT_CONVERGED": 1,
    }


# ------------------------------------------------------------------------------------------------
# entries end to end (slow)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_superficial_entry(tmp_path):
    """Superficial preference (docs/theory.md §4): A (sigma_A = 2, w* = (1.5, 4)) is learned
    first although it contributes less; the simulated plateau sits at L(M_A)/L(M_0) = 0.64
    (within 1 %)."""
    res = z.reproduce("superficial", quick=True, out=tmp_path)
    s = res.summary
    assert s["learned_first"] == "A" and s["superficial"]
    np.testing.assert_allclose(s["plateau_loss_ratio_sim"], 0.64, rtol=0.01)
    np.testing.assert_allclose(s["L(M_B)/L(M_0)"], 0.36, rtol=1e-12)
    assert all((tmp_path / f"superficial.{e}").exists() for e in ("csv", "png", "json"))


@pytest.mark.slow
def test_xor_entry_late_fusion_learns_the_xor_features(tmp_path):
    """ReLU late fusion forms all four XOR directions and fits the task for every sigma_A
    (Zhang et al. 2024's nonlinear extension); early fusion's B features are less consistent
    (not asserted: no theory)."""
    s = z.reproduce("xor", quick=True, out=tmp_path).summary
    for sigma in (1, 2, 3):
        late = s[f"late_sigmaA={sigma}_seed=0"]
        assert late["xor_directions_used"] == 4 and late["xor_feature_fraction"] > 0.9
        assert late["final_loss_normalized"] < 1e-3


@pytest.mark.slow
def test_digits_entry_later_fusion_delays_the_weak_modality(tmp_path):
    """Noisy digits, L = 4 (quick: 800 epochs): A (clean in 84 % of samples) is learned by
    every network; B's accuracy reaches 50 % last (or never) for late fusion, and earliest for
    early fusion (the paper's fusion-depth claim)."""
    s = z.reproduce("digits", quick=True, out=tmp_path).summary
    for Lf in (1, 2, 3, 4):
        assert s[f"L_f={Lf}"]["final_acc_A"] > 0.8
    b = [s[f"L_f={Lf}"]["epoch_acc_B_50pct"] for Lf in (1, 2, 3, 4)]
    b = [np.inf if v is None else v for v in b]
    assert b[0] < b[3] and b[0] <= min(b[1:]), b
