"""Property: a member reported as a success has the right time ratio.

Over 160 random valid configurations (rho, ratio, depth, L_f, init scale, horizon,
t_min_fraction, method), checked per structure (one test each, so they run in parallel), every
member with status OK has a time ratio within `RTOL` of an
independent re-solve of the same member saved on a much finer grid (4096 saves from 1e-8 of
the horizon, horizon long enough to converge), and every other member has NaN phase times and
a reason. Members are solved in padded groups of `GROUP` so that every group of one structure
reuses one compiled solver.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import multimodal_dln as mdln
from multimodal_dln import Status

N_CONFIGS = 160
GROUP = 8
RTOL = 1e-3  # measured worst case 4.4e-4 (L = 3, L_f = 3): deep-net interpolation error
STRUCTURES = [(2, 1), (2, 2), (3, 2), (3, 3)]  # early, late, intermediate fusion
T_MIN_FRACTIONS = [1e-5, 3e-2]  # the default and a coarse start of the save grid


def _configs(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(N_CONFIGS):
        depth, lf = STRUCTURES[rng.integers(len(STRUCTURES))]
        u0 = 10 ** rng.uniform(-8, -3) if depth == 2 else 10 ** rng.uniform(-1.6, -0.8)
        out.append(
            dict(
                depth=depth,
                fusion_layer=lf,
                rho=rng.uniform(-0.9, 0.9),
                ratio=rng.uniform(0.7, 3.0),
                u0=u0,
                method="gd" if rng.random() < 0.3 else "flow",
                horizon=None if rng.random() < 0.5 else 10 ** rng.uniform(-0.5, 1.5),  # x estimate
                t_min_fraction=T_MIN_FRACTIONS[rng.integers(len(T_MIN_FRACTIONS))],
                lr=rng.uniform(0.005, 0.03),
                seed=i,
            )
        )
    return out


def _batch(cfgs):
    stats = jax.vmap(mdln.Statistics.toy)(
        jnp.array([c["rho"] for c in cfgs]), jnp.array([c["ratio"] for c in cfgs])
    )
    depth, lf = cfgs[0]["depth"], cfgs[0]["fusion_layer"]
    nets = eqx.filter_vmap(
        lambda k, u: mdln.FusionDLN.init(
            k, depth=depth, fusion_layer=lf, width=4, d_A=1, d_B=1, init_scale=u
        )
    )(
        jax.vmap(jax.random.key)(jnp.array([c["seed"] for c in cfgs])),
        jnp.array([c["u0"] for c in cfgs]),
    )
    return nets, stats


def _solve(cfgs, fine: bool):
    nets, stats = _batch(cfgs)
    c0 = cfgs[0]
    if c0["method"] == "gd":
        lr = jnp.array([c["lr"] for c in cfgs])
        if fine or c0["horizon"] is None:
            traj = mdln.gradient_descent(
                nets, stats, lr=lr, n_save=4096 if fine else 512, on_divergence="ignore"
            )
        else:
            h = eqx.filter_vmap(mdln._training.default_horizon)(nets, stats)
            need = np.max(np.asarray(h) * c0["horizon"] / np.asarray(lr))
            n_steps = int(2 ** np.ceil(np.log2(need)))  # a power of two: few compiled loops
            traj = mdln.gradient_descent(
                nets, stats, lr=lr, n_steps=n_steps, on_divergence="ignore"
            )
    elif fine:
        traj = mdln.gradient_flow(nets, stats, n_save=4096, t_min_fraction=1e-8)
    else:
        t_max = None
        if c0["horizon"] is not None:
            h = eqx.filter_vmap(mdln._training.default_horizon)(nets, stats)
            t_max = h * jnp.array([c["horizon"] for c in cfgs])
        traj = mdln.gradient_flow(nets, stats, t_max=t_max, t_min_fraction=c0["t_min_fraction"])
    return mdln.measure(traj, stats)


def _group_key(c):
    h = c["horizon"] is None
    tmf = c["t_min_fraction"] if c["method"] == "flow" else None
    return (c["depth"], c["fusion_layer"], c["method"], h, tmf)


@pytest.mark.slow
@pytest.mark.parametrize("structure", STRUCTURES, ids=lambda s: f"L{s[0]}-Lf{s[1]}")
def test_every_success_has_the_right_time_ratio(structure):
    mine = [c for c in _configs() if (c["depth"], c["fusion_layer"]) == structure]
    cfgs = sorted(mine, key=lambda c: str(_group_key(c)))
    errors, n_ok, codes = [], 0, []
    for _, grp in itertools.groupby(cfgs, key=_group_key):
        grp = list(grp)
        for start in range(0, len(grp), GROUP):
            chunk = grp[start : start + GROUP]
            padded = chunk + [chunk[-1]] * (GROUP - len(chunk))
            m = _solve(padded, fine=False)
            ref = _solve(padded, fine=True)
            status = np.asarray(m.status)[: len(chunk)]
            ratio = np.asarray(m.time_ratio)[: len(chunk)]
            ref_ratio = np.asarray(ref.time_ratio)[: len(chunk)]
            reasons = m.failure_reasons()[: len(chunk)]
            codes += status.tolist()
            for s, r, rr, why, c in zip(status, ratio, ref_ratio, reasons, chunk, strict=True):
                if s == Status.OK:
                    n_ok += 1
                    assert np.isfinite(rr), (c, "reference failed where the run succeeded")
                    errors.append((abs(r / rr - 1), c))
                else:
                    assert np.isnan(r) and why != "ok", (c, r, why)
    worst = max(errors, key=lambda e: e[0])
    errs = np.array([e[0] for e in errors])
    print(
        f"\n{structure}: {n_ok}/{len(cfgs)} OK; |ratio/ref - 1| median {np.median(errs):.1e}, "
        f"max {worst[0]:.1e}; "
        f"status counts {dict(zip(*np.unique(codes, return_counts=True), strict=True))}"
    )
    assert len(codes) == len(cfgs) and n_ok >= len(cfgs) // 3, (n_ok, np.bincount(codes))
    assert worst[0] <= RTOL, f"worst |ratio/ref - 1| = {worst[0]:.2e} at {worst[1]}"
