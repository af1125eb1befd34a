"""Declarative, vmapped parameter sweeps over data, networks and methods (docs/sweeps.md).

    import multimodal_dln as mdln
    from multimodal_dln import sweeps

    sweep = sweeps.product(depth=4, fusion_layer=[1, 2, 3, 4], rho=[-0.5, 0, 0.5], seed=range(3))
    df = sweeps.run(sweep, out="runs/lf")        # a pandas DataFrame, one row per member
    df = sweeps.load("runs/lf")                  # the same table, read back

- `product(**axes)`, `zipped(**axes)`, ``a * b`` (cartesian), ``a + b`` (concatenation): declare
  members over the axes in `AXES` (data: toy rho / ratio / noise / teacher weights, random
  covariances by draw with d_A, d_B, d_out, or a supplied batch; network: depth, fusion layer,
  width, init scheme and scale, activation; method: flow / gd (lr) / reduced; t_max, rtol,
  n_save; seed).
- `run(sweep, out=None, resume=..., overwrite=..., chunk_size=..., reduced=...)`: members
  grouped by static structure (one compile each), chunks that fit each group, members of
  similar predicted duration batched together, sharded over devices; per-member status and
  reason, solver statistics and theory columns. With `out`, a store that never loses or mixes
  data (`Store`: one writer, no symlinks followed, nothing replaced without a flag).
- `load(out)`: the results table of a sweep folder.
- `inputs(sweep)`: the built inputs without solving (per static structure: the members, the
  objective, the statistics and the networks), for callers that integrate themselves.
"""

from ._axes import AXES as AXES, AXIS_NAMES as AXIS_NAMES, Axis as Axis
from ._frame import COLUMNS as COLUMNS, load as load
from ._inputs import Inputs as Inputs, inputs as inputs
from ._run import run as run
from ._solve_chunk import PHASE_COLUMNS as PHASE_COLUMNS
from ._spec import Sweep as Sweep, product as product, zipped as zipped
from ._store import Store as Store, SweepError as SweepError

__all__ = [
    "AXES",
    "AXIS_NAMES",
    "COLUMNS",
    "PHASE_COLUMNS",
    "Axis",
    "Inputs",
    "Store",
    "Sweep",
    "SweepError",
    "inputs",
    "load",
    "product",
    "run",
    "zipped",
]
