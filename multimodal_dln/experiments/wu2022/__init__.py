"""Wu et al. (ICML 2022), greedy multimodal learning, on deep linear networks: the ``greedy-*``
experiments, one module each.

- `toy`: vanilla vs balanced two-layer late fusion on the toy data, d_util / d_speed figures;
- `ode`: the discrete balanced loop against the duty-cycle-averaged hybrid ODE;
- `deep`: vanilla vs balanced deep fusion (L = 4, L_f in {2, 3, 4});
- `digits`: two noisy views of scikit-learn's digits, a two-head ReLU network, several seeds;
- `colored`: coloured digits (a colour cue predictive in training only, and the image), the
  same network, with a unimodal-ensemble baseline;
- `registry`: `REPRODUCE` (entry name -> ``fn(out_dir, quick) -> summary``), output files.

The formulas behind the measurements are in docs/theory.md §6.
"""

from ._common import WU2022_REFERENCE_DEEP, WU2022_REFERENCE_TOY, ToySetting
from .colored import colored_digits, colored_experiment, colored_findings, plot_colored
from .deep import deep_experiment
from .digits import digits_experiment, digits_views, plot_digits
from .ode import ode_experiment
from .registry import (
    REPRODUCE,
    reproduce_colored,
    reproduce_deep,
    reproduce_digits,
    reproduce_ode,
    reproduce_toy,
    run_colored,
    run_digits,
)
from .toy import curve_rows, plot_toy, toy_experiment

__all__ = [
    "REPRODUCE",
    "ToySetting",
    "WU2022_REFERENCE_DEEP",
    "WU2022_REFERENCE_TOY",
    "colored_digits",
    "colored_experiment",
    "colored_findings",
    "curve_rows",
    "deep_experiment",
    "digits_experiment",
    "digits_views",
    "ode_experiment",
    "plot_colored",
    "plot_digits",
    "plot_toy",
    "reproduce_colored",
    "reproduce_deep",
    "reproduce_digits",
    "reproduce_ode",
    "reproduce_toy",
    "run_colored",
    "run_digits",
    "toy_experiment",
]
