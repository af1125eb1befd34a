"""Per-layer learning rates in `gradient_flow(..., layer_lrs=eta)` (docs/theory.md §9;
`multimodal_dln._layer_rates`): tau dW_l/dt = -eta_l dL/dW_l, integrated as plain gradient flow
of W_l / sqrt(eta_l) on inputs scaled by prod_l sqrt(eta_l), against a direct SciPy
integration of the rates on the network's own weights (linear on statistics, ReLU on samples).
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import multimodal_dln as mdln
from multimodal_dln import _training

ETA = (0.5, 2.0, 1.5)  # layers 1, 2 (= L_f) and 3 (shared)


def _direct(net, objective, t_end, ts):
    """W^tot at `ts` (< t_end) and the final network: SciPy's DOP853 on the flat weights with
    each entry's rate."""
    params, static = eqx.partition(net, eqx.is_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    rates = eqx.tree_at(
        lambda m: (m.branch_A, m.branch_B, m.fusion_A, m.fusion_B, m.shared),
        params,
        (
            tuple(jnp.full_like(w, ETA[0]) for w in params.branch_A),
            tuple(jnp.full_like(w, ETA[0]) for w in params.branch_B),
            jnp.full_like(params.fusion_A, ETA[1]),
            jnp.full_like(params.fusion_B, ETA[1]),
            tuple(jnp.full_like(w, ETA[2]) for w in params.shared),
        ),
    )
    r = np.asarray(jax.flatten_util.ravel_pytree(rates)[0])
    grad = jax.jit(jax.grad(lambda f: mdln.loss(eqx.combine(unravel(f), static), objective)))
    t_eval = np.append(ts[ts < t_end], t_end)
    sol = integrate.solve_ivp(
        lambda t, y: -r * np.asarray(grad(jnp.asarray(y))), (0.0, t_end), np.asarray(flat),
        t_eval=t_eval, method="DOP853", rtol=1e-11, atol=1e-14,
    )  # fmt: skip
    nets = [eqx.combine(unravel(jnp.asarray(y)), static) for y in sol.y.T]
    w = np.stack([np.asarray(_training.readout(n, objective)) for n in nets[:-1]])
    return w, nets[-1]


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_layer_rates_match_a_direct_integration(activation):
    """Measured: W^tot at the saves within 3.8e-7 (linear) and 1.2e-9 (ReLU) of the direct
    integration, the final layers within 3e-8 and 1.5e-6: the plain solve's own accuracy at its
    default tolerances (at unit rates the same comparison gives 3.0e-6 / 1.3e-9 and 4e-8 /
    8.4e-7). A wrong layer or gain would be off by O(0.1)."""
    stats = mdln.Statistics.toy(0.5, 2.0)
    objective = stats if activation == "linear" else mdln.sample(jax.random.key(4), stats, 16)
    net = mdln.FusionDLN.init(
        jax.random.key(0), depth=3, fusion_layer=2, width=3, d_A=1, d_B=1, init_scale=0.05,
        activation=activation,
    )  # fmt: skip
    t_max = 30.0 if activation == "linear" else 5.0  # ReLU: SciPy steps slowly through kinks
    traj = mdln.gradient_flow(net, objective, layer_lrs=jnp.asarray(ETA), t_max=t_max, n_save=64)
    # the ReLU net cannot reach L* = 0 on the samples: it runs to t_max (NOT_CONVERGED)
    ok = mdln.Status.OK if activation == "linear" else mdln.Status.NOT_CONVERGED
    assert int(traj.status) == ok, traj.failure_reasons()
    ts, t_end = np.asarray(traj.ts), float(traj.t_end)
    w, final = _direct(net, objective, t_end, ts)
    err = np.max(np.abs(w - np.asarray(traj.weights)[: len(w)]))
    assert err < (1e-6 if activation == "linear" else 1e-8), err
    leaves = [jax.tree.leaves(eqx.filter(n, eqx.is_array)) for n in (final, traj.final)]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(
            np.asarray(b), np.asarray(a), atol=1e-7 if activation == "linear" else 3e-6
        )


def test_layer_rates_arguments():
    stats = mdln.Statistics.toy(0.5, 2.0)
    net = mdln.FusionDLN.init(jax.random.key(0), depth=2, fusion_layer=2, width=3, d_A=1, d_B=1)
    with pytest.raises(ValueError, match=r"^layer_lrs must have shape \(depth,\) = \(2,\)"):
        mdln.gradient_flow(net, stats, layer_lrs=jnp.ones(3))
    with pytest.raises(ValueError, match=r"^layer_lrs with weight_decay is not supported"):
        mdln.gradient_flow(net, stats, layer_lrs=jnp.ones(2), weight_decay=0.1)
    with pytest.raises(ValueError, match=r"^layer_lrs\[1\] = -1.0: layer_lrs must be finite"):
        mdln.gradient_flow(net, stats, layer_lrs=jnp.array([1.0, -1.0]))
