"""Scaling of the batched solve: members, width, depth; compile time; no recompiles on values.

Every solve is bounded to exactly K = `max_steps` steps (members start at a tiny init, so none
converges before; the solver then stops with `max_steps_reached`, which is what we want
here), so time per member-step = wall / (batch x K) is measured on equal work, and no size can
run away in time.

- members 1 -> 16384 (two-layer late fusion, width 16, P = 64): powers of 16 in the full
  mode (1, 16, 256, 4096, 16384), since every size is a new compilation (7-15 s here);
- width 16, 128, 512 (deep fusion L = 4, L_f = 3, 1 member; P grows ~ 4 W^2);
- depth 2 and 8 (late fusion L_f = L, width 16, 16 members, so L = 2 is the members sweep's
  16-member structure, compiled once; init 1e-2, 0.3 for L > 4 so that
  the deepest nets do not sit on a plateau so flat that the controller jumps to t_max);
- compile time per structure = first call - second call (each shape is a new structure);
- recompiles: the 16-member structure (the first size above 1) solved again on a batch built
  with other rho / ratio / init values but the same shapes, compilations counted with
  `jax_log_compiles`, and timed against a repeat call.
"""

from __future__ import annotations

import numpy as np

import multimodal_dln as mdln

from . import _common as C

NAME = "scaling"
DESCRIPTION = "time per member-step vs members / width / depth; compile time; no-recompile check"


def settings(mode: str) -> dict:
    if mode == "tiny":
        # Shapes shared with the other benchmarks' tiny runs (fewer compilations in the smoke test).
        return dict(
            K=16,
            n_save=16,
            members=[1, 4],
            widths=[4],
            width_members=4,
            depths=[2],
            depth_width=16,  # with 4 members: the members sweep's 4-member solve
            depth_members=4,
            repeats=1,
            optional={},
        )
    if mode == "quick":
        return dict(
            K=24,
            n_save=16,
            members=[1, 16, 256, 1024],
            widths=[16, 128],
            width_members=1,
            depths=[2, 8],
            depth_width=16,
            depth_members=16,
            repeats=1,
            optional={},
        )
    # Every size is a new shape, i.e. a compilation of ~7-25 s on the loaded 2-core CPU: the full
    # mode keeps to 9 structures (members: powers of 16), of which those in `optional` run only
    # when the time budget allows.
    return dict(
        K=24,
        n_save=16,
        members=[1, 16, 256, 4096, 16384],
        widths=[16, 128, 512],
        width_members=1,
        depths=[2, 8],
        depth_width=16,
        depth_members=16,
        repeats=1,
        optional={"members": [256, 4096], "widths": [128]},
    )


def _batch(
    B, *, depth, fusion_layer, width, init, init_scale, seed0=0, rho_range=(-0.5, 0.5), ratio=2.0
):
    rng = np.random.default_rng(seed0)
    rho = rng.uniform(*rho_range, B)
    ratios = np.full(B, ratio)
    return C.toy_batch(
        rho,
        ratios,
        seed0 + np.arange(B),
        np.full(B, init_scale),
        depth=depth,
        fusion_layer=fusion_layer,
        width=width,
        init=init,
    )


def measure_structure(B, K, n_save, repeats, **kw) -> dict:
    nets, stats = _batch(B, **kw)
    P = C.n_params(nets)

    def solve():
        return C.block(mdln.gradient_flow(nets, stats, n_save=n_save, max_steps=K, t_max=1e6))

    C.log(f"  {kw['depth']}/{kw['fusion_layer']} width {kw['width']}, {B} members: compile + run")
    cold = C.time_call(solve, repeats=1)
    warm = C.time_call(solve, repeats=repeats)
    steps = np.asarray(warm["result"].num_steps)
    work = int(steps.max()) * B
    return dict(
        members=B,
        params_per_member=P,
        steps_max=int(steps.max()),
        steps_min=int(steps.min()),
        cold_s=cold["wall_s"],
        warm_s=warm["wall_s"],
        warm_cpu_s=warm["cpu_s"],
        warm_all_s=warm["wall_all_s"],
        compile_s=max(cold["wall_s"] - warm["wall_s"], 0.0),
        time_per_member_step_s=warm["wall_s"] / work,
        cpu_per_member_step_s=warm["cpu_s"] / work,
        time_per_batched_step_s=warm["wall_s"] / max(int(steps.max()), 1),
        bytes_model_per_member_step=250 * P,
        implied_bandwidth_GBs=250 * P * work / warm["wall_s"] / 1e9,
    )


MEMBERS_KW = dict(depth=2, fusion_layer=2, width=16, init="entrywise", init_scale=1e-9)


