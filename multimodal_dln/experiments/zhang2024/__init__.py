"""Reproductions of Zhang, Latham & Saxe (ICML 2024), one module per figure family.

- `trajectories`: two-layer early vs late fusion trajectories (F2/F3), theory heatmaps (F4a/b);
- `toy`: the two-layer toy sweep: time ratio (F4c) and misattribution (F4d) against rho;
- `random_cov`: random inverse-Wishart covariances (F4e);
- `superficial`: superficial modality preference (F5);
- `deep`: deep fusion, L = 4: loss curves and time ratios (F6a-d);
- `generalization`: under- vs over-parametrized fusion (F7);
- `relu`: ReLU networks: heterogeneous XOR and noisy digits (F8);
- `convergence`: convergence to the leading-order time ratio as u0 -> 0 (beyond the paper);
- `weight_decay`, `unbalanced`, `minibatch`: weight decay, unbalanced starts and minibatch
  noise (beyond the paper);
- `registry`: `FIGURES` (name -> `Entry`), `reproduce`, `reproduce_all`.

Each entry is ``simulate(ctx) -> sim``, ``summarize(sim) -> (rows, summary)`` and
``plot(rows, summary) -> Figure``, so summaries are computed (and tested) without matplotlib.
"""

from ._common import entrywise_effective_scale
from .generalization import single_population
from .random_cov import random_covariances
from .registry import FIGURES, Entry, Reproduction, help_table, reproduce, reproduce_all
from .relu import xor_dataset

__all__ = [
    "FIGURES",
    "Entry",
    "Reproduction",
    "entrywise_effective_scale",
    "help_table",
    "random_covariances",
    "reproduce",
    "reproduce_all",
    "single_population",
    "xor_dataset",
]
