"""Stronger baselines and a work-precision diagram (toy late fusion; docs/theory.md §2, §3, §7).

**Part 1: the same problem, four ways.** A subset of the toy late-fusion grid of
`benchmarks.sweep` (two-layer, L = L_f = 2, hidden width 100, every entry N(0, 1e-9^2) as the
authors; members (ratio, rho) from that grid with the seed rotated), integrated by:

(a) the library: one batched `mdln.gradient_flow` (Tsit5, `rtol`, otherwise the defaults)
    then `mdln.measure`; compile (the first call) timed separately from the warm calls.
(b) scipy `solve_ivp` per member on the same population ODE written in NumPy: the gradient
    of L = 1/2 (tr S_yy - 2 tr(W S_yx^T) + tr(W S_xx W^T)) through the second moments,
    e = S_yx - W S_xx, dL/dW_2m = -e_m W_1m^T, dL/dW_1m = -W_2m^T e_m (docs/theory.md §1).
    Method RK45 (Dormand-Prince 5(4), the explicit pair closest to the library's Tsit5) with
    the library's rtol and its default atol (1e-6 x the smallest initial RMS weight entry,
    `multimodal_dln._config.default_atol`), `dense_output=True`, evaluated at the library's
    save times.
(c) a vmapped fixed-step RK4 in plain JAX (`jax.lax.scan` over S uniform save intervals, k
    RK4 steps each, no diffrax), on the same closed-form gradient in `jax.numpy`. Step count:
    the smallest k in a doubling ladder whose time ratios agree with a high-accuracy reference
    (below) to within `RK4_FACTOR` = 2 x the library's own max error against it, so its
    accuracy is that of (a); every rung's error and time is recorded.
(d) the hand-written GD loop of `benchmarks.sweep` (its `_gd_step` and `baseline_one`,
    imported): 8192 samples, lr 0.04, a Python loop with a host sync per epoch, stop at
    loss < 1e-4; t = epochs x lr.

Every member of (b) and (c) is integrated over [0, T] with T the library's stop time (its
convergence event), so all three end at the same point. Crossing definition, the same for all:
`mdln.measure` (first upward crossing of half the target, by bisection on the cubic Hermite
interpolant of the saved W(t) and dW/dt; docs/theory.md §7) on a `Trajectory` built from each
baseline's output: (b) on the library's save times, (c) on its uniform save grid, (d) on the
per-epoch history with dW/dt by central differences. The authors' argmin rule for (d)
(`sweep.authors_times`) is kept in the details. Accuracy: median and max over members of
|time ratio / theory - 1| (`mdln.theory.time_ratio_toy`), and of |time ratio / reference - 1|
where the reference is scipy DOP853 at rtol 1e-12 on the same interval and the same grid.
Speed: each baseline's wall time (solve + measurement; compile excluded) over the library's,
all in this run.

**Part 2: work-precision.** Tsit5, Dopri5, Bosh3 and Kvaerno5 at rtol 1e-4 .. 1e-10 on a toy
problem (4 members, L = 2, width 8 with entrywise init 1e-9 x sqrt(100 / 8): the same effective
scale u0 = init sqrt(h / 2) as width 100 at 1e-9, docs/theory.md §2) and a deep one (4 members,
L = 4, L_f = 3, width 4, aligned init u0 = 0.05, docs/theory.md §3). Small widths because
Kvaerno5 (implicit) factorizes a dense P x P Jacobian in its steps: at width 100 (P = 400
per member) one 4-member solve at rtol 1e-6 took over 3 minutes in a trial while this
benchmark was written (Tsit5 on 20 such members: 1.6 s), and the deep width-100 network
(P = 40 300, a 13 GB Jacobian per member) would not fit.
The solve is the engine's own per-member solve (`multimodal_dln._gradient_flow._start` and
`_solve_one`: the same vector field, PID controller, default atol, convergence event and save
summaries as `gradient_flow`), vmapped and jitted with rtol as a *traced* argument, so each
(problem, solver) compiles once instead of once per rtol; a public `gradient_flow` call on the
toy problem checks that the two take identical steps and give identical ratios. Error: max over
members of |time ratio / reference - 1|, the reference scipy DOP853 (rtol 1e-12) on the same
save grid; t_B's threshold is half of the exact final weight W*_B
(`theory.fixed_point_weights(stats, "*")`) for every run and the reference, because the runs
stop at their convergence event at different points of their last step, which moves the last
saved W_B (the default threshold) by an amount that has nothing to do with the accuracy of the
solve before it. Wall time: warm calls of the solve alone (`timed`). A solver's ladder stops
early once a point takes longer than `wp_point_cap_s` (recorded). The default atol sets a
floor under the errors; one extra Tsit5 point at the tightest rtol with `TIGHT_ATOL` x the
default atol shows where it lies.

Compile times are compilations: JAX's persistent compilation cache (on after `import
multimodal_dln`) is off during quick and full runs (`no_persistent_cache`); tiny runs keep it.

The PNG is drawn from the JSON: `python -m benchmarks.baselines [JSON [PNG]]` (default
benchmarks/results/baselines.json -> benchmarks/results/work_precision.png).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import multimodal_dln as mdln
from multimodal_dln import _gradient_flow as _gf
from multimodal_dln._config import SolverConfig, default_atol

from . import _common as C, sweep as SW

NAME = "baselines"
DESCRIPTION = (
    "toy late fusion: library vs scipy solve_ivp, plain-JAX RK4 and the GD loop; "
    "work-precision of Tsit5 / Dopri5 / Bosh3 / Kvaerno5"
)

SOLVERS = ("Tsit5", "Dopri5", "Bosh3", "Kvaerno5")
REF_RTOL = 1e-12
"""rtol of the scipy DOP853 reference (atol: the library default x `REF_ATOL_FACTOR`)."""
REF_ATOL_FACTOR = 1e-4
TIGHT_ATOL = 1e-4
"""Factor on the default atol of the extra Tsit5 point that shows where the curves' floor is."""
RK4_FACTOR = 2.0
"""RK4's step count: the smallest whose max error vs the reference is <= this x the library's."""


_T0 = [time.perf_counter()]


def _log(msg: str) -> None:
    """Progress line with the seconds since the run started."""
    C.log(f"[{time.perf_counter() - _T0[0]:5.0f} s] {msg}")