def recompile_check(s) -> dict:
    """Same shapes as an already-compiled members-sweep structure, other values."""
    B = s["members"][1]
    kw = dict(MEMBERS_KW)
    kw.pop("init_scale")
    first_nets, first_stats = _batch(B, init_scale=1e-9, **kw)

    def solve(nets, stats):
        return C.block(
            mdln.gradient_flow(nets, stats, n_save=s["n_save"], max_steps=s["K"], t_max=1e6)
        )

    same = C.time_call(lambda: solve(first_nets, first_stats), repeats=1)
    with C.CompileLog() as log:
        nets, stats = _batch(B, init_scale=1e-4, seed0=1000, rho_range=(-0.9, 0.9), ratio=3.0, **kw)
        new = C.time_call(lambda: solve(nets, stats), repeats=1)
    return dict(
        members=B,
        compiles_with_new_values=log.count,
        compiled=log.entries,
        repeat_call_s=same["wall_s"],
        new_values_call_s=new["wall_s"],
        note="new rho in [-0.9, 0.9], ratio 3, init 1e-4 (was rho in [-0.5, 0.5], ratio 2, "
        "init 1e-9); same shapes; "
        "compilations counted over building the batch and solving",
    )


def run(mode: str = "full") -> dict:
    s = settings(mode)
    K, n_save, rep = s["K"], s["n_save"], s["repeats"]
    opt = s["optional"]

    def sweep_axis(axis, values, make):
        """Mandatory sizes first, then the optional ones while the budget allows; sorted."""
        optional = opt.get(axis, [])
        done = [make(v) for v in values if v not in optional]
        done += [
            make(v)
            for v in values
            if v in optional
            and C.can_afford(25 + C.MINIMUM_S["scaling"] / 2, f"scaling: {axis} = {v}")
        ]
        return sorted(done, key=lambda x: (x["members"], x["params_per_member"]))

    by_members = sweep_axis(
        "members", s["members"], lambda B: measure_structure(B, K, n_save, rep, **MEMBERS_KW)
    )
    by_width = sweep_axis(
        "widths",
        s["widths"],
        lambda W: measure_structure(
            s["width_members"],
            K,
            n_save,
            rep,
            depth=4,
            fusion_layer=3,
            width=W,
            init="random",
            init_scale=1e-2,
        ),
    )
    by_depth = sweep_axis(
        "depths",
        s["depths"],
        lambda L: measure_structure(
            s["depth_members"],
            K,
            n_save,
            rep,
            depth=L,
            fusion_layer=L,
            width=s["depth_width"],
            init="random",
            init_scale=1e-2 if L <= 4 else 0.3,
        ),
    )
    rc = recompile_check(s)

    m0, m1 = by_members[0], by_members[-1]
    rows = [
        C.row(
            f"members {m0['members']} -> {m1['members']}: time per member-step ratio",
            m1["time_per_member_step_s"] / m0["time_per_member_step_s"],
            note=f"{m0['time_per_member_step_s'] * 1e6:.3g} -> "
            f"{m1['time_per_member_step_s'] * 1e6:.3g} us",
        ),
        C.row(
            f"members {m0['members']} -> {m1['members']}: batched-step time ratio",
            m1["time_per_batched_step_s"] / m0["time_per_batched_step_s"],
            note=f"{m1['members'] // m0['members']}x the members",
        ),
    ]
    w0, w1 = by_width[0], by_width[-1]
    rows.append(
        C.row(
            f"width {s['widths'][0]} -> {s['widths'][-1]} (L=4,Lf=3): member-step time ratio",
            w1["time_per_member_step_s"] / w0["time_per_member_step_s"],
            note=f"P ratio {w1['params_per_member'] / w0['params_per_member']:.0f}x",
        )
    )
    d0, d1 = by_depth[0], by_depth[-1]
    rows.append(
        C.row(
            f"depth {s['depths'][0]} -> {s['depths'][-1]} (Lf=L): member-step time ratio",
            d1["time_per_member_step_s"] / d0["time_per_member_step_s"],
            note=f"P ratio {d1['params_per_member'] / d0['params_per_member']:.1f}x",
        )
    )
    comp = [x["compile_s"] for x in by_members + by_width + by_depth if x["compile_s"] > 0.5] or [
        0.0
    ]  # > 0.5: not shared
    rows.append(
        C.row(
            "compile time per structure, max / min",
            max(comp) / max(min(comp), 1e-3),
            note=f"{min(comp):.1f} .. {max(comp):.1f} s",
        )
    )
    rows.append(
        C.row(
            "recompiles when rho/ratio/init values change",
            rc["compiles_with_new_values"],
            unit="",
            goal="0",
            met=rc["compiles_with_new_values"] == 0,
            note=f"call time new/repeat {rc['new_values_call_s'] / rc['repeat_call_s']:.2f}",
        )
    )
    return {
        "rows": rows,
        "details": dict(
            settings=s,
            members=by_members,
            width=by_width,
            depth=by_depth,
            recompile=rc,
            skipped=list(C.BUDGET["skipped"]),
        ),
    }
