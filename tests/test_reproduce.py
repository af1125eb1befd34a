"""multimodal_dln.reproduce: the CLI hook, output files, helpers, and (slow) a few entries run
end to end in quick mode with their scientific claims checked."""

import argparse
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from multimodal_dln import reproduce as rp
from multimodal_dln import theory as th


def _parser():
    parser = argparse.ArgumentParser(prog="mdln")
    sub = parser.add_subparsers(dest="command")
    rp.add_cli(sub)
    return parser


def test_add_cli_registers_reproduce():
    args = _parser().parse_args(["reproduce", "toy-time-ratio", "--quick", "--out", "somewhere"])
    assert args.func is rp.main_reproduce
    assert (args.figure, args.quick, args.out) == ("toy-time-ratio", True, "somewhere")
    assert _parser().parse_args(["reproduce", "all"]).quick is False
    helptext = _parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
    for name in rp.FIGURES:
        assert name in helptext


def test_unknown_figure_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ValueError, match="figure must be one of"):
        rp.reproduce("fig9", out=tmp_path)
    with pytest.raises(ValueError, match="toy-time-ratio"):
        rp.main_reproduce(argparse.Namespace(figure="nope", quick=True, out=str(tmp_path)))


def test_heatmap_entry_writes_csv_png_json(tmp_path, capsys):
    """The pure-theory entry through the CLI handler: files exist, values are the formulas,
    and the PNG is commit-sized (< 200 KB)."""
    assert (
        rp.main_reproduce(argparse.Namespace(figure="heatmaps", quick=True, out=str(tmp_path))) == 0
    )
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
    png = tmp_path / "heatmaps.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000


def test_helpers():
    np.testing.assert_allclose(rp.entrywise_effective_scale(1e-9, 100), 1e-9 * np.sqrt(50))
    pop = rp.single_population()
    assert pop.d_A == 50 and pop.d == 100
    np.testing.assert_allclose(th.generalization_error(jnp.zeros((1, 100)), pop), 1.0)
    np.testing.assert_allclose(pop.min_loss(), 0.5 * 0.25, rtol=1e-12)
    data = rp.xor_dataset(jax.random.key(0), 2.0, 64)
    xor = -data.x_B[:, 0] * data.x_B[:, 1]
    np.testing.assert_allclose(data.y[:, 0], data.x_A[:, 0] + xor)
    assert data.x_B.shape == (64, 2) and set(np.unique(np.asarray(data.x_B))) == {-1.0, 1.0}
    # XOR-feature counter: four diagonal units (+ noise units below threshold) -> 4 directions
    w = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1], [0.01, 0.0]], float)
    frac, used = rp._xor_features(w, np.ones(5))
    assert (frac, used) == (1.0, 4)
    frac, used = rp._xor_features(np.array([[1.0, 0.0], [1.0, 1.0]]), np.ones(2))
    assert (frac, used) == (0.5, 1)


def test_rel_stats_and_padding():
    s = rp._rel_stats([1.1, 0.9, np.nan, 2.0], [1.0, 1.0, 1.0, 1.0], [True, True, True, False])
    assert s["n"] == 2 and abs(s["median"] - 0.1) < 1e-12 and abs(s["max"] - 0.1) < 1e-12
    stats = rp._toy_stats([0.0, 0.5], [2.0, 3.0])
    padded = rp._pad(stats, 8)
    assert padded.sigma_xx.shape == (8, 2, 2) and padded.d_A == 1
    np.testing.assert_array_equal(padded.sigma_xx[7], stats.sigma_xx[1])
    assert rp._bucket(5) == 8 and rp._bucket(33) == 64 and rp._bucket(2000) == 2048


# ------------------------------------------------------------------------------------------------
# entries end to end (slow)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_superficial_entry(tmp_path):
    """digest 2.5 example: A (sigma_A = 2, w* = (1.5, 4)) is learned first although it
    contributes less; the simulated plateau sits at L(M_A)/L(M_0) = 0.64 (within 1 %)."""
    res = rp.reproduce("superficial", quick=True, out=tmp_path)
    s = res.summary
    assert s["learned_first"] == "A" and s["superficial"]
    np.testing.assert_allclose(s["plateau_loss_ratio_sim"], 0.64, rtol=0.01)
    np.testing.assert_allclose(s["L(M_B)/L(M_0)"], 0.36, rtol=1e-12)
    assert all((tmp_path / f"superficial.{e}").exists() for e in ("csv", "png", "json"))


@pytest.mark.slow
def test_xor_entry_late_fusion_learns_the_xor_features(tmp_path):
    """ReLU late fusion forms all four XOR directions and fits the task for every sigma_A
    (digest 2.9b); early fusion's B features are less consistent (not asserted: no theory)."""
    s = rp.reproduce("xor", quick=True, out=tmp_path).summary
    for sigma in (1, 2, 3):
        late = s[f"late_sigmaA={sigma}_seed=0"]
        assert late["xor_directions_used"] == 4 and late["xor_feature_fraction"] > 0.9
        assert late["final_loss_normalized"] < 1e-3


@pytest.mark.slow
def test_digits_entry_later_fusion_delays_the_weak_modality(tmp_path):
    """Noisy digits, L = 4 (quick: 800 epochs): A (clean in 84 % of samples) is
    learned by every network; B's accuracy reaches 50 % last (or never) for late fusion, and
    earliest for early fusion (the paper's fusion-depth claim, digest 2.9c)."""
    s = rp.reproduce("digits", quick=True, out=tmp_path).summary
    for Lf in (1, 2, 3, 4):
        assert s[f"L_f={Lf}"]["final_acc_A"] > 0.8
    b = [s[f"L_f={Lf}"]["epoch_acc_B_50pct"] for Lf in (1, 2, 3, 4)]
    b = [np.inf if v is None else v for v in b]
    assert b[0] < b[3] and b[0] <= min(b[1:]), b
