"""`balanced_flow`: the continuous-time counterpart of the balanced trainer on population
statistics (the duty-cycle-averaged hybrid flow of docs/theory.md §6).

Gradient flow on the vector field averaged over one re-balancing duty cycle,

    dθ/dτ = -[ (1 - w) ∇L_regular + w ∇L_care(k) ],    w = Q/(Q+1) while |d_speed| > α, else 0,
    dM/dτ = (1 - w) μ(∇L_regular) / lr,

(τ = steps x lr), with M(0) = μ(θ_0), integrated with diffrax; a diffrax event stops each
segment where |d_speed| crosses α and the next segment continues in the other mode.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Int

from .._gradient_flow import save_grid
from .._measurements import crossing_time
from .._network import FusionDLN
from .._solve import integrate
from .._statistics import Statistics
from .._two_head import TwoHeadFusionNet
from .._validation import check, check_positive
from . import _diagnostics as _g
from ._args import check_flow_inputs, flow_axes
from ._common import (
    check_alpha,
    half_thresholds,
    stats_diag,
)
from ._schedule import CARE_0, CARE_1, REGULAR, mode_loss

__all__ = ["FlowRun", "balanced_flow"]

RANDOM_AVERAGE = 3
"""Mode code of the random variant's 1/3-1/3-1/3 average field."""


class FlowRun(eqx.Module):
    """Result of `balanced_flow` (batched like the inputs).

    - `ts`: `(n,)` save times (gradient-flow units τ = steps x lr).
    - `weights`: `(n, o, d)` effective weights of the prediction (head average).
    - `loss`, `d_util`, `d_speed`: `(n,)`; `balancing`: `(n,)` 0 regular, 1 care 0, 2 care 1,
      3 random average.
    - `t_A`, `t_B`: first times ||W_A|| >= ||W_A^uni||/2, ||W_B|| >= ||W*_B||/2 (cubic Hermite
      interpolation of the saved grid with finite-difference slopes; NaN if never).
    - `n_switches`: number of mode switches; `t_end`; `ok`: no solver failure and fewer
      segments than `max_segments`.
    """

    ts: Float[Array, "*batch n"]
    weights: Float[Array, "*batch n o d"]
    loss: Float[Array, "*batch n"]
    d_util: Float[Array, "*batch n"]
    d_speed: Float[Array, "*batch n"]
    balancing: Int[Array, "*batch n"]
    t_A: Float[Array, "*batch"]
    t_B: Float[Array, "*batch"]
    n_switches: Int[Array, "*batch"]
    n_segments: Int[Array, "*batch"]
    status: Int[Array, "*batch"]
    t_end: Float[Array, "*batch"]
    ok: Array
    final: eqx.Module


def _fd_slope(ts, y):
    """Finite-difference slopes on a non-uniform grid (central inside, one-sided at the ends)."""
    inner = (y[2:] - y[:-2]) / (ts[2:] - ts[:-2])
    first = (y[1] - y[0]) / (ts[1] - ts[0])
    last = (y[-1] - y[-2]) / (ts[-1] - ts[-2])
    return jnp.concatenate([first[None], inner, last[None]])


class _FlowCfg(eqx.Module):
    algorithm: str = eqx.field(static=True)
    variant: str = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    max_segments: int = eqx.field(static=True)
    gd_correction: bool = eqx.field(static=True)


