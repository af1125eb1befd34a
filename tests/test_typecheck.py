"""Every jaxtyping annotation on the package's main paths holds at run time.

A fresh interpreter imports `multimodal_dln` under jaxtyping's import hook with beartype (the
diffrax/equinox way of checking shape annotations) and runs the common workflows with valid
inputs: data, networks, gradient flow, gradient descent, reduced dynamics, measurements, the
closed forms and the greedy diagnostics/trainer. A wrong annotation (a dimension name shared
where shapes differ, a batch axis not allowed for, a return type that lies) fails here.

It runs in a subprocess because the hook instruments the package at import: the rest of the
suite deliberately passes wrongly typed values to check the package's own one-line errors,
which a type checker would intercept first.
"""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import jaxtyping
    # an int is a valid float (PEP 484's numeric tower)
    checker = "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"
    with jaxtyping.install_import_hook("multimodal_dln", checker):
        import multimodal_dln as mdln
    import jax, jax.numpy as jnp
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    th = mdln.theory

    stats = jax.vmap(mdln.Statistics.toy)(jnp.array([0.0, 0.5]), jnp.array([2.0, 2.0]))
    one = mdln.Statistics.toy(0.5, 2.0)
    rnd = mdln.Statistics.random(jax.random.key(0), 3, 2)
    keys = jax.random.split(jax.random.key(1), 2)

    def make(depth, lf, init="random", **kw):
        return jax.vmap(lambda k: mdln.FusionDLN.init(
            k, depth=depth, fusion_layer=lf, width=4, d_A=1, d_B=1, init_scale=1e-4,
            init=init, **kw))(keys)

    nets = make(2, 2)
    traj = mdln.gradient_flow(nets, stats)
    m = mdln.measure(traj, stats)
    assert m.success.all(), m.failure_reasons()
    deep = make(3, 2, init="aligned", align_to=one)
    mdln.measure(mdln.gradient_flow(deep, stats), stats)
    gd = mdln.gradient_descent(nets, stats, lr=0.05, n_steps=4000)
    mdln.measure(gd, stats)
    red = mdln.reduced_flow(one, depth=3, fusion_layer=2, init_scale=0.05)
    mdln.measure(red, one)
    net_r = mdln.FusionDLN.init(jax.random.key(2), depth=2, fusion_layer=1, width=4, d_A=3,
                                d_B=2, init_scale=1e-3)
    mdln.measure(mdln.gradient_flow(net_r, rnd), rnd)
    data = mdln.sample(jax.random.key(3), one, 64)
    mdln.sample_loss(jax.tree.map(lambda a: a[0], nets), data)
    relu = mdln.FusionDLN.init(jax.random.key(4), depth=2, fusion_layer=2, width=4, d_A=1,
                               d_B=1, init_scale=1e-2, activation="relu")
    mdln.linear_readout(relu, data)

    th.time_ratio_toy(0.5, 2.0); th.time_ratio_two_layer(stats); th.misattribution(stats)
    th.time_ratio_deep_toy(4, 3, 0.2, 2.0, 0.05); th.phase_times_two_layer(stats, 1e-4)
    th.fixed_point_weights(stats, "A"); th.plateau_loss(rnd)
    th.time_ratio_toy_network(4, 3, 0.2, 2.0, 0.05)

    net1 = jax.tree.map(lambda a: a[0], nets)
    mdln.greedy.utilization(net1, one)
    run = mdln.greedy.train(net1, one, lr=0.04, n_steps=200, algorithm="balanced")
    print("ok", float(m.time_ratio[1]), int(run.mode.shape[0]) if hasattr(run, "mode") else 0)
    """
)


@pytest.mark.slow
def test_main_paths_satisfy_their_annotations():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("ok"), proc.stdout