def settings(mode: str) -> dict:
    toy_wp = dict(
        pairs=[(1.5, -0.9), (2.0, 0.45), (2.5, 0.0), (3.0, -0.45)],
        depth=2,
        fusion_layer=2,
        width=8,
        init="entrywise",
        init_scale=1e-9 * math.sqrt(100 / 8),
    )
    deep_wp = dict(
        pairs=[(2.0, 0.0), (3.0, 0.0), (2.0, 0.5), (3.0, -0.5)],
        depth=4,
        fusion_layer=3,
        width=4,
        init="aligned",
        init_scale=0.05,
    )
    if mode == "tiny":
        return dict(
            pairs=[(2.0, 0.5), (3.0, -0.5)],
            width=4,
            init_scale=1e-3,
            rtol=1e-6,
            repeats=1,
            n_samples=256,
            max_epochs=3000,
            rk4_saves=511,  # 512 save times, as the library's: measure compiles once for both
            rk4_ladder=(1, 2, 4),
            # the work-precision toy problem is the part-1 problem itself (no extra structure)
            wp_problems={"toy": "part1"},
            wp_solvers=("Tsit5",),
            wp_rtols=(1e-4, 1e-6),
            wp_point_cap_s=5.0,
            wp_check_public={"toy": True},
            wp_targets={"toy": (1e-5,)},
        )
    s = dict(
        pairs=[(r, p) for r in (1.5, 2.0, 2.5, 3.0) for p in (-0.45, 0.45)],
        width=100,
        init_scale=1e-9,
        rtol=1e-6,
        repeats=3,
        n_samples=8192,
        max_epochs=20000,
        rk4_saves=1023,
        rk4_ladder=(1, 2, 4, 8, 16, 32, 64),
        wp_problems={"toy": toy_wp, "deep": deep_wp},
        wp_solvers=SOLVERS,
        wp_rtols=(1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10),
        wp_point_cap_s=10.0,
        wp_check_public={"toy": True},
        wp_targets={"toy": (1e-5, 1e-8), "deep": (1e-5,)},
    )
    if mode == "quick":
        s.update(
            pairs=[(1.5, -0.45), (3.0, 0.45)],
            repeats=2,
            wp_problems={"toy": toy_wp},
            wp_rtols=(1e-4, 1e-6, 1e-8),
            wp_point_cap_s=5.0,
        )
    return s


def members(pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratio, rho, seed) of the chosen grid points; the seed rotates over the sweep's 5."""
    ratio = np.array([p[0] for p in pairs], float)
    rho = np.array([p[1] for p in pairs], float)
    return ratio, rho, np.arange(len(pairs)) % 5


# ------------------------------------------------------------------------------------------------
# Trajectories from baseline outputs (so that `mdln.measure` applies to every method)
# ------------------------------------------------------------------------------------------------
def population_loss(W, stats_np) -> np.ndarray:
    """L(W) = 1/2 (tr S_yy - 2 tr(W S_yx^T) + tr(W S_xx W^T)) for W of shape (..., o, d)."""
    sxx, syx, syy = stats_np
    return 0.5 * (
        np.trace(syy)
        - 2.0 * np.einsum("...od,od->...", W, syx)
        + np.einsum("...od,de,...oe->...", W, sxx, W)
    )


def make_trajectory(ts, W, W_dot, loss, t_end, status, num_steps, d_A, fusion_layer):
    """A batched `mdln.Trajectory` from arrays (B, n), (B, n, o, d), ... (no final network)."""
    B = ts.shape[0]
    return mdln.Trajectory(
        ts=jnp.asarray(ts),
        weights=jnp.asarray(W),
        weights_dot=jnp.asarray(W_dot),
        loss=jnp.asarray(loss),
        t_end=jnp.asarray(t_end, float),
        status=jnp.asarray(np.broadcast_to(status, (B,)), jnp.int32),
        num_steps=jnp.asarray(np.broadcast_to(num_steps, (B,)), jnp.int32),
        final=None,
        d_A=d_A,
        method="flow",
        fusion_layer=fusion_layer,
    )


def with_exact_final(traj, stats):
    """`traj` with its last save replaced by the exact final weights W* (the global minimum,
    `theory.fixed_point_weights(stats, "*")`): `measure`'s t_B threshold (half the last saved
    W_B) is then the same for every run of the same members (see the module docstring)."""
    w_star = mdln.theory.fixed_point_weights(stats, "*")
    weights = traj.weights.at[:, -1].set(w_star)
    return eqx.tree_at(lambda t: t.weights, traj, weights)


def ratios_of(meas) -> np.ndarray:
    """Time ratios of a measurement, NaN where a member failed."""
    r = np.asarray(meas.time_ratio, float)
    return np.where(np.asarray(meas.success), r, np.nan)