class _Dynamics:
    """The mode-dependent vector fields of one member on flat parameters, the diagnostics saved
    along the flow and the mode choice (plain Python, built inside the trace)."""

    def __init__(self, params, static, stats, lr, alpha, Q, cfg: _FlowCfg):
        self.net0 = eqx.combine(params, static)
        self.flat0, self.unravel = jax.flatten_util.ravel_pytree(params)
        self.dtype = self.flat0.dtype
        self.block0 = _g.blocked_selector(self.net0, 0, cfg.variant)
        self.block1 = _g.blocked_selector(self.net0, 1, cfg.variant)
        self.Qf = jnp.asarray(Q, self.dtype)
        self.static, self.stats, self.lr, self.alpha, self.cfg = static, stats, lr, alpha, cfg

    def grad_mode(self, p_tree, mode):
        """Gradient of the loss in `mode` with the blocked parameters' entries zeroed."""
        g = jax.grad(lambda q: mode_loss(eqx.combine(q, self.static), self.stats, mode))(p_tree)
        for sel, care in ((self.block0, CARE_0), (self.block1, CARE_1)):
            hit = mode == care
            g = eqx.tree_at(
                sel, g, replace_fn=lambda u, hit=hit: jnp.where(hit, jnp.zeros_like(u), u)
            )
        return g

    def step_field(self, flat, mode):
        # -grad of the loss in `mode` with the blocked updates zeroed: one GD step is
        # flat + lr * step_field(flat, mode).
        return -jax.flatten_util.ravel_pytree(self.grad_mode(self.unravel(flat), mode))[0]

    def corrected(self, flat, mode):
        # Returns (f, f_mod): the step field and the field of the modified equation. GD with
        # step lr follows the flow of f - (lr/2) Df f up to O(lr^2) (first-order backward-error
        # correction; for f = -grad L it is -grad L - (lr/2) H grad L).
        if not self.cfg.gd_correction:
            f = self.step_field(flat, mode)
            return f, f
        f, jf = jax.jvp(lambda q: self.step_field(q, mode), (flat,), (self.step_field(flat, mode),))
        return f, f - 0.5 * self.lr * jf

    def field(self, t, y, mode):
        flat, M = y
        f_reg, c_reg = self.corrected(flat, REGULAR)
        mu = _g.mu(self.unravel(f_reg), self.unravel(flat))
        algorithm = self.cfg.algorithm
        if algorithm == "random":
            rnd = mode == RANDOM_AVERAGE
            c_0, c_1 = self.corrected(flat, CARE_0)[1], self.corrected(flat, CARE_1)[1]
            f_avg = (c_reg + c_0 + c_1) / 3.0
            dflat = jnp.where(rnd, f_avg, c_reg)
            w_reg = jnp.where(rnd, 1.0 / 3.0, 1.0)
        elif algorithm == "vanilla":
            dflat, w_reg = c_reg, 1.0
        else:
            care_mode = jnp.where(mode == REGULAR, CARE_0, mode)  # any care mode when regular
            w = jnp.where(mode == REGULAR, 0.0, self.Qf / (self.Qf + 1.0))
            dflat = (1.0 - w) * c_reg + w * self.corrected(flat, care_mode)[1]
            w_reg = 1.0 - w
        return dflat, w_reg * mu / self.lr

    @staticmethod
    def d_speed(M):
        return _g.conditional_speeds(M)[2]

    def summary(self, t, y, mode):
        flat, M = y
        net = eqx.combine(self.unravel(flat), self.static)
        w_pred, du = stats_diag(net, self.stats, self.cfg.metric)
        lval = mode_loss(net, self.stats, REGULAR)
        return w_pred, lval, du, self.d_speed(M), mode.astype(self.dtype)

    def cond(self, t, y, args, **kwargs):
        """Event function: |d_speed| - α, signed by the segment (0: never fires)."""
        mode, sign = args
        return sign * (jnp.abs(self.d_speed(y[1])) - self.alpha)

    def choose_mode(self, y):
        d = self.d_speed(y[1])
        if self.cfg.algorithm == "random":
            return jnp.asarray(RANDOM_AVERAGE, jnp.int32)
        if self.cfg.algorithm == "vanilla":
            return jnp.asarray(REGULAR, jnp.int32)
        return jnp.where(jnp.abs(d) > self.alpha, jnp.where(d > 0, CARE_0, CARE_1), REGULAR).astype(
            jnp.int32
        )

    def choose_mode_forced(self, y):
        d = self.d_speed(y[1])
        return jnp.where(d > 0, CARE_0, CARE_1).astype(jnp.int32)

    def default_atol(self, params):
        """1e-6 x the smallest RMS of a parameter array (docs/theory.md §7)."""
        if self.cfg.atol is not None:
            return self.cfg.atol
        rms = jnp.stack([jnp.sqrt(jnp.mean(a**2)) for a in jax.tree.leaves(params)])
        return 1e-6 * jnp.maximum(jnp.min(rms), jnp.finfo(self.dtype).tiny)


