"""The GPU-sized solve: deep fusion L = 4, L_f = 3, width 100 (P = 40 300 parameters per
member), 4096 members on a GPU, to convergence, one `gradient_flow` call.

On a GPU the solve is uncapped (the solver's default budget of 200,000 steps per member and
round) and compacted (`chunk_steps=256`, the whole batch in the pool: finished members leave
between chunks and the rest are repacked at powers of two, `multimodal_dln._compaction`).
Reports member-steps per second (useful: the sum of per-member steps; performed: what the
compacted solve executes, `compacted_work` of the step counts, and what a one-shot vmapped
solve would execute, batch x max steps), and the implied fraction of HBM bandwidth with a
memory-traffic model of ~250 P bytes per performed member-step (6 VF evaluations reading and
writing P float64 numbers, plus ~20 fused RK vector passes). Peak bandwidths: H100 SXM
3.35 TB/s, H200 4.8 TB/s (H100 PCIe 2.0 TB/s). The ratio to a CPU is measured in the same
process: the CPU batch below, solved on the host's CPU (`jax.devices("cpu")`).

Without a GPU it runs the overhead benchmark's deep batch (8 members, capped at 150 steps,
one shot; 4 members / 60 steps in --quick; `--members N` to override the count), so that on a
2-core CPU it takes seconds and shares that benchmark's compilation, and reports the bandwidth
fraction as "not measured (no GPU)", giving the implied GB/s for reference only.
"""

from __future__ import annotations

import jax
import numpy as np

import multimodal_dln as mdln
from multimodal_dln._compaction import compacted_work

from . import _common as C

NAME = "gpu"
DESCRIPTION = (
    "deep-fusion solve (L=4, Lf=3, W=100; 4096 members on GPU): member-steps/s, HBM fraction"
)

PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100": 3.35e12}
BYTES_PER_PARAM_STEP = 250


def peak_bandwidth(device_kind: str) -> tuple[str, float] | tuple[None, None]:
    kind = device_kind.upper()
    for name in ("H200", "H100 PCIE", "H100"):
        if name in kind:
            key = {"H100 PCIE": "H100 PCIe"}.get(name, name)
            return key, PEAK_BANDWIDTH[key]
    return None, None


def settings(mode: str, members: int | None, gpu: bool | None = None) -> dict:
    from .overhead import deep_case

    gpu = C.is_gpu() if gpu is None else gpu
    if mode == "tiny":
        # 4 members: the scaling benchmark's tiny width batch (its inputs are built once)
        s = dict(members=4, width=4, n_save=16, max_steps=200_000, chunk_steps=None)
    elif gpu:
        B = 4096 if mode == "full" else 1024
        s = dict(members=B, width=100, n_save=256, max_steps=200_000, chunk_steps=256)
    else:
        d = deep_case(mode)
        s = dict(
            members=d["members"],
            width=d["width"],
            n_save=d["n_save"],
            max_steps=d["max_steps"],
            chunk_steps=None,
        )
    if members is not None:
        s["members"] = int(members)
    s["pool_size"] = s["members"] if s["chunk_steps"] else None
    s.update(depth=4, fusion_layer=3, init="random", init_scale=0.1, gpu=gpu)
    return s


def _batch(s):
    """The benchmark's members (the overhead benchmark's deep members: the same batch on CPU)."""
    B = s["members"]
    rng = np.random.default_rng(0)
    rho = rng.uniform(-0.9, 0.9, B)
    ratio = rng.choice([1.5, 2.0, 2.5, 3.0], B)
    return C.toy_batch(
        rho,
        ratio,
        np.arange(B),
        np.full(B, s["init_scale"]),
        depth=s["depth"],
        fusion_layer=s["fusion_layer"],
        width=s["width"],
        init=s["init"],
    )


def _measure(s) -> dict:
    """Solve the batch of settings `s` cold (and warm when the budget allows); step counts,
    member-steps and the solve time without compilation."""
    nets, stats = _batch(s)
    B = s["members"]

    def solve():
        return C.block(
            mdln.gradient_flow(
                nets, stats, n_save=s["n_save"], max_steps=s["max_steps"],
                chunk_steps=s["chunk_steps"], pool_size=s["pool_size"],
            )
        )  # fmt: skip

    with C.CompileLog() as log:
        cold = C.time_call(solve, repeats=1)
    warm = None
    if log.big(0.5) and C.can_afford(cold["wall_s"] - log.seconds, "warm GPU solve"):
        warm = C.time_call(solve, repeats=1)
    traj = (warm or cold)["result"]
    steps = np.asarray(traj.num_steps)
    # the solve alone: the warm run, else the cold one less its logged compile time
    solve_s = warm["wall_s"] if warm else max(cold["wall_s"] - log.seconds, 1e-9)
    one_shot = int(steps.max()) * B
    performed = (
        compacted_work(steps, s["chunk_steps"], s["pool_size"]) if s["chunk_steps"] else one_shot
    )
    return dict(
        P=C.n_params(nets),
        steps=steps,
        traj=traj,
        cold=C.strip(cold),
        warm=C.strip(warm) if warm else None,
        compile_log_s=log.seconds,
        compiles=log.count,
        solve_s=solve_s,
        useful=int(steps.sum()),
        performed=performed,
        one_shot=one_shot,
    )


