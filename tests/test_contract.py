"""The integrators' contract, checked as one product: every integrator x every structure, on the
same statistics and the same networks, and results agree where they must.

Integrators: `gradient_flow` (default solver), `gradient_descent` at a small learning rate and
`reduced_flow` from the same aligned (balanced, rank-one) start, whose reduction is exact
(docs/theory.md §3). Structures: depth 2 late fusion and depth 3 intermediate fusion (L_f = 2).
Data: the toy statistics at ratio 2 and four correlations, whose solution is the teacher
W* = (1, 1) for every rho (docs/theory.md §1, fixed point M_*; §2).

Tolerances are stated against the error measured on these runs (measured, asserted):

- final effective weights vs W*: 3.0e-3 max over members and integrators at the default
  converge_rtol 1e-6 (the runs stop at the convergence event), asserted 6e-3; final loss
  3.5e-6 (L* = 0), asserted 1e-5;
- reduced dynamics vs network flow: t_A 4e-9 (L = 2) and 3.6e-7 (L = 3), t_B and t_B/t_A
  1.6e-4 (t_B is read near the end of the runs, where the two solvers' last steps differ;
  `_trajectory.fill_after_end`), asserted 4e-4;
- gradient descent at lr vs gradient flow: first order in lr (docs/theory.md §1); measured
  |t_GD / t_GF - 1| at lr = 1e-3: t_A 2.1 lr, t_B 0.53 lr, t_B/t_A 2.3 lr (L = 2; L = 3:
  0.71, 0.53, 0.19 lr), asserted 5 lr.
"""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln

INTEGRATORS = ("flow", "gd", "reduced")
STRUCTURES = ((2, 2, 1e-3), (3, 2, 0.05))
"""(depth L, fusion layer L_f, per-layer init scale u0)."""
RHO = (0.0, 0.25, 0.5, -0.25)
RATIO = 2.0
LR = 1e-3
W_STAR = np.array([[1.0, 1.0]])  # the toy teacher: W* = (w_A, w_B) for every rho and ratio
FIELDS = ("ts", "weights", "weights_dot", "loss", "t_end", "status", "num_steps")


def _stats():
    return jax.vmap(mdln.Statistics.toy)(jnp.asarray(RHO), jnp.full(len(RHO), RATIO))


@functools.cache
def _run(integrator: str, structure: tuple) -> mdln.Trajectory:
    depth, fusion_layer, u0 = structure
    stats = _stats()
    if integrator == "reduced":
        return mdln.reduced_flow(stats, depth=depth, fusion_layer=fusion_layer, init_scale=u0)
    keys = jax.random.split(jax.random.key(0), len(RHO))
    nets = eqx.filter_vmap(
        lambda k, s: mdln.FusionDLN.init(
            k,
            depth=depth,
            fusion_layer=fusion_layer,
            width=8,
            d_A=1,
            d_B=1,
            init_scale=u0,
            init="aligned",
            align_to=s,
        )
    )(keys, stats)
    if integrator == "flow":
        return mdln.gradient_flow(nets, stats)
    return mdln.gradient_descent(nets, stats, lr=LR)


@functools.cache
def _measured(integrator: str, structure: tuple) -> mdln.PhaseMeasurements:
    return mdln.measure(_run(integrator, structure), _stats())


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_every_integrator_converges_with_the_same_fields(integrator, structure):
    traj, ref = _run(integrator, structure), _run("flow", structure)
    assert isinstance(traj, mdln.Trajectory)
    assert bool(jnp.all(traj.status == mdln.Status.OK)), traj.failure_reasons()
    assert bool(jnp.all(_measured(integrator, structure).success))
    for name in FIELDS:
        got, want = getattr(traj, name), getattr(ref, name)
        assert got.shape == want.shape, (name, got.shape, want.shape)
    assert traj.fusion_layer == structure[1] and traj.d_A == 1


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_every_integrator_ends_at_the_global_minimum(integrator, structure):
    traj = _run(integrator, structure)
    np.testing.assert_allclose(
        np.asarray(traj.weights[:, -1]), np.broadcast_to(W_STAR, (len(RHO), 1, 2)), atol=6e-3
    )
    np.testing.assert_allclose(traj.loss[:, -1], 0.0, atol=1e-5)  # noiseless: L* = 0


@pytest.mark.parametrize("structure", STRUCTURES)
def test_reduced_dynamics_times_equal_the_network_flow(structure):
    flow, red = _measured("flow", structure), _measured("reduced", structure)
    for name in ("t_A", "t_B", "time_ratio"):
        np.testing.assert_allclose(getattr(red, name), getattr(flow, name), rtol=4e-4, err_msg=name)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_gradient_descent_matches_the_flow_to_first_order_in_lr(structure):
    flow, gd = _measured("flow", structure), _measured("gd", structure)
    for name in ("t_A", "t_B", "time_ratio"):
        rel = np.abs(np.asarray(getattr(gd, name)) / np.asarray(getattr(flow, name)) - 1)
        assert np.all(rel <= 5 * LR), (name, rel)
    # the times are steps x lr: every save time is a whole number of steps
    steps = np.asarray(_run("gd", structure).ts) / LR
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
