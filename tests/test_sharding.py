"""The sharded path (jax.shard_map over a 1-D device mesh) on 4 fake CPU devices gives results
identical to the single-device run up to floating-point reassociation: each device vmaps a
smaller batch (2 members here instead of 5), and XLA's vectorized arithmetic for a different
batch size can round differently in the last bits (measured: bit-identical for this batch on
this CPU; 2e-11 relative in the converged tail with 3 members per device of 10, so the
tolerance stays 1e-9 relative). Status flags and step counts must be equal. Runs in a
subprocess: the device count is fixed when JAX starts
(XLA_FLAGS=--xla_force_host_platform_device_count=4).

One subprocess serves both tests (JAX's import and every compilation are paid once): each
test's part runs in it separately and reports on its own. The batch of the direct calls is the
sweep's own 5 members (5 is not a multiple of 4: exercises padding), so that they compile to
the very solves the sweep then reuses (compilation is most of this file's time).
"""

import os
import subprocess
import sys
import textwrap

import pytest

SETUP = textwrap.dedent(
    """
    import traceback
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np
    import multimodal_dln as mdln
    from multimodal_dln import sweeps
    assert jax.device_count() == 4, jax.devices()
    sw = sweeps.product(depth=3, fusion_layer=2, width=4, init_scale=1e-3,
                        rho=[-0.6, -0.3, 0.0, 0.3, 0.6])
    (batch,) = sweeps.inputs(sw)
    nets, stats = batch.nets, batch.stats
    assert jax.tree.leaves(nets)[0].shape[0] == 5
    flow_args = dict(n_save=batch.structure["n_save"], rtol=batch.structure["rtol"])
    close = lambda a, b: np.testing.assert_allclose(  # noqa: E731
        np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-15
    )
    """
)

FLOW = textwrap.dedent(
    """
    one = mdln.gradient_flow(nets, stats, shard=False, **flow_args)
    many = mdln.gradient_flow(nets, stats, **flow_args)  # "auto": all 4 devices
    assert len(many.weights.sharding.device_set) == 4, many.weights.sharding
    close(one.weights, many.weights)
    close(one.t_end, many.t_end)
    np.testing.assert_array_equal(np.asarray(one.success), np.asarray(many.success))
    np.testing.assert_array_equal(np.asarray(one.num_steps), np.asarray(many.num_steps))
    m1, m4 = mdln.measure(one, stats), mdln.measure(many, stats)
    close(m1.time_ratio, m4.time_ratio)
    shared = mdln.gradient_flow(nets, mdln.Statistics.toy(0.3, 2.0), **flow_args)  # shared stats
    ref = mdln.gradient_flow(nets, mdln.Statistics.toy(0.3, 2.0), shard=False, **flow_args)
    close(shared.weights, ref.weights)
    """
)

DESCENT_AND_SWEEP = textwrap.dedent(
    """
    gd1 = mdln.gradient_descent(nets, stats, lr=0.05, n_steps=400, n_save=16, shard=False)
    gd4 = mdln.gradient_descent(nets, stats, lr=0.05, n_steps=400, n_save=16)
    close(gd1.weights, gd4.weights)
    # the sweep engine: chunks rounded up to a multiple of the 4 devices and sharded
    s1, s4 = sweeps.run(sw, shard=False, progress=False), sweeps.run(sw, progress=False)
    close(s1["time_ratio"], s4["time_ratio"])
    assert s1["success"].all() and (s1["status"] == s4["status"]).all(), (s1, s4)
    assert (s1["num_steps"] == s4["num_steps"]).all()
    """
)

PARTS = {"flow": FLOW, "descent_and_sweep": DESCENT_AND_SWEEP}


def _script() -> str:
    """SETUP, then each part in turn; a part's failure is reported and the next part runs."""
    runner = textwrap.dedent(
        """
        for _name, _code in PARTS.items():
            try:
                exec(_code)
            except BaseException:
                print(f"PART {_name} FAILED", flush=True)
                traceback.print_exc(file=sys.stdout)
            else:
                print(f"PART {_name} OK", flush=True)
        """
    )
    return f"import sys\nPARTS = {PARTS!r}\n" + SETUP + runner


@pytest.fixture(scope="module")
def four_devices():
    """The subprocess on 4 fake CPU devices that runs every part; its output."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=4"])
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _script()], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    return proc


def _check(proc, name: str) -> None:
    out = proc.stdout
    assert proc.returncode == 0 and f"PART {name} OK" in out, (
        f"part {name!r} did not pass (exit {proc.returncode}):\n{out[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )


def test_sharded_flow_equals_unsharded_on_four_cpu_devices(four_devices):
    _check(four_devices, "flow")


def test_sharded_descent_and_sweep_equal_unsharded_on_four_cpu_devices(four_devices):
    _check(four_devices, "descent_and_sweep")
