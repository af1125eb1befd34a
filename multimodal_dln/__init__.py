"""multimodal-dln: how multimodal deep linear networks learn, simulated and explained.

Float64 is enabled on import (set MDLN_X64=0 before importing to opt out): phase times are
measured from escapes out of saddles at init scales down to 1e-12 and below, where float32
round-off and solver tolerances would bias them (docs/theory.md §7).

JAX's persistent compilation cache is enabled on import in a user cache folder, so a second
process does not compile the same solve again (set MDLN_COMPILATION_CACHE=0 to opt out;
`multimodal_dln._cache`).
"""

import os as _os
from importlib import metadata as _metadata

import jax as _jax

if _os.environ.get("MDLN_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

from . import greedy as greedy, sweeps as sweeps, theory as theory
from ._cache import (
    enable_compilation_cache as enable_compilation_cache,
    release_compiled_if_crowded as release_compiled_if_crowded,
)
from ._dataset import Dataset as Dataset, sample as sample
from ._gradient_descent import (
    gradient_descent as gradient_descent,
    stable_lr_estimate as stable_lr_estimate,
)
from ._gradient_flow import gradient_flow as gradient_flow, save_grid as save_grid
from ._loss import (
    linear_readout as linear_readout,
    loss as loss,
    population_loss as population_loss,
    sample_loss as sample_loss,
)
from ._measurements import (
    PhaseMeasurements as PhaseMeasurements,
    crossing_time as crossing_time,
    generalization_error_curve as generalization_error_curve,
    measure as measure,
)
from ._modality_measurements import (
    ModalityPhases as ModalityPhases,
    measure_modalities as measure_modalities,
)
from ._network import FusionDLN as FusionDLN
from ._reduced_dynamics import (
    ReducedState as ReducedState,
    reduced_flow as reduced_flow,
    reduced_initial_state as reduced_initial_state,
    reduced_state_from_network as reduced_state_from_network,
    reduced_weights as reduced_weights,
)
from ._statistics import Statistics as Statistics
from ._statistics_checks import validate_statistics as validate_statistics
from ._status import (
    Status as Status,
    describe as describe_status,  # noqa: F401  (public re-export)
)
from ._trajectory import Trajectory as Trajectory, hermite_interpolate as hermite_interpolate
from ._two_head import TwoHeadFusionNet as TwoHeadFusionNet

try:
    __version__ = _metadata.version("multimodal-dln")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

enable_compilation_cache()  # before anything compiles; MDLN_COMPILATION_CACHE=0 opts out
