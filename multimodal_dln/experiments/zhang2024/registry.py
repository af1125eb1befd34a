"""The reproduction entries of Zhang, Latham & Saxe (ICML 2024): name -> `Entry`, and the runner.

`reproduce(name, quick=..., out=...)` runs one entry: its simulation, its summary (rows and the
agreement with the theory) and its figure drawn from the rows; writes ``NAME.csv`` (every
simulated point and theory curve), ``NAME.png`` and ``NAME.json`` (the summary, with the
entry's figure label and theory section under "reference") into `out` and returns a
`Reproduction`. `reproduce_all` runs every entry (shared simulations are computed once per
process). `help_table()` is the table ``mdln reproduce --help`` prints.

Figure labels F2-F8 are those of docs/reproduction.md; theory sections are docs/theory.md's.
Conventions (the authors' figures, set in `experiments._style`): theory as lines, linear-network
simulations as open circles, ReLU as crosses; modality A blue, B fuchsia, loss black, E_g red; a
swept value (sigma_A/sigma_B, L_f, ...) has the same colour in every figure; legends explain
every mark; every time axis is gradient-flow time t.
`quick=True` runs small versions (narrow networks, fewer points and seeds) meant as a smoke test
of the whole pipeline (``reproduce all --quick`` takes a few minutes on 2 CPU cores). Full runs
use the paper's parameters where the CPU budget allows; deviations are listed in each entry's
docstring and in its JSON summary ("settings").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..._io import write_csv, write_json
from .._plotting import savefig
from . import (
    convergence,
    deep,
    generalization,
    minibatch,
    modalities,
    random_cov,
    relu,
    superficial,
    toy,
    trajectories,
    unbalanced,
    weight_decay,
)
from ._common import Context

__all__ = ["FIGURES", "Entry", "Reproduction", "help_table", "reproduce", "reproduce_all"]


@dataclass(frozen=True)
class Entry:
    """One reproduction: ``simulate(ctx) -> sim``, ``summarize(sim) -> (rows, summary)``,
    ``plot(rows, summary) -> Figure``; its figure label, theory section and title."""

    simulate: Callable[[Context], Any]
    summarize: Callable[[Any], tuple[list[dict], dict]]
    plot: Callable[[list[dict], dict], Any]
    figure: str
    theory: str
    title: str

    @property
    def reference(self) -> str:
        where = f"docs/theory.md {self.theory}" if self.theory != "-" else "no closed form"
        return f"{self.figure}; {where}"


@dataclass
class Reproduction:
    """What one entry produced: `rows` (also in NAME.csv), `summary` (NAME.json), `files`."""

    name: str
    rows: list[dict]
    summary: dict
    files: list[Path]
    seconds: float


def _deep(sweep: str, title: str, figure: str) -> Entry:
    return Entry(
        deep.simulate_deep,
        partial(deep.summarize_deep, sweep=sweep),
        partial(deep.plot_deep, sweep=sweep),
        figure,
        "§3",
        title,
    )


FIGURES: dict[str, Entry] = {
    "trajectories": Entry(
        trajectories.simulate_trajectories,
        trajectories.summarize_trajectories,
        trajectories.plot_trajectories,
        "F2/F3",
        "§2",
        "two-layer early vs late fusion trajectories",
    ),
    "toy-time-ratio": Entry(
        toy.simulate_time_ratio,
        toy.summarize_time_ratio,
        toy.plot_time_ratio,
        "F4c",
        "§2",
        "toy time ratio vs rho (linear GF, GD, ReLU)",
    ),
    "misattribution": Entry(
        toy.simulate_toy_sweep,
        toy.summarize_misattribution,
        toy.plot_misattribution,
        "F4d",
        "§4",
        "misattribution vs rho",
    ),
    "heatmaps": Entry(
        trajectories.simulate_heatmaps,
        trajectories.summarize_heatmaps,
        trajectories.plot_heatmaps,
        "F4a/b",
        "§2, §4",
        "theory heatmaps of time ratio and misattribution",
    ),
    "random-cov": Entry(
        random_cov.simulate_random_cov,
        random_cov.summarize_random_cov,
        random_cov.plot_random_cov,
        "F4e",
        "§2",
        "random inverse-Wishart covariances: theory vs simulation",
    ),
    "superficial": Entry(
        superficial.simulate_superficial,
        superficial.summarize_superficial,
        superficial.plot_superficial,
        "F5",
        "§4",
        "superficial modality preference",
    ),
    "deep-loss": Entry(
        deep.simulate_deep,
        deep.summarize_deep_loss,
        deep.plot_deep_loss,
        "F6a",
        "§3",
        "deep fusion loss curves for L_f = 1..4",
    ),
    "deep-rho": _deep("rho", "deep time ratio vs rho", "F6b"),
    "deep-ratio": _deep("ratio", "deep time ratio vs variance ratio", "F6c"),
    "deep-init": _deep("init", "deep time ratio vs initialization", "F6d"),
    "generalization": Entry(
        generalization.simulate_generalization,
        generalization.summarize_generalization,
        generalization.plot_generalization,
        "F7",
        "§5",
        "under- vs over-parametrized loss and E_g",
    ),
    "xor": Entry(
        relu.simulate_xor,
        relu.summarize_xor,
        relu.plot_xor,
        "F8",
        "-",
        "ReLU heterogeneous XOR: early vs late fusion features",
    ),
    "digits": Entry(
        relu.simulate_digits,
        relu.summarize_digits,
        relu.plot_digits,
        "F8",
        "-",
        "noisy-digits fusion depth experiment (per-modality accuracy)",
    ),
    "init-convergence": Entry(
        convergence.simulate_init_convergence,
        convergence.summarize_init_convergence,
        convergence.plot_init_convergence,
        "beyond",
        "§2, §3",
        "convergence to the theory as u0 -> 0",
    ),
    "weight-decay": Entry(
        weight_decay.simulate_weight_decay,
        weight_decay.summarize_weight_decay,
        weight_decay.plot_weight_decay,
        "beyond",
        "§8",
        "weight decay: late fusion's threshold, early fusion learns both",
    ),
    "unbalanced-init": Entry(
        unbalanced.simulate_unbalanced,
        unbalanced.summarize_unbalanced,
        unbalanced.plot_unbalanced,
        "beyond",
        "§9",
        "unbalanced (lambda-balanced) starts: phase times vs imbalance",
    ),
    "minibatch-noise": Entry(
        minibatch.simulate_minibatch,
        minibatch.summarize_minibatch,
        minibatch.plot_minibatch,
        "beyond",
        "§10",
        "minibatch SGD: distribution of t_B / t_A against batch size",
    ),
    "modalities": Entry(
        modalities.simulate_modalities,
        modalities.summarize_modalities,
        modalities.plot_modalities,
        "beyond",
        "§11",
        "three and four modalities: phase times and learning order",
    ),
}


def help_table() -> str:
    """One line per entry: name, figure label, docs/theory.md section, title."""
    return "\n".join(f"  {k:<17} {v.figure:<7} {v.theory:<7} {v.title}" for k, v in FIGURES.items())


def reproduce(
    name: str,
    *,
    quick: bool = False,
    out: str | Path = "mdln-reproduce",
    log: Callable | None = None,
) -> Reproduction:
    """Run one entry of `FIGURES`; writes NAME.csv, NAME.png and NAME.json into `out`."""
    if name not in FIGURES:
        raise ValueError(f"figure must be one of {sorted(FIGURES)} or 'all'; got {name!r}.")
    entry = FIGURES[name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows, summary = entry.summarize(entry.simulate(Context(bool(quick), log or (lambda s: None))))
    fig = entry.plot(rows, summary)
    seconds = time.time() - t0
    summary = {
        "figure": name,
        "reference": entry.reference,
        "quick": bool(quick),
        "seconds": round(seconds, 1),
        **summary,
    }
    files = [
        write_csv(out / f"{name}.csv", rows, nan="nan"),
        savefig(fig, out / f"{name}.png", dpi=110, bbox_inches="tight"),
        write_json(out / f"{name}.json", summary, indent=1, newline=False, atomic=False),
    ]
    return Reproduction(name, rows, summary, files, seconds)


def reproduce_all(
    *, quick: bool = False, out: str | Path = "mdln-reproduce", log: Callable | None = None
) -> dict[str, Reproduction]:
    """Run every entry in order (shared simulations are computed once)."""
    return {name: reproduce(name, quick=quick, out=out, log=log) for name in FIGURES}
