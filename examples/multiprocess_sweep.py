"""One sweep run by several processes with `jax.distributed` (multi-controller JAX).

Every process runs this same script (the same sweep: members are built deterministically, so
every process holds the same inputs); the batch of each chunk is split over the devices of all
processes, and every process gets every result. Process 0 alone writes the folder `--out`
and prints the table.

Two processes on one machine, two CPU devices each (the README, "Several processes"):

    export XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu
    MDLN_PROCESS_ID=0 python examples/multiprocess_sweep.py --coordinator 127.0.0.1:12355 &
    MDLN_PROCESS_ID=1 python examples/multiprocess_sweep.py --coordinator 127.0.0.1:12355
    wait

On a cluster, one process per host, started by the scheduler; with no `--coordinator`,
`jax.distributed.initialize()` reads the coordinator, process count and id from the
scheduler's environment (SLURM, Open MPI, Kubernetes, Cloud TPU):

    srun --nodes=2 --ntasks-per-node=1 python examples/multiprocess_sweep.py --out runs/lf
"""

import argparse
import os

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="host:port of process 0 (default: from the "
                        "cluster scheduler's environment)")  # fmt: skip
    parser.add_argument("--num-processes", type=int,
                        default=int(os.environ.get("MDLN_NUM_PROCESSES", "2")))  # fmt: skip
    parser.add_argument("--process-id", type=int,
                        default=int(os.environ.get("MDLN_PROCESS_ID", "0")))  # fmt: skip
    parser.add_argument("--out", help="a folder for results.csv (written by process 0)")
    args = parser.parse_args()
    if args.coordinator:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    else:
        jax.distributed.initialize()  # SLURM & co.: everything from the environment

    from multimodal_dln import sweeps  # after initialize: before anything runs on a device

    sweep = sweeps.product(depth=3, fusion_layer=[1, 2, 3], width=4, init_scale=1e-3,
                           rho=[-0.6, -0.3, 0.0, 0.3, 0.6])  # fmt: skip
    df = sweeps.run(sweep, out=args.out, progress=False)
    if jax.process_index() == 0:
        print(f"{jax.process_count()} processes, {jax.device_count()} devices")
        print(df[["fusion_layer", "rho", "time_ratio", "theory_time_ratio", "status"]])


if __name__ == "__main__":
    main()
