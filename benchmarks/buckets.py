"""Useful-work fraction under vmap, and what buckets (`gradient_flow(buckets=k, cost=...)`) and
compaction (`gradient_flow(chunk_steps=K, pool_size=P)`) recover.

A vmapped solve runs until its slowest member is done; finished members are masked and their
compute is wasted (diffrax's `vmap(diffeqsolve)` steps every member until the last
is done). For a heterogeneous toy batch (rho ~ U[-0.9, 0.9],
ratio ~ U[1.2, 3], init ~ log-U[1e-9, 1e-3], two-layer late fusion, width 32):

    useful fraction = sum_i steps_i / sum_buckets (bucket size x max steps in the bucket)

(padding members of the last bucket count as waste). Members are independent, so a member's
step count does not depend on its bucket: the fraction of any grouping is computed from the
one-bucket run's per-member steps (for k = 1, 2, 4, 8, 16), and checked against the timed
bucketed runs' own step counts. Every bucket size is a new compilation, so to fit the time
budget only k in `timed_ks` (1, 4, 16 in the full mode) are timed.

Compaction needs no predictor: members run `pool` at a time in chunks of K steps, finished
ones replaced by waiting ones (`multimodal_dln._compaction`); its fraction is
`compacted_work`'s count from the same per-member steps, and the timed compacted runs are
checked to take exactly the one-shot's steps and give its time ratios bit for bit. Its first
call compiles a start, a chunk per pool size (about 4) and a finish: the first-call ratio
says what that costs in a cold process, the second-call ratio what a warm one (the
persistent compilation cache, on by default) gains.
Groupings: `cost` = the theory-predicted duration t_B = t_A x time ratio with
t_A = ln(1/u0) / s_A (`learning_time_two_layer x time_ratio_toy`), the engine's default
(`cost=None`: its horizon estimate), a random order, and the oracle (sorted by the actual
steps; fraction only). Wall time of each bucketed call is reported relative to one bucket.
"""

from __future__ import annotations

import numpy as np

import multimodal_dln as mdln
from multimodal_dln._compaction import compacted_work

from . import _common as C

NAME = "buckets"
DESCRIPTION = "useful-work fraction under vmap and the effect of buckets=k by predicted duration"


def settings(mode: str) -> dict:
    if mode == "tiny":
        # 4 members of width 16: the batch shape of the other tiny runs (compiled once)
        return dict(members=4, width=16, ks=[1, 2], timed_ks=[1, 2], n_save=16, repeats=1,
                    compaction=[(16, 2)])  # fmt: skip
    if mode == "quick":
        return dict(
            members=128, width=32, ks=[1, 2, 4, 8, 16], timed_ks=[1, 4], n_save=64, repeats=1,
            compaction=[(16, 32)],
        )  # fmt: skip
    return dict(
        members=256, width=32, ks=[1, 2, 4, 8, 16], timed_ks=[1, 4, 16], n_save=64, repeats=1,
        compaction=[(16, 64), (32, 64)],
    )  # fmt: skip