def max_rel(a, b) -> float | None:
    """max over members of |a / b - 1| (None if any member is missing)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return None
    return float(np.max(np.abs(a / b - 1.0)))


# ------------------------------------------------------------------------------------------------
# Per-member arrays of the two-layer late-fusion network (the toy baselines)
# ------------------------------------------------------------------------------------------------
class TwoLayerNumpy:
    """The population gradient flow of one two-layer late-fusion network in NumPy.

    State y = [W_1A.ravel(), W_1B.ravel(), W_2A.ravel(), W_2B.ravel()] with W_1m of shape
    (h, d_m) (`net.branch_m[0]`) and W_2m of shape (o, h) (`net.fusion_m`), so that
    W_m^tot = W_2m W_1m. With e = S_yx - W S_xx (W = [W_A^tot, W_B^tot], docs/theory.md §1):
    dW_1m/dt = W_2m^T e_m, dW_2m/dt = e_m W_1m^T.
    """

    def __init__(self, sxx, syx, syy, h, d_A, d_B, o):
        self.sxx, self.syx, self.syy = (np.asarray(a, float) for a in (sxx, syx, syy))
        self.h, self.d_A, self.d_B, self.o = h, d_A, d_B, o
        sizes = [h * d_A, h * d_B, o * h, o * h]
        self.cut = np.cumsum([0, *sizes])

    def split(self, y):
        c, h = self.cut, self.h
        return (
            y[c[0] : c[1]].reshape(h, self.d_A),
            y[c[1] : c[2]].reshape(h, self.d_B),
            y[c[2] : c[3]].reshape(self.o, h),
            y[c[3] : c[4]].reshape(self.o, h),
        )

    def weights(self, y) -> np.ndarray:
        w1a, w1b, w2a, w2b = self.split(y)
        return np.concatenate([w2a @ w1a, w2b @ w1b], axis=1)

    def __call__(self, t, y):
        w1a, w1b, w2a, w2b = self.split(y)
        W = np.concatenate([w2a @ w1a, w2b @ w1b], axis=1)
        e = self.syx - W @ self.sxx
        e_a, e_b = e[:, : self.d_A], e[:, self.d_A :]
        return np.concatenate(
            [
                (w2a.T @ e_a).ravel(),
                (w2b.T @ e_b).ravel(),
                (e_a @ w1a.T).ravel(),
                (e_b @ w1b.T).ravel(),
            ]
        )

    def weights_and_dot(self, Y) -> tuple[np.ndarray, np.ndarray]:
        """W and dW/dt at the states Y of shape (n, P)."""
        W, Wd = [], []
        for y in Y:
            w1a, w1b, w2a, w2b = self.split(y)
            d1a, d1b, d2a, d2b = self.split(self(0.0, y))
            W.append(np.concatenate([w2a @ w1a, w2b @ w1b], axis=1))
            Wd.append(np.concatenate([d2a @ w1a + w2a @ d1a, d2b @ w1b + w2b @ d1b], axis=1))
        return np.asarray(W), np.asarray(Wd)


def two_layer_state(nets, i) -> np.ndarray:
    """Member i's state vector in `TwoLayerNumpy`'s layout."""
    parts = (nets.branch_A[0][i], nets.branch_B[0][i], nets.fusion_A[i], nets.fusion_B[i])
    return np.concatenate([np.asarray(a, float).ravel() for a in parts])


def stats_member(stats, i):
    return tuple(np.asarray(a[i], float) for a in (stats.sigma_xx, stats.sigma_yx, stats.sigma_yy))


def member_atol(nets, i) -> float:
    """The library's default atol for member i (`_config.default_atol`)."""
    params = eqx.filter(jax.tree.map(lambda a: a[i], nets), eqx.is_array)
    return float(default_atol(params))


# ------------------------------------------------------------------------------------------------
# scipy: the baseline (b) and the high-accuracy references
# ------------------------------------------------------------------------------------------------
def _scipy():
    try:
        from scipy.integrate import solve_ivp
    except ImportError as err:  # scipy is in the test / repro extras
        raise RuntimeError("the baselines benchmark needs scipy: pip install -e '.[test]'") from err
    return solve_ivp


def scipy_dense(fun, y0, T, *, method, rtol, atol):
    """solve_ivp on [0, T] with dense output; raises if it failed."""
    sol = _scipy()(fun, (0.0, float(T)), y0, method=method, rtol=rtol, atol=atol, dense_output=True)
    if sol.status != 0:
        raise RuntimeError(f"solve_ivp ({method}) failed: {sol.message}")
    return sol


def dense_trajectory(sols, readout, ts, t_end, stats_nps, d_A, fusion_layer):
    """A Trajectory from per-member dense solutions: W, dW/dt at `ts` (B, n) clipped to each
    member's end (after it, the final values with zero derivative, as the library saves)."""
    Ws, Wds, losses = [], [], []
    for i, sol in enumerate(sols):
        t = np.minimum(ts[i], t_end[i])
        W, Wd = readout(i, sol.sol(t).T)
        Wd = np.where((ts[i] <= t_end[i])[:, None, None], Wd, 0.0)
        Ws.append(W)
        Wds.append(Wd)
        losses.append(population_loss(W, stats_nps[i]))
    steps = np.array([len(s.t) - 1 for s in sols])
    return make_trajectory(
        ts,
        np.asarray(Ws),
        np.asarray(Wds),
        np.asarray(losses),
        t_end,
        0,
        steps,
        d_A,
        fusion_layer,
    )


# ------------------------------------------------------------------------------------------------
# (c) fixed-step RK4 in plain JAX
# ------------------------------------------------------------------------------------------------
def _two_layer_vf(y, sxx, syx):
    w1a, w1b, w2a, w2b = y
    d_A = w1a.shape[1]
    W = jnp.concatenate([w2a @ w1a, w2b @ w1b], axis=1)
    e = syx - W @ sxx
    e_a, e_b = e[:, :d_A], e[:, d_A:]
    return (w2a.T @ e_a, w2b.T @ e_b, e_a @ w1a.T, e_b @ w1b.T)


def _weights_and_dot(y, dy):
    w1a, w1b, w2a, w2b = y
    d1a, d1b, d2a, d2b = dy
    W = jnp.concatenate([w2a @ w1a, w2b @ w1b], axis=1)
    Wd = jnp.concatenate([d2a @ w1a + w2a @ d1a, d2b @ w1b + w2b @ d1b], axis=1)
    return W, Wd


def _rk4_member(y0, sxx, syx, T, k, n_intervals):
    """One member: `n_intervals` uniform save intervals on [0, T], k RK4 steps each; returns
    W and dW/dt at the n_intervals + 1 save times."""
    dt = T / (n_intervals * jnp.asarray(k, T.dtype))

    def f(y):
        return _two_layer_vf(y, sxx, syx)

    def axpy(a, x, y):
        return jax.tree.map(lambda u, v: u + a * v, y, x)

    def step(_, y):
        k1 = f(y)
        k2 = f(axpy(dt / 2, k1, y))
        k3 = f(axpy(dt / 2, k2, y))
        k4 = f(axpy(dt, k3, y))
        incr = jax.tree.map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1, k2, k3, k4)
        return axpy(dt, incr, y)

    def interval(y, _):
        y = jax.lax.fori_loop(0, k, step, y)
        return y, _weights_and_dot(y, f(y))

    _, (W, Wd) = jax.lax.scan(interval, y0, None, length=n_intervals)
    W0, Wd0 = _weights_and_dot(y0, f(y0))
    return jnp.concatenate([W0[None], W]), jnp.concatenate([Wd0[None], Wd])


_rk4_batched = jax.jit(jax.vmap(_rk4_member, in_axes=(0, 0, 0, 0, None, None)), static_argnums=(5,))


# ------------------------------------------------------------------------------------------------
# Part 1
# ------------------------------------------------------------------------------------------------
def timed(fn, repeats: int | None = None) -> dict:
    """Wall and CPU time of a warm call of `fn` (which blocks): `C.time_per_call` (median of
    `repeats` (default 5) loops of >= 0.2 s) when a call is short, else the median of 3 calls
    (1 when over 2 s)."""
    t = C.time_call(fn, repeats=1)
    if t["wall_s"] < 0.2:
        r = C.time_per_call(fn, repeats=repeats)
        return dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], how=f"time_per_call x{r['number']}")
    if t["wall_s"] > 2.0:
        return dict(wall_s=t["wall_s"], cpu_s=t["cpu_s"], how="one call")
    r = C.time_call(fn, repeats=3)
    return dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], how="median of 3 calls")


