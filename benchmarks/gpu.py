"""The GPU-sized solve: deep fusion L = 4, L_f = 3, width 100 (P = 40 300 parameters per
member), 4096 members on a GPU, to convergence, one `gradient_flow` call.

Reports member-steps per second (performed: batch x max steps, which is what the hardware
executes under vmap masking; useful: the sum of per-member steps) and, on a GPU, the implied
fraction of HBM bandwidth with a memory-traffic model of ~250 P bytes per
member-step (6 VF evaluations reading and writing P float64 numbers, plus ~20 fused RK
vector passes). Peak bandwidths: H100 SXM 3.35 TB/s, H200 4.8 TB/s (H100 PCIe 2.0 TB/s).

Runs on any backend: without a GPU it runs the overhead benchmark's deep batch (8 members,
capped at 150 steps; 4 members / 60 steps in --quick; `--members N` to override the count),
so that on a 2-core CPU it takes seconds and shares that benchmark's compilation, and reports
the bandwidth fraction as "not measured (no GPU)", giving the implied GB/s for reference only.
On a GPU the solve is capped at 2000 steps (500 in --quick): the rate is what is measured, and
an uncapped solve of 4096 deep members took over 5 minutes per call on an H100 (one compile run
plus one timed run would not fit a device session).
"""

from __future__ import annotations

import numpy as np

import multimodal_dln as mdln

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


def settings(mode: str, members: int | None) -> dict:
    from .overhead import deep_case

    gpu = C.is_gpu()
    if mode == "tiny":
        # 4 members: the scaling benchmark's tiny width batch (its inputs are built once)
        s = dict(members=4, width=4, n_save=16, max_steps=200_000)
    elif gpu:
        # Capped at 2000 steps: member-steps/s is a rate, and a solve to convergence of 4096
        # deep members (tens of thousands of steps at u0 = 0.1) outlasts a device session.
        s = dict(
            members=4096 if mode == "full" else 1024,
            width=100,
            n_save=256,
            max_steps=2000 if mode == "full" else 500,
        )
    else:
        d = deep_case(mode)
        s = dict(
            members=d["members"], width=d["width"], n_save=d["n_save"], max_steps=d["max_steps"]
        )
    if members is not None:
        s["members"] = int(members)
    s.update(depth=4, fusion_layer=3, init="random", init_scale=0.1, gpu=gpu)
    return s


def run(mode: str = "full", members: int | None = None) -> dict:
    s = settings(mode, members)
    B = s["members"]
    rng = np.random.default_rng(0)  # the overhead benchmark's deep members (same batch on CPU)
    rho = rng.uniform(-0.9, 0.9, B)
    ratio = rng.choice([1.5, 2.0, 2.5, 3.0], B)
    nets, stats = C.toy_batch(
        rho,
        ratio,
        np.arange(B),
        np.full(B, s["init_scale"]),
        depth=s["depth"],
        fusion_layer=s["fusion_layer"],
        width=s["width"],
        init=s["init"],
    )
    P = C.n_params(nets)

    def solve():
        return C.block(
            mdln.gradient_flow(nets, stats, n_save=s["n_save"], max_steps=s["max_steps"])
        )

    with C.CompileLog() as log:
        cold = C.time_call(solve, repeats=1)
    # Off-GPU this batch is the overhead benchmark's: when that ran first in this process the
    # solve is already compiled and the first call is a warm one (saves a long CPU solve).
    warm = cold if not log.big(0.5) else C.time_call(solve, repeats=1)
    traj = warm["result"]
    steps = np.asarray(traj.num_steps)
    performed = int(steps.max()) * B
    useful = int(steps.sum())
    rate = performed / warm["wall_s"]
    useful_rate = useful / warm["wall_s"]
    bw = rate * BYTES_PER_PARAM_STEP * P
    kind = C.env_info()["device_kind"]
    peak_name, peak = peak_bandwidth(kind) if s["gpu"] else (None, None)
    if not s["gpu"]:
        frac, frac_note = None, "not measured (no GPU)"
    elif peak is None:
        frac, frac_note = None, f"unknown peak bandwidth for {kind!r}; implied {bw / 1e9:.0f} GB/s"
    else:
        frac, frac_note = bw / peak, f"{bw / 1e12:.2f} TB/s of {peak / 1e12:.2f} TB/s ({peak_name})"
    rows = [
        C.row(
            f"{B} members: performed member-steps/s",
            rate,
            unit="/s",
            note=f"{kind}; useful {useful_rate:,.0f}/s; P={P}",
        ),
        C.row(
            "useful-work fraction (sum steps / B x max steps)",
            useful / performed,
            unit="%",
            note="step-capped solve: not meaningful" if s["max_steps"] < 200_000 else "",
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
    details = dict(
        settings=s,
        params_per_member=P,
        converged=int(np.asarray(traj.converged).sum()),
        device_kind=kind,
        cold=C.strip(cold),
        warm=C.strip(warm),
        steps_max=int(steps.max()),
        steps_mean=float(steps.mean()),
        success=int(np.asarray(traj.success).sum()),
        performed_member_steps=performed,
        useful_member_steps=useful,
        member_steps_per_s=rate,
        useful_member_steps_per_s=useful_rate,
        implied_bytes_per_s=bw,
        bandwidth_fraction=frac,
        bandwidth_note=frac_note,
        peak_bandwidth=peak,
        peak_table=PEAK_BANDWIDTH,
        compile_s=max(cold["wall_s"] - warm["wall_s"], 0.0),
    )
    return {"rows": rows, "details": details}