def useful_fraction(steps: np.ndarray, cost: np.ndarray, k: int) -> float:
    """The grouping `gradient_flow` makes: stable argsort of cost, k consecutive groups of
    ceil(B / k) members, the last padded."""
    B = steps.size
    order = np.argsort(cost, kind="stable")
    size = -(-B // k)
    done = 0
    for start in range(0, B, size):
        done += size * int(steps[order[start : start + size]].max())
    return float(steps.sum() / done)


def run(mode: str = "full") -> dict:
    s = settings(mode)
    B = s["members"]
    rng = np.random.default_rng(2024)
    rho = rng.uniform(-0.9, 0.9, B)
    ratio = rng.uniform(1.2, 3.0, B)
    u0 = np.exp(rng.uniform(np.log(1e-9), np.log(1e-3), B))
    nets, stats = C.toy_batch(
        rho, ratio, np.arange(B), u0, depth=2, fusion_layer=2, width=s["width"], init="entrywise"
    )
    costs = {
        "theory": np.asarray(
            mdln.theory.learning_time_two_layer(stats, u0) * mdln.theory.time_ratio_toy(rho, ratio)
        ),
        "default": None,
        "random": rng.permutation(B).astype(float),
    }

    def solve(k, cost):
        return C.block(mdln.gradient_flow(nets, stats, n_save=s["n_save"], buckets=k, cost=cost))

    first = C.time_call(lambda: solve(1, None), repeats=1)  # compile + run
    one = C.time_call(lambda: solve(1, None), repeats=s["repeats"])
    one["first_call_s"] = first["wall_s"]
    steps = np.asarray(one["result"].num_steps)
    ok = np.asarray(one["result"].success)
    costs_for_fraction = dict(costs)
    # The engine's default cost, recomputed the way gradient_flow does (its horizon estimate).
    import equinox as eqx

    from multimodal_dln import _training

    costs_for_fraction["default"] = np.asarray(
        eqx.filter_vmap(_training.default_horizon)(nets, stats)
    )
    costs_for_fraction["oracle"] = steps.astype(float)

    table = {
        "members": B,
        "one_bucket": dict(
            wall_s=one["wall_s"],
            cpu_s=one["cpu_s"],
            useful_fraction=float(steps.mean() / steps.max()),
            steps_mean=float(steps.mean()),
            steps_max=int(steps.max()),
            success=int(ok.sum()),
        ),
    }
    runs = {}
    for name in ("theory", "default", "random", "oracle"):
        runs[name] = {}
        for k in s["ks"]:
            entry = {"useful_fraction": useful_fraction(steps, costs_for_fraction[name], k)}
            if name == "theory" and k > 1 and k in s["timed_ks"] and k != max(s["timed_ks"]):
                if not C.can_afford(40, f"buckets: timing k = {k}"):
                    s["timed_ks"] = [x for x in s["timed_ks"] if x != k]
            if name != "oracle" and k > 1 and k in s["timed_ks"]:
                if name == "theory":  # first use of this bucket size: compile outside the timing
                    C.log(f"  {k} buckets: compile + run")
                    C.time_call(lambda: solve(k, costs[name]), repeats=1)
                t = C.time_call(lambda: solve(k, costs[name]), repeats=s["repeats"])
                st_k = np.asarray(t["result"].num_steps)
                entry.update(
                    wall_s=t["wall_s"],
                    cpu_s=t["cpu_s"],
                    wall_ratio_vs_1=t["wall_s"] / one["wall_s"],
                    cpu_ratio_vs_1=t["cpu_s"] / one["cpu_s"],
                    steps_identical_to_one_bucket=bool(np.array_equal(st_k, steps)),
                )
            runs[name][k] = entry
    table["runs"] = runs
    table["compaction"] = _compaction(s, nets, stats, one, steps)

    rows = [
        C.row(
            "useful fraction, 1 bucket",
            table["one_bucket"]["useful_fraction"],
            unit="%",
            note=f"steps mean {steps.mean():.0f} / max {steps.max()}",
        )
    ]
    for name in ("theory", "default", "random", "oracle"):
        for k in s["ks"][1:]:
            e = runs[name][k]
            note = (
                f"wall {e['wall_ratio_vs_1']:.2f}x / cpu {e['cpu_ratio_vs_1']:.2f}x of 1 bucket"
                if "wall_s" in e
                else "fraction only (not timed)"
            )
            if name == "oracle":
                note = "sorted by actual steps: upper bound"
            rows.append(
                C.row(
                    f"{name} cost, {k} buckets: useful fraction",
                    e["useful_fraction"],
                    unit="%",
                    note=note,
                )
            )
    rows += _compaction_rows(table["compaction"])
    kmax = max(s["timed_ks"])
    best = runs["theory"][kmax]
    rows.append(
        C.row(
            f"wall time, theory cost {kmax} buckets / 1 bucket",
            best["wall_ratio_vs_1"],
            goal="< 1",
            met=best["wall_ratio_vs_1"] < 1,
        )
    )
    return {"rows": rows, "details": dict(settings=s, **table)}


def _compaction(s, nets, stats, one, steps) -> list[dict]:
    """Compacted solves of the same batch: the modelled fraction, first and second call times
    against the one-shot solve's, and whether steps and time ratios are identical."""
    ratio_one = np.asarray(mdln.measure(one["result"], stats).time_ratio)
    out = []
    for chunk, pool in s["compaction"]:

        def solve():
            return C.block(
                mdln.gradient_flow(nets, stats, n_save=s["n_save"], chunk_steps=chunk,
                                   pool_size=pool)
            )  # fmt: skip

        first = C.time_call(solve, repeats=1)
        again = C.time_call(solve, repeats=s["repeats"])
        traj = again["result"]
        out.append(
            dict(
                chunk_steps=chunk,
                pool_size=pool,
                useful_fraction=float(steps.sum() / compacted_work(steps, chunk, pool)),
                first_call_s=first["wall_s"],
                wall_s=again["wall_s"],
                cpu_s=again["cpu_s"],
                wall_ratio_vs_one_shot=again["wall_s"] / one["wall_s"],
                first_call_ratio_vs_one_shot=first["wall_s"] / one["first_call_s"],
                steps_identical=bool(np.array_equal(np.asarray(traj.num_steps), steps)),
                time_ratios_identical=bool(
                    np.array_equal(
                        np.asarray(mdln.measure(traj, stats).time_ratio), ratio_one,
                        equal_nan=True,
                    )
                ),  # fmt: skip
            )
        )
    return out


def _compaction_rows(runs) -> list[dict]:
    rows = []
    for e in runs:
        tag = f"compaction K={e['chunk_steps']} pool={e['pool_size']}"
        same = e["steps_identical"] and e["time_ratios_identical"]
        rows += [
            C.row(f"{tag}: useful fraction", e["useful_fraction"], unit="%", goal=">= 0.9",
                  met=e["useful_fraction"] >= 0.9,
                  note="no predictor; " + ("steps and time ratios identical to one shot"
                                           if same else "DIFFERS from the one-shot solve")),
            C.row(f"{tag}: wall time / one shot (compiled)", e["wall_ratio_vs_one_shot"],
                  goal="< 1", met=e["wall_ratio_vs_one_shot"] < 1),
            C.row(f"{tag}: first call / one shot's first call", e["first_call_ratio_vs_one_shot"],
                  note="includes compiling start, chunk per pool size, finish"),
        ]  # fmt: skip
    return rows
