"""float32 vs float64: speed and the accuracy cost on the time ratio t_B / t_A.

Toy two-layer late fusion (width 100, per-entry init, rho ~ U[-0.9, 0.9], ratio in
{1.5, 2, 2.5, 3}), solved with `gradient_flow(dtype=...)` at several init scales. Each dtype is
run with the default rtol 1e-8 (below float32's machine epsilon 1.2e-7, so in float32 the
step-size controller asks for more than the arithmetic can give) and with rtol 1e-5 (a
float32-sized tolerance; the speed ratio at equal rtol is the like-for-like one). Accuracy:
|time ratio / theory - 1| against `theory.time_ratio_toy` (dominated by the leading-order
theory's own O(1/ln(1/u0)) error), and the dtype's own cost, |ratio_f32 / ratio_f64 - 1|
member by member at the same rtol.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import multimodal_dln as mdln

from . import _common as C

NAME = "dtype"
DESCRIPTION = "float32 vs float64: speed ratio and time-ratio error vs theory"


def settings(mode: str) -> dict:
    if mode == "tiny":
        # 4 members of width 16, n_save 16: the batch of the other tiny runs (compiled once)
        return dict(members=4, width=16, inits=[1e-3], n_save=16, repeats=1)
    if mode == "quick":
        return dict(members=32, width=100, inits=[1e-3, 1e-6], n_save=256, repeats=1)
    return dict(members=32, width=100, inits=[1e-3, 1e-6, 1e-9], n_save=256, repeats=1)


VARIANTS = (
    ("float64", jnp.float64, {}),
    ("float32", jnp.float32, {}),
    ("float64 rtol=1e-5", jnp.float64, {"rtol": 1e-5}),
    ("float32 rtol=1e-5", jnp.float32, {"rtol": 1e-5}),
)
PAIRS = (("float32", "float64"), ("float32 rtol=1e-5", "float64 rtol=1e-5"))


def run(mode: str = "full") -> dict:
    s = settings(mode)
    B = s["members"]
    rng = np.random.default_rng(7)
    rho = rng.uniform(-0.9, 0.9, B)
    ratio = rng.choice([1.5, 2.0, 2.5, 3.0], B)
    theory = np.asarray(mdln.theory.time_ratio_toy(rho, ratio))
    out = {}
    for j, u0 in enumerate(s["inits"]):
        if j >= 2 and not C.can_afford(20, f"dtype: init {u0:g}"):
            continue
        nets, stats = C.toy_batch(
            rho,
            ratio,
            np.arange(B),
            np.full(B, u0),
            depth=2,
            fusion_layer=2,
            width=s["width"],
            init="entrywise",
        )
        per = {}
        for label, dt, extra in VARIANTS:

            def solve(dt=dt, extra=extra):
                traj = mdln.gradient_flow(nets, stats, n_save=s["n_save"], dtype=dt, **extra)
                return C.block((traj, mdln.measure(traj, stats)))

            if u0 == s["inits"][0]:
                C.log(f"  {label}: compile + run")
                C.time_call(solve, repeats=1)  # compile (once per variant; later inits reuse it)
            t = C.time_call(solve, repeats=s["repeats"])
            traj, m = t["result"]
            ok = np.asarray(m.success)
            per[label] = dict(
                wall_s=t["wall_s"],
                cpu_s=t["cpu_s"],
                wall_all_s=t["wall_all_s"],
                steps_max=int(np.asarray(traj.num_steps).max()),
                steps_mean=float(np.asarray(traj.num_steps).mean()),
                success=int(ok.sum()),
                accuracy=C.rel_err_stats(m.time_ratio, theory, ok),
                ts_dtype=str(traj.ts.dtype),
                time_ratio=np.asarray(m.time_ratio, dtype=float),
                ok=ok,
            )
        for a, b in PAIRS:
            both = per[a]["ok"] & per[b]["ok"]
            per[a]["vs_" + b] = C.rel_err_stats(per[a]["time_ratio"], per[b]["time_ratio"], both)
        out[f"{u0:g}"] = per

    rows = []
    for u0, per in out.items():
        for a, b in PAIRS:
            f, g = per[a], per[b]
            rows.append(
                C.row(
                    f"init {u0}: speed {a} / {b}",
                    g["wall_s"] / f["wall_s"],
                    note=f"cpu {g['cpu_s'] / f['cpu_s']:.2f}x; steps {f['steps_max']} vs "
                    f"{g['steps_max']}; ok {f['success']}/{B}",
                )
            )
            e = f["vs_" + b]
            rows.append(
                C.row(
                    f"init {u0}: {a} vs {b}, median |ratio32/ratio64-1|",
                    e["median"],
                    unit="%",
                    note=f"max {e['max'] * 100:.2g} %"
                    if e["max"] is not None
                    else "no successful member",
                )
            )
        for label in ("float64", "float32 rtol=1e-5"):
            a = per[label]["accuracy"]
            rows.append(
                C.row(
                    f"init {u0}: {label} median |ratio/theory-1|",
                    a["median"],
                    unit="%",
                    note=f"max {a['max'] * 100:.2f} %; ok {per[label]['success']}/{B}"
                    if a["max"] is not None
                    else "no successful member",
                )
            )
    return {
        "rows": rows,
        "details": dict(settings=s, rho=rho, ratio=ratio, theory=theory, results=out),
    }