def part1(s: dict) -> dict:
    ratio, rho, seed = members(s["pairs"])
    B = ratio.size
    theory = np.asarray(mdln.theory.time_ratio_toy(rho, ratio))
    nets, stats = C.toy_batch(
        rho,
        ratio,
        seed,
        np.full(B, s["init_scale"]),
        depth=2,
        fusion_layer=2,
        width=s["width"],
        init="entrywise",
    )
    stats_nps = [stats_member(stats, i) for i in range(B)]
    d_A, o, h = 1, 1, s["width"]

    # (a) the library ---------------------------------------------------------------------------
    def library():
        traj = mdln.gradient_flow(nets, stats, rtol=s["rtol"])
        return C.block((traj, mdln.measure(traj, stats)))

    _log(f"  (a) library, {B} members: compile + run")
    with C.CompileLog() as clog:
        cold = C.time_call(library, repeats=1)
    warm = C.time_call(library, repeats=1)
    warm.update(timed(library))
    traj, meas = warm["result"]
    if not np.all(np.asarray(meas.success)):
        raise RuntimeError(f"library run failed: {meas.failure_reasons()}")
    r_lib = ratios_of(meas)
    ts = np.asarray(traj.ts)
    T = np.asarray(traj.t_end)

    # the reference: scipy DOP853 at rtol 1e-12 on the same interval, on the same save grid
    _log("  reference: scipy DOP853 at rtol 1e-12 per member")
    t0 = time.perf_counter()
    flows = [TwoLayerNumpy(*stats_nps[i], h, d_A, 1, o) for i in range(B)]
    atols = np.array([member_atol(nets, i) for i in range(B)])
    y0s = [two_layer_state(nets, i) for i in range(B)]
    ref_sols = [
        scipy_dense(
            flows[i], y0s[i], T[i], method="DOP853", rtol=REF_RTOL, atol=atols[i] * REF_ATOL_FACTOR
        )
        for i in range(B)
    ]
    ref_wall = time.perf_counter() - t0

    def readout(i, Y):
        return flows[i].weights_and_dot(Y)

    ref_traj = dense_trajectory(ref_sols, readout, ts, T, stats_nps, d_A, 2)
    r_ref = ratios_of(mdln.measure(ref_traj, stats))

    # (b) scipy RK45 per member, NumPy vector field ----------------------------------------------
    _log("  (b) scipy solve_ivp RK45 per member")

    def scipy_run():
        sols = [
            scipy_dense(flows[i], y0s[i], T[i], method="RK45", rtol=s["rtol"], atol=atols[i])
            for i in range(B)
        ]
        tr = dense_trajectory(sols, readout, ts, T, stats_nps, d_A, 2)
        return sols, C.block(mdln.measure(tr, stats))

    sc = C.time_call(scipy_run, repeats=s["repeats"])
    sc_sols, sc_meas = sc["result"]
    r_sc = ratios_of(sc_meas)

    # (c) fixed-step RK4, vmapped, plain JAX ------------------------------------------------------
    S = s["rk4_saves"]
    y0_tree = (nets.branch_A[0], nets.branch_B[0], nets.fusion_A, nets.fusion_B)
    ts_rk = np.linspace(0.0, 1.0, S + 1)[None, :] * T[:, None]
    # the reference on the RK4 grid (same dense solutions): RK4's error is then its own
    r_ref_rk = ratios_of(
        mdln.measure(dense_trajectory(ref_sols, readout, ts_rk, T, stats_nps, d_A, 2), stats)
    )
    Tj = jnp.asarray(T)

    def rk4_run(k):
        W, Wd = _rk4_batched(y0_tree, stats.sigma_xx, stats.sigma_yx, Tj, k, S)
        W, Wd = np.asarray(W), np.asarray(Wd)
        loss = np.stack([population_loss(W[i], stats_nps[i]) for i in range(B)])
        tr = make_trajectory(ts_rk, W, Wd, loss, T, 0, S * k, d_A, 2)
        return C.block(mdln.measure(tr, stats))

    # the target: the library's own max error against the reference, within RK4_FACTOR
    lib_err = max_rel(r_lib, r_ref)
    tol = RK4_FACTOR * lib_err if lib_err is not None else None
    _log(f"  (c) plain-JAX RK4, {S} save intervals, k = {s['rk4_ladder']}: to max err {_fmt(tol)}")
    with C.CompileLog() as rk_clog:
        rk_cold = C.time_call(lambda: rk4_run(s["rk4_ladder"][0]), repeats=1)
    ladder = []
    chosen = None
    for k in s["rk4_ladder"]:
        t = C.time_call(lambda k=k: rk4_run(k), repeats=1)
        err = max_rel(ratios_of(t["result"]), r_ref_rk)
        ladder.append(dict(k=k, steps=S * k, wall_s=t["wall_s"], max_err_vs_reference=err))
        _log(f"    k={k} ({S * k} steps): max err vs reference {_fmt(err)}, {t['wall_s']:.2f} s")
        if err is not None and tol is not None and err <= tol:
            chosen = k
            break
    met = chosen is not None
    if chosen is None:
        chosen = s["rk4_ladder"][-1]
    rk = C.time_call(lambda: rk4_run(chosen), repeats=1)
    rk.update(timed(lambda: rk4_run(chosen)))
    r_rk = ratios_of(rk["result"])

    # (d) the hand-written GD loop of benchmarks.sweep --------------------------------------------
    _log(f"  (d) GD loop (benchmarks.sweep) on {B} members")
    gd_rows, hists = [], []
    gd_wall = gd_cpu = 0.0
    for i in range(B):
        st_i = jax.tree.map(lambda a: a[i], stats)
        data = mdln.sample(jax.random.key(10_000 + i), st_i, s["n_samples"])
        params = {
            "w_A": nets.branch_A[0][i],
            "w_B": nets.branch_B[0][i],
            "w_2": jnp.concatenate([nets.fusion_A[i], nets.fusion_B[i]], axis=1),
        }
        C.block(SW._gd_step(params, data.x_A, data.x_B, data.y))  # compile outside the timing
        t0, c0 = time.perf_counter(), time.process_time()
        hist, final_loss = SW.baseline_one(params, data, s["max_epochs"])
        gd_wall += time.perf_counter() - t0
        gd_cpu += time.process_time() - c0
        hists.append(hist)
        t_A, t_B = SW.authors_times(hist, rho[i], ratio[i])
        gd_rows.append(
            dict(
                ratio=float(ratio[i]),
                rho=float(rho[i]),
                epochs=len(hist),
                final_loss=final_loss,
                converged=final_loss < SW.STOP_LOSS,
                authors_rule_time_ratio=t_B / t_A if t_A > 0 else float("nan"),
            )
        )
    n_lib = ts.shape[1]  # padded to a multiple of the library's save count: fewer shapes to compile
    n_max = n_lib * math.ceil(max(len(hh) for hh in hists) / n_lib)
    t_grid = np.arange(n_max) * SW.LR
    Wg = np.zeros((B, n_max, o, 2))
    for i, hh in enumerate(hists):  # pad after the stop with the final values
        Wg[i, : len(hh), 0, :] = hh
        Wg[i, len(hh) :, 0, :] = hh[-1]
    Wg_dot = np.gradient(Wg, SW.LR, axis=1)
    for i, hh in enumerate(hists):
        Wg_dot[i, len(hh) - 1 :] = 0.0
    gd_status = np.where([g["converged"] for g in gd_rows], 0, int(mdln.Status.NOT_CONVERGED))
    gd_traj = make_trajectory(
        np.broadcast_to(t_grid, (B, n_max)),
        Wg,
        Wg_dot,
        np.stack([population_loss(Wg[i], stats_nps[i]) for i in range(B)]),
        np.array([(len(hh) - 1) * SW.LR for hh in hists]),
        gd_status,
        np.array([len(hh) for hh in hists]),
        d_A,
        2,
    )
    C.block(mdln.measure(gd_traj, stats))  # compile for this shape, outside the timing
    gd_m = C.time_call(lambda: C.block(mdln.measure(gd_traj, stats)), repeats=1)
    r_gd = ratios_of(gd_m["result"])
    gd_wall += gd_m["wall_s"]
    gd_cpu += gd_m["cpu_s"]
    for g, r in zip(gd_rows, r_gd):
        g["time_ratio"] = float(r)

    lib_wall, lib_cpu = warm["wall_s"], warm["cpu_s"]
    methods = {
        "library": dict(ratios=r_lib, wall_s=lib_wall, cpu_s=lib_cpu),
        "scipy_rk45": dict(ratios=r_sc, wall_s=sc["wall_s"], cpu_s=sc["cpu_s"]),
        "jax_rk4": dict(ratios=r_rk, wall_s=rk["wall_s"], cpu_s=rk["cpu_s"]),
        "gd_loop": dict(ratios=r_gd, wall_s=gd_wall, cpu_s=gd_cpu),
    }
    for name, m in methods.items():
        m["vs_theory"] = C.rel_err_stats(m["ratios"], theory)
        ref = r_ref_rk if name == "jax_rk4" else r_ref
        m["vs_reference"] = C.rel_err_stats(m["ratios"], ref)
        m["speed_vs_library_wall"] = m["wall_s"] / lib_wall
        m["speed_vs_library_cpu"] = m["cpu_s"] / lib_cpu
    return dict(
        members=dict(ratio=ratio, rho=rho, seed=seed, theory=theory, t_end=T),
        settings=dict(
            width=s["width"],
            init="entrywise",
            init_scale=s["init_scale"],
            rtol=s["rtol"],
            library_call="gradient_flow(nets, stats, rtol=rtol) (Tsit5, n_save 512, defaults)",
            scipy="solve_ivp RK45, same rtol, atol = library default per member, dense output",
            reference=f"solve_ivp DOP853, rtol {REF_RTOL}, atol = default x {REF_ATOL_FACTOR}",
            rk4_saves=S,
            rk4_ladder=list(s["rk4_ladder"]),
            rk4_target=f"max err vs reference <= {RK4_FACTOR:g} x the library's",
            gd=dict(
                lr=SW.LR,
                n_samples=s["n_samples"],
                stop_loss=SW.STOP_LOSS,
                max_epochs=s["max_epochs"],
            ),
        ),
        library=dict(
            cold=C.strip(cold),
            warm=C.strip(warm),
            compile_s=cold["wall_s"] - lib_wall,
            xla_compile_s=clog.seconds,
            compiles=clog.count,
            steps=np.asarray(traj.num_steps),
            success=int(np.asarray(meas.success).sum()),
        ),
        reference=dict(
            ratios=r_ref,
            ratios_on_rk4_grid=r_ref_rk,
            wall_s=ref_wall,
            steps=[len(x.t) - 1 for x in ref_sols],
            vs_theory=C.rel_err_stats(r_ref, theory),
        ),
        scipy=dict(steps=[len(x.t) - 1 for x in sc_sols], nfev=[int(x.nfev) for x in sc_sols]),
        rk4=dict(
            timing=C.strip(rk),
            ladder=ladder,
            chosen_k=chosen,
            steps=S * chosen,
            compile_s=rk_cold["wall_s"] - ladder[0]["wall_s"],
            xla_compile_s=rk_clog.seconds,
            how=f"smallest k in {list(s['rk4_ladder'])} (S = {S} save intervals, k steps each) "
            f"with max |ratio / reference - 1| <= {RK4_FACTOR:g} x the library's max error vs "
            "the reference (the reference evaluated on the RK4 grid for RK4, on the library's "
            "grid for the library)",
            library_max_err=lib_err,
            target=tol,
            met_target=met,
        ),
        gd=dict(configs=gd_rows),
        methods=methods,
    )


