"""Coloured digits (`experiments.wu2022.colored`, entry greedy-colored): the data construction
and a quick end-to-end run (docs/greedy.md, "Coloured digits")."""

import json

import numpy as np
import pytest

from multimodal_dln.experiments import wu2022


def _agreement(data) -> float:
    """Fraction of samples whose colour (argmax of the colour cue) is the label's colour."""
    return float(np.mean(np.argmax(np.asarray(data.x_A), 1) == np.argmax(np.asarray(data.y), 1)))


def test_colored_digits_shapes_standardisation_and_colour_agreement():
    tr, te = wu2022.colored_digits(0)
    assert tr.x_A.shape == (1000, 10) and tr.x_B.shape == (1000, 64) and tr.y.shape == (1000, 10)
    assert te.x_A.shape == (797, 10) and te.x_B.shape == (797, 64) and te.y.shape == (797, 10)
    for x in (tr.x_A, tr.x_B):
        np.testing.assert_allclose(np.asarray(x).mean(0), 0.0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(x).std(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(tr.y).sum(1), 1.0)
    # measured (seed 0): 0.957 of the training colours agree with the label (p_train = 0.95,
    # binomial std 0.007), 0.097 of the test colours (chance 0.1, std 0.011); bounds ~3 std
    assert abs(_agreement(tr) - 0.95) < 0.02
    assert abs(_agreement(te) - 0.10) < 0.035
    # p_train steers the training agreement only; colour noise 0.1 never flips the argmax
    tr1, te1 = wu2022.colored_digits(0, p_train=1.0)
    tr5, _ = wu2022.colored_digits(0, p_train=0.5)
    assert _agreement(tr1) == 1.0 and abs(_agreement(te1) - 0.10) < 0.035
    assert abs(_agreement(tr5) - 0.5) < 0.05
    # the image and the split depend on the seed, deterministically
    np.testing.assert_array_equal(np.asarray(wu2022.colored_digits(0)[0].x_B), np.asarray(tr.x_B))
    assert not np.array_equal(np.asarray(wu2022.colored_digits(1)[0].y), np.asarray(tr.y))


def test_findings_pair_seeds():
    rows = [
        {"algorithm": "vanilla", "seed": 0, "test_accuracy": 0.2},
        {"algorithm": "vanilla", "seed": 1, "test_accuracy": 0.3},
        {"algorithm": "balanced", "seed": 0, "test_accuracy": 0.25},
        {"algorithm": "balanced", "seed": 1, "test_accuracy": 0.28},
    ]
    f = wu2022.colored_findings(rows)
    assert f["balanced - vanilla"]["mean"] == pytest.approx(0.015)
    assert f["balanced - vanilla"]["std"] == pytest.approx(0.035)
    assert f["balanced - vanilla"]["wins"] == 1 and f["balanced - vanilla"]["n"] == 2
    assert f["balancing_improves_test_accuracy"] is False
    assert "ensemble - vanilla" not in f


@pytest.mark.slow
def test_quick_colored_entry(tmp_path):
    res = wu2022.reproduce_colored(tmp_path, quick=True)  # 2 seeds, 200 steps, width 16
    s = res["summary"]
    assert list(s) == ["vanilla", "balanced", "random", "ensemble", "image-only", "colour-only"]
    rows = {(r["algorithm"], r["seed"]): r for r in res["rows"]}
    for seed in (0, 1):
        van, img = rows["vanilla", seed], rows["image-only", seed]
        col = rows["colour-only", seed]
        # measured per seed (0, 1) on CPU: vanilla fits the training set through the colour
        # (train accuracy 0.960 / 0.955, its colour branch alone 0.68 / 0.81, its image branch
        # alone 0.25 / 0.22, d_util on training data -0.45 / -0.62) and fails at test
        # (0.164 / 0.148), far below the image-only model (test 0.453 / 0.497, train 0.52 / 0.55)
        assert van["train_accuracy"] > 0.9 and img["train_accuracy"] < 0.65
        assert van["unimodal0_train_accuracy"] > van["unimodal1_train_accuracy"] + 0.3
        assert van["d_util_train"] < -0.3
        assert van["test_accuracy"] < 0.25 < 0.4 < img["test_accuracy"]
        # the colour-only model learns the cue (train 0.957 / 0.953 ~ p_train), and is at
        # chance at test (0.097 / 0.110)
        assert col["train_accuracy"] > 0.9 and abs(col["test_accuracy"] - 0.1) < 0.04
    f = res["findings"]
    # measured: image-only - vanilla = 0.319 +- 0.030 (paired over the 2 seeds)
    assert f["image-only - vanilla"]["wins"] == 2 and f["image-only - vanilla"]["mean"] > 0.25
    on_disk = json.loads((tmp_path / "greedy_colored.json").read_text())
    assert on_disk["findings"] == f
    assert (tmp_path / "greedy_colored.csv").read_text().count("\n") == len(res["rows"]) + 1
    assert (tmp_path / "greedy_colored.png").stat().st_size > 0