def _solve_segment(field, summary, cond, *, t0, t1, y0, args, save_ts, dt0, rtol, atol, cfg):
    """One segment of the hybrid flow: the package's one solve engine (`_solve.integrate`:
    Tsit5, PID, summaries on `save_ts`) from t0 to t1, stopping early at the mode-switch event
    `cond` (if not None). Returns `(saved, y_end, t_end, saved_ok, result)`; `saved_ok` marks
    the save times reached."""
    event = None
    if cond is not None:
        event = diffrax.Event(cond, root_finder=optx.Newton(rtol=1e-10, atol=1e-10), direction=True)
    seg = integrate(
        lambda tt, yy, a: field(tt, yy, a[0]),
        y0,
        t0,
        t1,
        save_ts,
        lambda tt, yy, a: summary(tt, yy, a[0]),
        solver=diffrax.Tsit5(),
        rtol=rtol,
        atol=atol,
        max_steps=cfg.max_steps,
        event=event,
        args=args,
        dt0=dt0,
    )
    return seg.saved, seg.y_end, seg.t_end, seg.reached, seg.result


def _segments(dyn: _Dynamics, y0, mode0, bufs, ts, t_max, warmup_time, atol):
    """The event-switched segment loop: each segment runs in one mode until |d_speed| crosses α
    (balanced), the warm-up ends or t_max; returns the final loop state."""
    cfg, lr = dyn.cfg, dyn.lr
    balanced = cfg.algorithm == "balanced"

    def seg_cond(c):
        t, _, _, _, k, ok, _, _ = c
        return (t < t_max) & (k < cfg.max_segments) & ok

    def seg_body(c):
        t, y, mode, bufs, k, ok, n_sw, _ = c
        warm = t < warmup_time
        t1 = jnp.where(warm, jnp.minimum(warmup_time, t_max), t_max)
        # Event sign: regular -> stop when |d| rises above alpha; balancing -> when it falls
        # below; warm-up, vanilla and random segments never switch (sign 0: the event
        # function is identically 0 and never fires).
        sign = jnp.where(balanced & ~warm, jnp.where(mode == REGULAR, 1.0, -1.0), 0.0)
        saved, y_end, t_end, reached, result = _solve_segment(
            dyn.field, dyn.summary, dyn.cond if balanced else None,
            t0=t, t1=t1, y0=y, args=(mode, sign), save_ts=jnp.clip(ts, t, t1),
            # an explicit first step (one lr, i.e. one GD step) avoids diffrax's initial
            # step-size search, which would trace the vector field twice more
            dt0=jnp.minimum(lr, jnp.maximum(t1 - t, 1e-12)),
            rtol=cfg.rtol, atol=atol, cfg=cfg,
        )  # fmt: skip
        take = (ts >= t) & (ts <= t_end) & reached
        bufs = jax.tree.map(
            lambda b, s: jnp.where(take.reshape((-1,) + (1,) * (b.ndim - 1)), s, b), bufs, saved
        )
        evt = result == diffrax.RESULTS.event_occurred
        good = (result == diffrax.RESULTS.successful) | evt
        if balanced:
            flipped = jnp.where(mode == REGULAR, dyn.choose_mode_forced(y_end), REGULAR)
            new_mode = jnp.where(evt, flipped, dyn.choose_mode(y_end))
            new_mode = jnp.where(t_end < warmup_time, REGULAR, new_mode)
        else:
            new_mode = jnp.where(t_end < warmup_time, REGULAR, dyn.choose_mode(y_end))
        n_sw = n_sw + (new_mode != mode).astype(jnp.asarray(n_sw).dtype)
        new_mode = new_mode.astype(jnp.int32)
        return (t_end, y_end, new_mode, bufs, k + 1, ok & good, n_sw, result._value)

    c0 = (
        jnp.zeros((), dyn.dtype),
        y0,
        mode0,
        bufs,
        jnp.asarray(0),
        jnp.asarray(True),
        jnp.asarray(0),
        diffrax.RESULTS.successful._value,
    )
    return jax.lax.while_loop(seg_cond, seg_body, c0)