# ------------------------------------------------------------------------------------------------
# Part 2: work-precision
# ------------------------------------------------------------------------------------------------
def traced_rtol_solver(nets, solver):
    """The engine's per-member solve (`_gradient_flow._start` + `_solve_one`, defaults of
    `gradient_flow`: n_save 512, converge_rtol 1e-6, max_steps 200 000, default horizon),
    vmapped and jitted with rtol and a factor on the default atol traced: one compile for all
    tolerances. Returns `call(stats, rtol, atol_scale=1.0)`."""
    params, static = eqx.partition(nets, eqx.is_array)

    @jax.jit
    def run(params, stats, rtol, atol_scale):
        def one(p, st):
            atol = default_atol(p) * atol_scale  # x 1.0: the default, bit for bit
            with warnings.catch_warnings():  # traced tolerances in the (static) config
                warnings.simplefilter("ignore", UserWarning)
                cfg = SolverConfig(512, rtol, atol, 1e-6, 200_000, solver)
            start = _gf._start(p, st, jnp.asarray(jnp.nan), static, cfg, 1e-5)
            return _gf._solve_one(p, static, st, *start, cfg)

        return jax.vmap(one)(params, stats)

    def call(stats, rtol, atol_scale=1.0):
        with _types_unchecked():
            return run(params, stats, jnp.asarray(rtol, float), jnp.asarray(atol_scale, float))

    return call


