"""Solver overhead: a batched solve's wall time over the time its vector-field work would take.

    overhead = T_solve / (N_vf x T_vf)

T_vf is one evaluation of the batched vector field (-grad of the population loss w.r.t. each
member's flat parameter vector, vmapped and jitted: exactly what the engine integrates, rebuilt
from public pieces in `_common.batched_vector_field`), timed with `block_until_ready` over many
repetitions. N_vf = max(num_steps) x 6: a vmapped while loop runs until its slowest member is
done, and Tsit5 (FSAL) evaluates 6 new stages per step, accepted or rejected.

Two variants of the denominator are reported:

- "VF only": N_vf x T_vf, the brief's definition (goal <= 2);
- "all work": adds, per step, the convergence event's loss evaluation (T_loss), and the save
  summaries: n_save x T_summary, where T_summary (W_tot, its jvp along the VF, and the loss, i.e.
  one VF plus a jvp of the readout: about 2-3 VF-equivalents) is timed the same way.

The toy solve is decomposed with plain diffrax solves of the same vector field, tolerances,
horizon and step cap: (i) bare Tsit5 + PID controller (SaveAt(t1) only), (ii) + the engine's
convergence event and save summaries (i.e. the engine's solve rebuilt by hand); per-step
times of (i), (ii) and the engine attribute the overhead to diffrax itself, to the event and
saves, and to the engine's wrapper; these three are timed interleaved, 3 times each, and the
minimum is kept (least disturbed by other jobs). (`min_saves=True` in a case adds a solve
with n_save = 3.) Cases: a toy batch (L = L_f = 2, width 100, 256 members, per-entry init 1e-9)
and a deep one (L = 4, L_f = 3, width 100, authors' random init 0.1; 8 members, P = 40 300
parameters each, so the batch state is 322 400 numbers). Members: rho ~ U[-0.9, 0.9], ratio in
{1.5, 2, 2.5, 3}. To bound the time on a 2-core CPU every solve is capped at `max_steps` steps
(members still running stop there; the overhead is a per-step quantity, so nothing needs to
converge): toy 400 (of ~900 to convergence), deep 150 (of ~1500). Saves counted are those
actually made (save times <= the stop time).
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import multimodal_dln as mdln
from multimodal_dln import _training

from . import _common as C

NAME = "overhead"
DESCRIPTION = "solver overhead = batched solve time / (VF evaluations x batched VF time)"


def deep_case(mode: str) -> dict:
    """The deep batch (shared with the `gpu` benchmark off-GPU, so it compiles once)."""
    if mode == "quick":
        return dict(
            label="deep L=4 Lf=3 W=100 B=4",
            depth=4,
            fusion_layer=3,
            width=100,
            members=4,
            init="random",
            init_scale=0.1,
            n_save=256,
            max_steps=60,
            min_saves=False,
        )
    return dict(
        label="deep L=4 Lf=3 W=100 B=8",
        depth=4,
        fusion_layer=3,
        width=100,
        members=8,
        init="random",
        init_scale=0.1,
        n_save=256,
        max_steps=150,
        min_saves=False,
    )


def cases(mode: str) -> list[dict]:
    if mode == "tiny":
        return [
            dict(
                label="toy",
                depth=2,
                fusion_layer=2,
                width=16,  # 4 members of width 16: the batch of the other tiny runs
                members=4,
                init="entrywise",
                init_scale=1e-3,
                n_save=16,
                max_steps=200_000,
                min_saves=True,
            ),
        ]
    toy = dict(
        label="toy L=2 W=100 B=256",
        depth=2,
        fusion_layer=2,
        width=100,
        members=256,
        init="entrywise",
        init_scale=1e-9,
        n_save=256,
        max_steps=400,
        min_saves=False,
        decompose=True,
    )
    deep = deep_case(mode)
    if mode == "quick":
        toy.update(members=64, label="toy L=2 W=100 B=64", max_steps=200)
    return [toy, deep]


def members(case: dict):
    B = case["members"]
    rng = np.random.default_rng(0)
    rho = rng.uniform(-0.9, 0.9, B)
    ratio = rng.choice([1.5, 2.0, 2.5, 3.0], B)
    return rho, ratio, np.arange(B), np.full(B, case["init_scale"])


def decomposition(nets, stats, flat, vf, loss, summary, case, engine_solve, repeats=3) -> dict:
    """Per-step time of plain diffrax solves with the engine's VF, adding its pieces one by one,
    and of the engine's own solve: interleaved repeats, minimum of each (robust to other jobs)."""
    h = np.asarray(eqx.filter_vmap(_training.default_horizon)(nets, stats))
    params = eqx.filter(nets, eqx.is_array)
    rms = jnp.stack(
        [jnp.sqrt(jnp.mean(a**2, axis=tuple(range(1, a.ndim)))) for a in jax.tree.leaves(params)]
    )
    atol = 1e-6 * jnp.min(rms, axis=0)
    l_star = jax.vmap(lambda s: s.min_loss())(stats)
    t1 = jnp.asarray(h)
    vf1, loss1, sum1 = vf.one, loss.one, summary.one

    def make(with_event, with_saves):
        def one(y0, s, t1, atol, ls):
            term = diffrax.ODETerm(lambda t, y, a: vf1(y, s))
            gap0 = loss1(y0, s) - ls
            event = (
                diffrax.Event(lambda t, y, args, **kw: loss1(y, s) - ls <= 1e-6 * gap0)
                if with_event
                else None
            )
            if with_saves:
                ts = mdln.save_grid(t1, case["n_save"])
                saveat = diffrax.SaveAt(
                    subs=[
                        diffrax.SubSaveAt(ts=ts, fn=lambda t, y, a: sum1(y, s)),
                        diffrax.SubSaveAt(t1=True),
                    ]
                )
            else:
                saveat = diffrax.SaveAt(t1=True)
            sol = diffrax.diffeqsolve(
                term,
                diffrax.Tsit5(),
                t0=0.0,
                t1=t1,
                dt0=None,
                y0=y0,
                saveat=saveat,
                stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=atol),
                event=event,
                max_steps=case["max_steps"],
                throw=False,
                adjoint=diffrax.ForwardMode(),
            )
            return sol.stats["num_steps"]

        return jax.jit(jax.vmap(one))

    calls = {}
    for label, ev, sv in (("bare", False, False), ("event_saves", True, True)):
        fn = make(ev, sv)
        C.log(f"  plain diffrax ({label}): compile + run")
        calls[label] = lambda fn=fn: np.asarray(C.block(fn(flat, stats, t1, atol, l_star)))
        calls[label]()
    calls["engine"] = lambda: np.asarray(engine_solve().num_steps)
    times = {k: [] for k in calls}
    steps = {}
    for _ in range(repeats):
        for k, f in calls.items():
            t = C.time_call(f, repeats=1)
            times[k].append((t["wall_s"], t["cpu_s"]))
            steps[k] = int(t["result"].max())
    out = {}
    for k, ts in times.items():
        w, c = min(x[0] for x in ts), min(x[1] for x in ts)
        out[k] = dict(
            wall_s=w,
            cpu_s=c,
            wall_all_s=[x[0] for x in ts],
            steps_max=steps[k],
            per_step_s=w / steps[k],
            per_step_cpu_s=c / steps[k],
        )
    return out