def _flow_one(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg: _FlowCfg):
    dyn = _Dynamics(params, static, stats, lr, alpha, Q, cfg)
    atol = dyn.default_atol(params)
    M0 = _g.mu(dyn.grad_mode(params, REGULAR), params)  # the first (regular) step's contribution
    y0 = (dyn.flat0, M0)
    w_shape = jax.eval_shape(lambda: dyn.summary(0.0, y0, jnp.asarray(0, jnp.int32)))
    bufs = jax.tree.map(lambda s: jnp.full((ts.shape[0],) + s.shape, 0, s.dtype), w_shape)
    mode0 = jnp.where(warmup_time > 0, REGULAR, dyn.choose_mode(y0)).astype(jnp.int32)
    t_end, y_end, _, bufs, k, ok, n_sw, status = _segments(
        dyn, y0, mode0, bufs, ts, t_max, warmup_time, atol
    )
    w, lval, du, ds, modes = bufs
    d_A = dyn.net0.d_A
    nA = jnp.linalg.norm(w[..., :d_A], axis=(-2, -1))
    nB = jnp.linalg.norm(w[..., d_A:], axis=(-2, -1))
    # Crossings on the cubic Hermite interpolant with finite-difference slopes (the flow's
    # own derivative would double the compiled graph; the grid is fine, the error O(h^2)).
    dnA, dnB = _fd_slope(ts, nA), _fd_slope(ts, nB)
    thr_A, thr_B = half_thresholds(stats)
    return FlowRun(
        ts=ts,
        weights=w,
        loss=lval,
        d_util=du,
        d_speed=ds,
        balancing=modes.astype(jnp.int32),
        t_A=crossing_time(ts, nA, dnA, thr_A),
        t_B=crossing_time(ts, nB, dnB, thr_B),
        n_switches=n_sw,
        n_segments=k,
        status=status,
        t_end=t_end,
        ok=ok & (t_end >= t_max),
        final=eqx.combine(dyn.unravel(y_end[0]), static),
    )


@eqx.filter_jit
def _flow_jit(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg, axes):
    if axes is None:
        return _flow_one(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg)
    fn = eqx.filter_vmap(
        lambda p, s, a, b, c, w: _flow_one(p, static, s, a, b, c, w, t_max, ts, cfg), in_axes=axes
    )
    return fn(params, stats, lr, alpha, Q, warmup_time)


def balanced_flow(
    net: FusionDLN | TwoHeadFusionNet,
    stats: Statistics,
    *,
    lr: ArrayLike,
    t_max: float,
    algorithm: str = "balanced",
    alpha: ArrayLike = 0.01,
    Q: ArrayLike = 5,
    warmup: ArrayLike = 0,
    variant: str = "code",
    metric: str = "r2",
    ts: ArrayLike | None = None,
    n_save: int = 400,
    rtol: float = 1e-8,
    atol: float | None = None,
    max_steps: int = 100_000,
    max_segments: int = 64,
    gd_correction: bool = True,
) -> FlowRun:
    """The continuous-time counterpart of `train` on population statistics (linear networks).

    Integrates the duty-cycle averaged vector field of the module docstring with diffrax
    (Tsit5, adaptive); each segment ends at a diffrax event where |d_speed| crosses α, and the
    next segment runs in the other mode (regular <-> care k, k by the sign of d_speed).
    `warmup` is in steps (warm-up time = warmup x lr); `lr` sets the time-to-steps conversion of
    M (and of the warm-up), not a step size. ``algorithm="vanilla"`` is plain gradient flow
    with the diagnostics tracked; ``"random"`` the 1/3-1/3-1/3 average after the warm-up.
    With `gd_correction` each field f is replaced by the first-order modified-equation field
    f - (lr/2) Df f, which gradient descent with step lr follows to O(lr²).

    Saves on `ts` (default: t = 0 and `n_save` - 1 log-spaced times up to `t_max`).
    Batched like `train` (networks, statistics, lr, α, Q, warm-up).
    """
    check_flow_inputs(net, stats, algorithm, metric)
    t_max = float(check_positive("t_max", t_max))
    ts = save_grid(t_max, int(n_save), 1e-4) if ts is None else ts
    t_max = jnp.asarray(t_max, dtype=float)  # traced: a new horizon does not recompile
    lr = check_positive("lr (learning rate)", jnp.asarray(lr, dtype=float))
    alpha = check_alpha(alpha)
    Q = jnp.asarray(Q, dtype=float)
    Q = check(Q, Q < 1, f"Q (re-balancing window) must be >= 1; got {Q}.")
    warmup = check_positive("warmup", jnp.asarray(warmup, dtype=float), allow_zero=True)
    warmup_time = warmup * lr
    ts = jnp.asarray(ts, dtype=float)
    cfg = _FlowCfg(
        algorithm, variant, metric, float(rtol), atol, int(max_steps), int(max_segments),
        bool(gd_correction),
    )  # fmt: skip
    params, static = eqx.partition(net, eqx.is_array)
    axes = flow_axes(net, stats, (lr, alpha, Q, warmup_time))
    return _flow_jit(params, static, stats, lr, alpha, Q, warmup_time, t_max, ts, cfg, axes)
