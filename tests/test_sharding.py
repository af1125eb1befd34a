"""The sharded path (jax.shard_map over a 1-D device mesh) on 4 fake CPU devices gives results
identical to the single-device run up to floating-point reassociation: each device vmaps a
smaller batch (3 members here instead of 10), and XLA's vectorized arithmetic for a different
batch size can round differently in the last bits (measured: 2e-11 relative in the converged
tail). Status flags and step counts must be equal. Runs in a subprocess: the device count is
fixed when JAX starts (XLA_FLAGS=--xla_force_host_platform_device_count=4)."""

import os
import subprocess
import sys
import textwrap

SETUP = textwrap.dedent(
    """
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np
    import multimodal_dln as mdln
    assert jax.device_count() == 4, jax.devices()
    n = 10  # not a multiple of 4: exercises padding
    stats = jax.vmap(mdln.Statistics.toy)(jnp.linspace(-0.6, 0.6, n), jnp.full(n, 2.0))
    nets = eqx.filter_vmap(lambda k: mdln.FusionDLN.init(
        k, depth=3, fusion_layer=2, width=4, d_A=1, d_B=1, init_scale=1e-3))(
        jax.random.split(jax.random.key(0), n))
    close = lambda a, b: np.testing.assert_allclose(  # noqa: E731
        np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-15
    )
    """
)

FLOW = textwrap.dedent(
    """
    one = mdln.gradient_flow(nets, stats, n_save=32, shard=False)
    many = mdln.gradient_flow(nets, stats, n_save=32)  # "auto": all 4 devices
    assert len(many.weights.sharding.device_set) == 4, many.weights.sharding
    close(one.weights, many.weights)
    close(one.t_end, many.t_end)
    np.testing.assert_array_equal(np.asarray(one.success), np.asarray(many.success))
    np.testing.assert_array_equal(np.asarray(one.num_steps), np.asarray(many.num_steps))
    m1, m4 = mdln.measure(one, stats), mdln.measure(many, stats)
    close(m1.time_ratio, m4.time_ratio)
    shared = mdln.gradient_flow(nets, mdln.Statistics.toy(0.3, 2.0), n_save=32)  # shared stats
    ref = mdln.gradient_flow(nets, mdln.Statistics.toy(0.3, 2.0), n_save=32, shard=False)
    close(shared.weights, ref.weights)
    print("SHARDED_OK")
    """
)

DESCENT_AND_SWEEP = textwrap.dedent(
    """
    gd1 = mdln.gradient_descent(nets, stats, lr=0.05, n_steps=400, n_save=16, shard=False)
    gd4 = mdln.gradient_descent(nets, stats, lr=0.05, n_steps=400, n_save=16)
    close(gd1.weights, gd4.weights)
    # the sweep engine: chunks rounded up to a multiple of the 4 devices and sharded
    from multimodal_dln import sweeps
    sw = sweeps.product(depth=3, fusion_layer=2, width=4, init_scale=1e-3,
                        rho=[-0.6, -0.3, 0.0, 0.3, 0.6])
    s1, s4 = sweeps.run(sw, shard=False, progress=False), sweeps.run(sw, progress=False)
    close(s1["time_ratio"], s4["time_ratio"])
    assert s1["success"].all() and (s1["status"] == s4["status"]).all(), (s1, s4)
    assert (s1["num_steps"] == s4["num_steps"]).all()
    print("SHARDED_OK")
    """
)


def _run_on_four_devices(script: str):
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=4"])
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SETUP + script], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]


def test_sharded_flow_equals_unsharded_on_four_cpu_devices():
    _run_on_four_devices(FLOW)


def test_sharded_descent_and_sweep_equal_unsharded_on_four_cpu_devices():
    _run_on_four_devices(DESCENT_AND_SWEEP)