@contextlib.contextmanager
def _types_unchecked():
    """jaxtyping's run-time checks off while tracing the traced-rtol solve: the test suite
    installs them on the package (tests/conftest.py), and `SolverConfig` and `_solve.integrate`
    annotate rtol as a float, which a traced rtol is not. A no-op without the import hook."""
    import jaxtyping

    old = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", old)


def generic_reference(nets, stats, traj):
    """scipy DOP853 at rtol 1e-12 per member with the engine's vector field (jitted, one member
    per call) on [0, `traj.t_end`]; returns a Trajectory on `traj.ts` with the exact final
    weights (`with_exact_final`) and the dense solutions."""
    flat, vf, loss, summary = C.batched_vector_field(nets, stats)
    vf1 = jax.jit(vf.one)
    sum1 = jax.jit(jax.vmap(summary.one, in_axes=(0, None)))
    B = flat.shape[0]
    ts, T = np.asarray(traj.ts), np.asarray(traj.t_end)
    sols = []
    for i in range(B):
        st_i = jax.tree.map(lambda a: a[i], stats)

        def fun(t, y, st_i=st_i):
            return np.asarray(vf1(jnp.asarray(y), st_i))

        atol = member_atol(nets, i) * REF_ATOL_FACTOR
        sols.append(
            scipy_dense(fun, np.asarray(flat[i]), T[i], method="DOP853", rtol=REF_RTOL, atol=atol)
        )

    def readout(i, Y):
        st_i = jax.tree.map(lambda a: a[i], stats)
        W, Wd, _ = sum1(jnp.asarray(Y), st_i)
        return np.asarray(W), np.asarray(Wd)

    stats_nps = [stats_member(stats, i) for i in range(B)]
    ref = dense_trajectory(sols, readout, ts, T, stats_nps, traj.d_A, traj.fusion_layer)
    return with_exact_final(ref, stats), sols


def wp_problem(spec, part1_inputs=None):
    """(nets, stats, label dict) of one work-precision problem."""
    if spec == "part1":
        return part1_inputs
    ratio, rho, seed = members(spec["pairs"])
    nets, stats = C.toy_batch(
        rho,
        ratio,
        seed,
        np.full(ratio.size, spec["init_scale"]),
        depth=spec["depth"],
        fusion_layer=spec["fusion_layer"],
        width=spec["width"],
        init=spec["init"],
    )
    info = {k: v for k, v in spec.items() if k != "pairs"}
    info.update(ratio=ratio, rho=rho, seed=seed, params_per_member=C.n_params(nets))
    return nets, stats, info


def _point(tr, t, stats, r_ref, **how) -> dict:
    """One work-precision point: timing `t` and the error of trajectory `tr` vs the reference."""
    r = ratios_of(mdln.measure(with_exact_final(tr, stats), stats))
    err = np.abs(r / r_ref - 1.0)
    finite = bool(np.all(np.isfinite(err)))
    return dict(
        **how,
        wall_s=t["wall_s"],
        cpu_s=t["cpu_s"],
        timing=t,
        steps=np.asarray(tr.num_steps),
        ok=int((np.asarray(tr.status) == 0).sum()),
        max_err=float(err.max()) if finite else None,
        median_err=float(np.median(err)) if finite else None,
        ratios=r,
    )


def _describe(p: dict) -> str:
    return (
        f"max err {_fmt(p['max_err'])}, {p['wall_s'] * 1e3:.1f} ms, "
        f"steps max {int(np.max(p['steps']))}"
    )


def _time_point(fn, stats, rtol, first_call: bool, atol_scale=1.0):
    """Compile (if `first_call`) and time one (solver, rtol) point (`timed`); returns
    (trajectory, timing, compile record or None)."""
    comp = None

    def call():
        return C.block(fn(stats, rtol, atol_scale))

    if first_call:
        with C.CompileLog() as cl:
            cold = C.time_call(call, repeats=1)
        comp = dict(cold_s=cold["wall_s"], xla_compile_s=cl.seconds, compiles=cl.count)
    t0 = time.perf_counter()
    first = C.time_call(call, repeats=1)
    t = timed(call, repeats=3 if C.TIMING["repeats"] > 3 else None)
    t["timing_s"] = time.perf_counter() - t0
    if comp is not None:
        comp["compile_s"] = max(0.0, comp["cold_s"] - first["wall_s"])
    return first["result"], t, comp