def _cpu_baseline(mode: str) -> dict:
    """The CPU batch of `settings(mode, None, gpu=False)` solved on the host's CPU in this
    process: performed member-steps per second."""
    s = settings(mode, None, gpu=False)
    with jax.default_device(jax.devices("cpu")[0]):
        m = _measure(s)
    return dict(
        settings=s,
        solve_s=m["solve_s"],
        performed_member_steps=m["performed"],
        member_steps_per_s=m["performed"] / m["solve_s"],
        cpu_model=C.env_info()["cpu_model"],
    )


def run(mode: str = "full", members: int | None = None) -> dict:
    s = settings(mode, members)
    m = _measure(s)
    B, P, traj, steps = s["members"], m["P"], m["traj"], m["steps"]
    rate = m["performed"] / m["solve_s"]
    useful_rate = m["useful"] / m["solve_s"]
    bw = rate * BYTES_PER_PARAM_STEP * P
    kind = C.env_info()["device_kind"]
    peak_name, peak = peak_bandwidth(kind) if s["gpu"] else (None, None)
    if not s["gpu"]:
        frac, frac_note = None, "not measured (no GPU)"
    elif peak is None:
        frac, frac_note = None, f"unknown peak bandwidth for {kind!r}; implied {bw / 1e9:.0f} GB/s"
    else:
        frac, frac_note = bw / peak, f"{bw / 1e12:.2f} TB/s of {peak / 1e12:.2f} TB/s ({peak_name})"
    cpu = _cpu_baseline(mode) if s["gpu"] and mode != "tiny" else None
    capped = s["max_steps"] < 200_000
    how = f"compacted, chunks of {s['chunk_steps']}" if s["chunk_steps"] else "one shot"
    rows = [
        C.row(
            f"{B} members: performed member-steps/s",
            rate,
            unit="/s",
            note=f"{kind}; {how}; useful {useful_rate:,.0f}/s; P={P}",
        ),
        C.row(
            "useful-work fraction (sum steps / performed)",
            m["useful"] / m["performed"],
            unit="%",
            note="step-capped solve: not meaningful"
            if capped
            else f"one shot would be {m['useful'] / m['one_shot']:.0%}",
        ),
        C.row(
            "HBM bandwidth fraction (250 P bytes per member-step)",
            frac,
            unit="%",
            goal="40-70 % (estimate)" if s["gpu"] else None,
            met=(frac >= 0.4) if frac is not None else None,
            note=frac_note,
        ),
    ]
    if cpu is not None:
        rows.append(
            C.row(
                "GPU / host CPU, performed member-steps/s (same process)",
                rate / cpu["member_steps_per_s"],
                unit="x",
                note=f"CPU: {cpu['cpu_model']}, {cpu['settings']['members']} members, "
                f"{cpu['member_steps_per_s']:,.0f}/s",
            )
        )
    details = dict(
        settings=s,
        params_per_member=P,
        converged=int(np.asarray(traj.converged).sum()),
        success=int(np.asarray(traj.success).sum()),
        device_kind=kind,
        cold=m["cold"],
        warm=m["warm"],
        compile_log_s=m["compile_log_s"],
        compiles=m["compiles"],
        solve_s=m["solve_s"],
        steps_max=int(steps.max()),
        steps_mean=float(steps.mean()),
        steps_quantiles={q: float(np.quantile(steps, q)) for q in (0.5, 0.9, 0.99)},
        performed_member_steps=m["performed"],
        one_shot_member_steps=m["one_shot"],
        useful_member_steps=m["useful"],
        member_steps_per_s=rate,
        useful_member_steps_per_s=useful_rate,
        implied_bytes_per_s=bw,
        bandwidth_fraction=frac,
        bandwidth_note=frac_note,
        peak_bandwidth=peak,
        peak_table=PEAK_BANDWIDTH,
        cpu_baseline=cpu,
    )
    return {"rows": rows, "details": details}
