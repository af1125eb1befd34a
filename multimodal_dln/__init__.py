"""multimodal-dln: how multimodal deep linear networks learn, simulated and explained.

Float64 is enabled on import (set MDLN_X64=0 before importing to opt out): phase times are
measured from escapes out of saddles at init scales down to 1e-12 and below, where float32
round-off and solver tolerances would bias them (stack notes 1.6).
"""

import os as _os

import jax as _jax

if _os.environ.get("MDLN_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

from .dataset import Dataset as Dataset, sample as sample
from .gradient_descent import gradient_descent as gradient_descent, stable_lr_estimate as stable_lr_estimate
from .gradient_flow import gradient_flow as gradient_flow, save_grid as save_grid
from .loss import (
    linear_readout as linear_readout,
    loss as loss,
    population_loss as population_loss,
    sample_loss as sample_loss,
)
from .measurements import (
    PhaseMeasurements as PhaseMeasurements,
    crossing_time as crossing_time,
    generalization_error_curve as generalization_error_curve,
    measure as measure,
)
from .network import FusionDLN as FusionDLN
from .status import Status as Status, describe as describe_status
from .statistics import Statistics as Statistics, validate_statistics as validate_statistics
from . import balanced as balanced, greedy as greedy, theory as theory
from .two_head import TwoHeadFusionNet as TwoHeadFusionNet
from .trajectory import Trajectory as Trajectory, hermite_interpolate as hermite_interpolate

__version__ = "0.1.0"