def run_case(case: dict, repeats: int) -> dict:
    rho, ratio, seed, u0 = members(case)
    nets, stats = C.toy_batch(
        rho,
        ratio,
        seed,
        u0,
        depth=case["depth"],
        fusion_layer=case["fusion_layer"],
        width=case["width"],
        init=case["init"],
    )
    P = C.n_params(nets)
    flat, vf, loss, summary = C.batched_vector_field(nets, stats)
    t_vf = C.time_per_call(lambda: C.block(vf(flat, stats)))
    t_loss = C.time_per_call(lambda: C.block(loss(flat, stats)))
    t_sum = C.time_per_call(lambda: C.block(summary(flat, stats)))

    out = {}
    variants = [("default", case["n_save"])] + ([("min_saves", 3)] if case["min_saves"] else [])
    for label, n_save in variants:

        def solve(n_save=n_save):
            return C.block(
                mdln.gradient_flow(nets, stats, n_save=n_save, max_steps=case["max_steps"])
            )

        C.log(f"  {case['label']}, n_save={n_save}: compile + run")
        cold = C.time_call(solve, repeats=1)
        warm = C.time_call(solve, repeats=repeats)
        traj = warm["result"]
        steps = np.asarray(traj.num_steps)
        saves = int(np.max(np.sum(np.asarray(traj.ts) <= np.asarray(traj.t_end)[:, None], axis=1)))
        n_vf = int(steps.max()) * 6
        vf_only = n_vf * t_vf["wall_s"]
        all_work = vf_only + int(steps.max()) * t_loss["wall_s"] + saves * t_sum["wall_s"]
        vf_only_cpu = n_vf * t_vf["cpu_s"]
        all_work_cpu = vf_only_cpu + int(steps.max()) * t_loss["cpu_s"] + saves * t_sum["cpu_s"]
        out[label] = dict(
            n_save=n_save,
            saves_made=saves,
            converged=int(np.asarray(traj.converged).sum()),
            cold=C.strip(cold),
            warm=C.strip(warm),
            steps_max=int(steps.max()),
            steps_mean=float(steps.mean()),
            n_vf=n_vf,
            ideal_vf_only_s=vf_only,
            ideal_all_work_s=all_work,
            overhead_vf_only=warm["wall_s"] / vf_only,
            overhead_all_work=warm["wall_s"] / all_work,
            overhead_vf_only_cpu=warm["cpu_s"] / vf_only_cpu,
            overhead_all_work_cpu=warm["cpu_s"] / all_work_cpu,
            time_per_batched_step_s=warm["wall_s"] / int(steps.max()),
            time_per_member_step_s=warm["wall_s"] / (int(steps.max()) * case["members"]),
            success=int(np.asarray(traj.success).sum()),
        )
    dec = None
    if case.get("decompose") and C.can_afford(60 + 50, "overhead: plain-diffrax decomposition"):

        def engine_solve():
            return C.block(
                mdln.gradient_flow(nets, stats, n_save=case["n_save"], max_steps=case["max_steps"])
            )

        dec = decomposition(
            nets,
            stats,
            flat,
            vf,
            loss,
            summary,
            case,
            engine_solve,
            repeats=1 if case["members"] <= 4 else 3,
        )
        six = 6 * t_vf["wall_s"]
        dec["per_step_in_units_of_6_vf"] = {
            k: v["per_step_s"] / six
            for k, v in dec.items()
            if isinstance(v, dict) and "per_step_s" in v
        }
    return dict(
        case=case,
        params_per_member=P,
        t_vf=t_vf,
        t_loss=t_loss,
        t_summary=t_sum,
        summary_in_vf_equivalents=t_sum["wall_s"] / t_vf["wall_s"],
        solves=out,
        decomposition=dec,
    )