def part2(s: dict, part1_inputs) -> dict:
    out = {}
    for pname, spec in s["wp_problems"].items():
        nets, stats, info = wp_problem(spec, part1_inputs)
        fns = {n: traced_rtol_solver(nets, getattr(diffrax, n)()) for n in s["wp_solvers"]}
        if not C.can_afford(40.0 * len(fns), f"baselines: work-precision {pname}"):
            continue
        # Tsit5 at rtol 1e-6 first: its save grid and stop times set the reference's grid
        _log(f"  work-precision {pname}: Tsit5 (traced rtol) compile + rtol 1e-6")
        tr6, t6, comp6 = _time_point(fns["Tsit5"], stats, 1e-6, True)
        check = None
        if s["wp_check_public"].get(pname, False):
            _log(f"  work-precision {pname}: public gradient_flow (Tsit5, rtol 1e-6) to compare")
            with C.CompileLog() as clog:
                pub_cold = C.time_call(
                    lambda: C.block(mdln.gradient_flow(nets, stats, rtol=1e-6)), repeats=1
                )
            pub = C.time_call(
                lambda: C.block(mdln.gradient_flow(nets, stats, rtol=1e-6)), repeats=2
            )
            pub_traj = pub["result"]
            check = dict(
                identical_steps=bool(
                    np.array_equal(np.asarray(tr6.num_steps), np.asarray(pub_traj.num_steps))
                ),
                max_ratio_difference=max_rel(
                    ratios_of(mdln.measure(tr6, stats)), ratios_of(mdln.measure(pub_traj, stats))
                ),
                public_cold_s=pub_cold["wall_s"],
                public_compile_s=max(0.0, pub_cold["wall_s"] - pub["wall_s"]),
                public_xla_compile_s=clog.seconds,
                public_wall_s=pub["wall_s"],
                traced_wall_s=t6["wall_s"],
            )
        _log(f"  work-precision {pname}: reference (scipy DOP853, rtol {REF_RTOL:g})")
        t0 = time.perf_counter()
        ref_traj, ref_sols = generic_reference(nets, stats, tr6)
        ref_wall = time.perf_counter() - t0
        r_ref = ratios_of(mdln.measure(ref_traj, stats))
        solvers = {}
        for sname, fn in fns.items():
            points, skipped = [], []
            comp = comp6 if sname == "Tsit5" else None
            if sname != "Tsit5" and not C.can_afford(40.0, f"baselines: {pname} {sname}"):
                continue
            for rtol in s["wp_rtols"]:
                if points and points[-1]["wall_s"] > s["wp_point_cap_s"]:
                    skipped.append(rtol)
                    continue
                if sname == "Tsit5" and rtol == 1e-6:
                    tr, t, c = tr6, t6, comp6
                else:
                    tr, t, c = _time_point(fn, stats, rtol, comp is None)
                comp = comp or c
                points.append(_point(tr, t, stats, r_ref, rtol=rtol))
                _log(f"    {sname} rtol {rtol:g}: {_describe(points[-1])}")
            solvers[sname] = dict(points=points, skipped_rtols=skipped, compile=comp)
        # the floor of the curves: Tsit5 at the tightest rtol with atol 1e-4 x the default
        tight = None
        if "Tsit5" in solvers and solvers["Tsit5"]["points"]:
            rtol = solvers["Tsit5"]["points"][-1]["rtol"]
            tr, t, _ = _time_point(fns["Tsit5"], stats, rtol, False, atol_scale=TIGHT_ATOL)
            tight = _point(tr, t, stats, r_ref, rtol=rtol, atol_scale=TIGHT_ATOL)
            _log(f"    Tsit5 rtol {rtol:g}, atol {TIGHT_ATOL:g} x default: {_describe(tight)}")
        targets = s["wp_targets"].get(pname, ())
        out[pname] = dict(
            problem=info,
            reference=dict(ratios=r_ref, wall_s=ref_wall, steps=[len(x.t) - 1 for x in ref_sols]),
            default_atol=[member_atol(nets, i) for i in range(len(r_ref))],
            traced_vs_public=check,
            solvers=solvers,
            tsit5_tight_atol=tight,
            wall_at_target={
                f"{tgt:g}": {n: wall_at_error(v["points"], tgt) for n, v in solvers.items()}
                for tgt in targets
            },
        )
    return out


