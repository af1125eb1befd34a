"""Two processes with `jax.distributed` (multi-controller JAX) on one machine give the results of
one process: a sweep of 10 members (`sweeps.run`, with a store in a folder and a resume) and a
direct `gradient_flow` batch of the same 10 members (whole trajectories), sharded over 4 CPU
devices, 2 per process, and gathered on every process (`multimodal_dln._sharding`).

Each process is a subprocess: the coordinator listens on a free localhost port, each process
sees its own 2 devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`, fixed when JAX
starts), and the gather runs over JAX's CPU collectives (gloo). The single-process reference
runs in the test process (1 device, no sharding) while the two processes run. Time ratios
agree to 1e-9 relative (each device vmaps a smaller batch, which can round differently in the
last bits: tests/test_sharding.py); status and step counts exactly.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

import multimodal_dln as mdln
from multimodal_dln import sweeps

TIMEOUT_S = 300  # measured: well under 2 minutes on 2 cores

SWEEP = dict(depth=3, fusion_layer=2, width=4, init_scale=1e-3,
             rho=[-0.6, -0.3, 0.0, 0.3, 0.6], seed=[0, 1])  # fmt: skip

BATCH = textwrap.dedent(
    """
    # The sweep's own 10 members (10 is not a multiple of 4 devices: exercises padding), so
    # that the batch compiles to the sweep's solve (compilation is most of this test's time).
    (batch,) = sweeps.inputs(sweeps.product(**SWEEP))
    flow_args = dict(n_save=batch.structure["n_save"], rtol=batch.structure["rtol"])
    """
)

START = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import jax
    process_id, port, folder = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id)
    import numpy as np
    import multimodal_dln as mdln
    from multimodal_dln import sweeps
    assert (jax.process_count(), jax.local_device_count(), jax.device_count()) == (2, 2, 4)
    sw = sweeps.product(**SWEEP)
    df = sweeps.run(sw, out=folder / "sweep", progress=False)
    again = sweeps.run(sw, out=folder / "sweep", resume=True, progress=False)  # nothing to do
    df.to_pickle(folder / f"sweep{process_id}.pkl")
    again.to_pickle(folder / f"resumed{process_id}.pkl")
    """
)

FLOW = textwrap.dedent(
    """
    traj = mdln.gradient_flow(batch.nets, batch.objective, **flow_args)  # all 4 devices
    assert traj.weights.is_fully_addressable, traj.weights.sharding
    m = mdln.measure(traj, batch.stats)
    np.savez(folder / f"flow{process_id}.npz", weights=traj.weights, t_end=traj.t_end,
             status=traj.status, num_steps=traj.num_steps, time_ratio=m.time_ratio)
    print("WORKER_OK")
    """
)

WORKER = START + BATCH + FLOW


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(process_id: int, port: int, folder: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_"))}
    flags = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags + ["--xla_force_host_platform_device_count=2"])
    env["JAX_PLATFORMS"] = "cpu"
    script = f"SWEEP = {SWEEP!r}\n" + WORKER
    log = folder / f"log{process_id}.txt"
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(process_id), str(port), str(folder)],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def _wait(procs, folder: Path, deadline: float) -> None:
    """Wait for both processes; stop the other when one fails (it would wait in a collective)
    or at the deadline; fail with the tail of each process's output."""
    while any(p.poll() is None for p in procs):
        failed = any(p.poll() not in (None, 0) for p in procs)
        if failed or time.monotonic() > deadline:
            time.sleep(2.0)  # let the other report its side
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            break
        time.sleep(0.2)
    logs = [(folder / f"log{i}.txt").read_text() for i in range(len(procs))]
    ok = all(p.returncode == 0 and "WORKER_OK" in log for p, log in zip(procs, logs))
    report = "\n".join(
        f"--- process {i} (exit {p.returncode}) ---\n{log[-3000:]}"
        for i, (p, log) in enumerate(zip(procs, logs))
    )
    assert ok, f"the two processes did not finish within {TIMEOUT_S} s or failed:\n{report}"


def _single_process_reference():
    df = sweeps.run(sweeps.product(**SWEEP), shard=False, progress=False)
    namespace = {"sweeps": sweeps, "SWEEP": SWEEP}
    exec(BATCH, namespace)
    batch, flow_args = namespace["batch"], namespace["flow_args"]
    traj = mdln.gradient_flow(batch.nets, batch.objective, shard=False, **flow_args)
    flow = {
        "weights": traj.weights, "t_end": traj.t_end, "status": traj.status,
        "num_steps": traj.num_steps, "time_ratio": mdln.measure(traj, batch.stats).time_ratio,
    }  # fmt: skip
    return df, {k: np.asarray(v) for k, v in flow.items()}


def _assert_same_sweep(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert len(got) == len(ref) == 10
    assert list(got.columns) == list(ref.columns)
    np.testing.assert_allclose(got["time_ratio"], ref["time_ratio"], rtol=1e-9, atol=0.0)
    assert ref["success"].all()
    assert (got["status"] == ref["status"]).all(), (got, ref)
    assert (got["num_steps"] == ref["num_steps"]).all(), (got, ref)
    np.testing.assert_array_equal(got["rho"], ref["rho"])
    np.testing.assert_array_equal(got["seed"], ref["seed"])


def test_two_processes_give_the_single_process_results(tmp_path):
    port = _free_port()
    start = time.monotonic()
    procs = [_launch(i, port, tmp_path) for i in range(2)]
    try:
        ref_df, ref_flow = _single_process_reference()
    finally:
        _wait(procs, tmp_path, start + TIMEOUT_S)
    for i in range(2):
        _assert_same_sweep(pd.read_pickle(tmp_path / f"sweep{i}.pkl"), ref_df)
        _assert_same_sweep(pd.read_pickle(tmp_path / f"resumed{i}.pkl"), ref_df)
        flow = np.load(tmp_path / f"flow{i}.npz")
        for key in ("weights", "t_end", "time_ratio"):
            np.testing.assert_allclose(flow[key], ref_flow[key], rtol=1e-9, atol=1e-15)
        for key in ("status", "num_steps"):
            np.testing.assert_array_equal(flow[key], ref_flow[key])
    # Process 0 alone wrote the folder: each member once (process 1 writing too would have
    # been refused by the store's lock, or doubled the rows).
    _assert_same_sweep(sweeps.load(tmp_path / "sweep"), ref_df)