def run(mode: str = "full") -> dict:
    repeats = 1
    results = [run_case(c, repeats) for c in cases(mode)]
    rows = []
    for r in results:
        d = r["solves"]["default"]
        lab = r["case"]["label"]
        rows.append(
            C.row(
                f"{lab}: overhead, solve / (6 max_steps VF)",
                d["overhead_vf_only"],
                goal="<= 2",
                met=d["overhead_vf_only"] <= 2,
                note=f"cpu {d['overhead_vf_only_cpu']:.2f}x; {d['steps_max']} steps, "
                f"T_vf={r['t_vf']['wall_s'] * 1e3:.3g} ms",
            )
        )
        rows.append(
            C.row(
                f"{lab}: overhead incl. event + save work",
                d["overhead_all_work"],
                goal="<= 2",
                met=d["overhead_all_work"] <= 2,
                note=f"cpu {d['overhead_all_work_cpu']:.2f}x; {d['saves_made']} saves x "
                f"{r['summary_in_vf_equivalents']:.1f} VF-equiv.",
            )
        )
        if "min_saves" in r["solves"]:
            m = r["solves"]["min_saves"]
            rows.append(
                C.row(
                    f"{lab}: overhead with n_save=3, VF only",
                    m["overhead_vf_only"],
                    goal="<= 2",
                    met=m["overhead_vf_only"] <= 2,
                    note=f"cpu {m['overhead_vf_only_cpu']:.2f}x",
                )
            )
            rows.append(
                C.row(
                    f"{lab}: solve time n_save={d['n_save']} / n_save=3",
                    d["warm"]["wall_s"] / m["warm"]["wall_s"],
                    note=f"cpu {d['warm']['cpu_s'] / m['warm']['cpu_s']:.2f}x; work model "
                    f"{(d['ideal_all_work_s'] / m['ideal_all_work_s']):.2f}x",
                )
            )
        dec = r["decomposition"]
        if dec is not None:
            u = dec["per_step_in_units_of_6_vf"]
            for k, label in (
                ("bare", "plain diffrax Tsit5+PID"),
                ("event_saves", "+ event + save summaries"),
                ("engine", "engine (gradient_flow)"),
            ):
                rows.append(
                    C.row(
                        f"{lab}: per-step time / 6 VF, {label}",
                        u[k],
                        note=f"{dec[k]['steps_max']} steps",
                    )
                )
    return {"rows": rows, "details": {"cases": results}}