def wall_at_error(points, target) -> dict:
    """Wall time at which a solver's (error, wall) points reach `target` error, in rtol order:
    log-log interpolation in the first consecutive pair that brackets it ("interpolated");
    the loosest point's time when that one is already below the target ("upper bound");
    None when no point reaches it ("not reached")."""
    pts = [(p["max_err"], p["wall_s"]) for p in points if p["max_err"] is not None]
    if not pts:
        return dict(wall_s=None, how="not reached")
    if pts[0][0] <= target:
        return dict(wall_s=pts[0][1], how="upper bound")
    for (e0, w0), (e1, w1) in zip(pts, pts[1:]):
        if e0 >= target >= e1 and e1 > 0:
            f = (math.log(target) - math.log(e0)) / (math.log(e1) - math.log(e0))
            return dict(
                wall_s=math.exp(math.log(w0) + f * (math.log(w1) - math.log(w0))),
                how="interpolated",
            )
    return dict(wall_s=None, how="not reached")


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def no_persistent_cache():
    """JAX's persistent compilation cache off inside the block (`import multimodal_dln` turns
    it on), so compile times are compilations, not cache loads; restored afterwards."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    old = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    cc.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", old)
        cc.reset_cache()


def run(mode: str = "full") -> dict:
    s = settings(mode)
    # tiny (the smoke test; numbers meaningless) keeps the cache as configured
    with contextlib.nullcontext() if mode == "tiny" else no_persistent_cache():
        t_start = _T0[0] = time.perf_counter()
        p1 = part1(s)
        t_p1 = time.perf_counter() - t_start
        part1_inputs = None
        if "part1" in s["wp_problems"].values():
            ratio, rho, seed = members(s["pairs"])
            nets, stats = C.toy_batch(
                rho,
                ratio,
                seed,
                np.full(ratio.size, s["init_scale"]),
                depth=2,
                fusion_layer=2,
                width=s["width"],
                init="entrywise",
            )
            info = dict(depth=2, fusion_layer=2, width=s["width"], init="entrywise")
            info.update(init_scale=s["init_scale"], same_as="part 1", ratio=ratio, rho=rho)
            part1_inputs = (nets, stats, dict(info, params_per_member=C.n_params(nets)))
        p2 = part2(s, part1_inputs)
        t_p2 = time.perf_counter() - t_start - t_p1
    comps = [v["compile"] for pr in p2.values() for v in pr["solvers"].values() if v["compile"]]
    checks = [pr["traced_vs_public"] for pr in p2.values() if pr["traced_vs_public"]]
    timing = dict(
        part1_s=t_p1,
        part2_s=t_p2,
        part2_compiles=len(comps) + len(checks),
        part2_compile_s=sum(c["compile_s"] for c in comps)
        + sum(c["public_compile_s"] for c in checks),
        part2_timing_s=sum(
            p["timing"]["timing_s"]
            for pr in p2.values()
            for v in pr["solvers"].values()
            for p in v["points"]
        ),
        part2_one_solve_per_point_s=sum(
            p["wall_s"] for pr in p2.values() for v in pr["solvers"].values() for p in v["points"]
        ),
        persistent_compilation_cache=(
            "as configured (tiny)" if mode == "tiny" else "off (compile times are compilations)"
        ),
    )
    rows = part1_rows(p1, s) + part2_rows(p2, timing)
    details = dict(
        settings={k: v for k, v in s.items() if k != "wp_problems"},
        part1=p1,
        work_precision=p2,
        timing=timing,
    )
    return {"rows": rows, "details": details}


_LABELS = {
    "scipy_rk45": "scipy solve_ivp RK45 per member",
    "jax_rk4": "plain-JAX vmapped RK4",
    "gd_loop": "hand-written GD loop (sweep.py)",
}


def part1_rows(p1: dict, s: dict) -> list[dict]:
    B = len(p1["members"]["ratio"])
    m = p1["methods"]
    rk = p1["rk4"]
    rows = []
    for name, label in _LABELS.items():
        rows.append(
            C.row(
                f"{label} / library (warm, wall), {B} toy members",
                m[name]["speed_vs_library_wall"],
                note=f"CPU time {m[name]['speed_vs_library_cpu']:.3g}x",
            )
        )
    sc_cold = m["scipy_rk45"]["wall_s"] / p1["library"]["cold"]["wall_s"]
    rows.append(
        C.row(
            "scipy per member / library incl. its compile (cold)",
            sc_cold,
            note=f"library compile {p1['library']['compile_s']:.1f} s",
        )
    )
    rows.append(
        C.row(
            "RK4 steps per member (chosen to match the library's accuracy)",
            rk["steps"],
            unit="",
            goal=f"err <= {RK4_FACTOR:g} x library's ({_fmt(rk['target'])})",
            met=bool(rk["met_target"]),
            note=f"k = {rk['chosen_k']} x {s['rk4_saves']} intervals; "
            f"its max err {_fmt(rk['ladder'][-1]['max_err_vs_reference'])}",
        )
    )
    for name, label in [("library", "library (gradient_flow)"), *_LABELS.items()]:
        vt, vr = m[name]["vs_theory"], m[name]["vs_reference"]
        note = "" if name == "gd_loop" else f"vs DOP853 reference: max {_fmt(vr['max'])}"
        rows.append(C.row(f"{label}: |ratio/theory-1| median", vt["median"], unit="%"))
        rows.append(C.row(f"{label}: |ratio/theory-1| max", vt["max"], unit="%", note=note))
    return rows


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def part2_rows(p2: dict, timing: dict) -> list[dict]:
    rows = []
    for pname, pr in p2.items():
        chk = pr["traced_vs_public"]
        if chk is not None:
            rows.append(
                C.row(
                    f"work-precision {pname}: traced-rtol engine solve vs gradient_flow, "
                    "max |ratio difference|",
                    chk["max_ratio_difference"],
                    unit="",
                    goal="identical steps",
                    met=chk["identical_steps"],
                    note="Tsit5, rtol 1e-6",
                )
            )
        for tgt, walls in pr["wall_at_target"].items():
            base = walls.get("Tsit5", {}).get("wall_s")
            for sname, w in walls.items():
                if sname == "Tsit5":
                    continue
                ok = w["wall_s"] is not None and base is not None
                note = w["how"] if ok else f"n/a: {sname if w['wall_s'] is None else 'Tsit5'} "
                note += "" if ok else "does not reach the target"
                if ok and walls["Tsit5"]["how"] != "interpolated":
                    note += f"; Tsit5 {walls['Tsit5']['how']}"
                rows.append(
                    C.row(
                        f"work-precision {pname}: {sname} / Tsit5 wall at max error {tgt}",
                        w["wall_s"] / base if ok else None,
                        note=note,
                    )
                )
    if p2:
        one = timing["part2_one_solve_per_point_s"]
        rows.append(
            C.row(
                "work-precision: compile time / one warm solve of every point",
                timing["part2_compile_s"] / max(one, 1e-9),
                note=f"{timing['part2_compiles']} compiles, {timing['part2_compile_s']:.0f} s; "
                f"solves {one:.0f} s",
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------
# The figure (drawn from the JSON)
# ------------------------------------------------------------------------------------------------
_COLORS = {"Tsit5": "#1f77b4", "Dopri5": "#2ca02c", "Bosh3": "#ff7f0e", "Kvaerno5": "#d62728"}
_MARKERS = {"Tsit5": "o", "Dopri5": "s", "Bosh3": "^", "Kvaerno5": "D"}


def plot(record: dict, png: str | Path) -> Path:
    """Draw the work-precision diagram of a `baselines` record (the JSON) into `png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    wp = record["details"].get("work_precision") or {}
    if not wp:
        raise ValueError("this record has no work-precision results (skipped for time?)")
    fig, axes = plt.subplots(1, len(wp), figsize=(5.8 * len(wp), 5.6), squeeze=False)
    for ax, (pname, pr) in zip(axes[0], wp.items()):
        info = pr["problem"]
        for sname, v in pr["solvers"].items():
            pts = [p for p in v["points"] if p["max_err"] is not None and p["max_err"] > 0]
            if not pts:
                continue
            x = [p["wall_s"] for p in pts]
            y = [p["max_err"] for p in pts]
            ax.plot(
                x,
                y,
                "-",
                marker=_MARKERS.get(sname, "o"),
                color=_COLORS.get(sname),
                label=sname,
                ms=5,
                lw=1.3,
            )
            for p in pts:
                ax.annotate(
                    f"{math.log10(p['rtol']):.0f}",
                    (p["wall_s"], p["max_err"]),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                    color=_COLORS.get(sname),
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wall time of one batched solve (s; compiled, warm, median)")
        ax.set_ylabel("max over members |t_B/t_A / reference - 1|")
        desc = (
            f"{pname}: L={info.get('depth', 2)}, L_f={info.get('fusion_layer', 2)}, "
            f"width {info.get('width', '?')}, {info.get('init', 'entrywise')} init "
            f"{info.get('init_scale', 0):.3g}, {len(pr['reference']['ratios'])} members"
        )
        tight = pr.get("tsit5_tight_atol")
        if tight and tight.get("max_err"):
            ax.plot(
                [tight["wall_s"]],
                [tight["max_err"]],
                ls="none",
                marker="o",
                mfc="none",
                mec=_COLORS["Tsit5"],
                ms=8,
                label=f"Tsit5, rtol {tight['rtol']:.0e}, atol {tight['atol_scale']:.0e} x default",
            )
        handles, _ = ax.get_legend_handles_labels()
        handles.append(
            Line2D([], [], ls="none", marker="$-6$", color="0.3", ms=9, label="numbers: log10 rtol")
        )
        ax.legend(
            handles=handles,
            title=desc,
            title_fontsize=8,
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
        )
        ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    import json

    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).parent / "results"
    src = Path(argv[0]) if argv else here / "baselines.json"
    dst = Path(argv[1]) if len(argv) > 1 else here / "work_precision.png"
    print(plot(json.loads(src.read_text()), dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
