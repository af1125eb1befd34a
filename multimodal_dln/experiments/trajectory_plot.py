"""The trajectory figure of one run: loss and effective weights, with t_A and t_B marked
(Zhang et al. 2024, training trajectories; docs/theory.md §2 for the plateau L(M_A) and
W_A^uni)."""

from __future__ import annotations

import math
import os
import textwrap

import jax
import numpy as np
from matplotlib.figure import Figure

from .. import theory
from .._measurements import measure
from .._status import Status
from ._plotting import COLORS, new_figure, savefig
from ._style import MARKS, TIME_LABEL, legend, line_handle, mark_handle

__all__ = ["plot_trajectory"]


def _scalar(a) -> float:
    return float(np.asarray(a).reshape(-1)[0])


def _safe(v: float) -> float:
    return v if v != 0 else 1.0


def _one_run(traj, m, stats):
    """(trajectory, measurements, statistics) of ONE run, unwrapping batches of one."""
    if stats is None:
        raise ValueError("plot_trajectory needs the statistics the run trained on (stats=...).")
    if np.ndim(traj.ts) != 1:
        if np.shape(traj.ts)[0] != 1:
            raise ValueError(
                f"plot_trajectory draws one run; got a batch of {np.shape(traj.ts)[0]} "
                "(pass traj[i])."
            )
        traj = traj[0]
    if np.ndim(stats.sigma_xx) != 2:
        if np.shape(stats.sigma_xx)[0] != 1:
            raise ValueError(
                "plot_trajectory needs the statistics of one run (index the batch first)."
            )
        stats = jax.tree.map(lambda a: a[0], stats)
    if m is None:
        m = measure(traj, stats)
    if np.ndim(m.t_A) != 0:
        if np.size(m.t_A) != 1:
            raise ValueError(
                "plot_trajectory needs the measurements of one run (index the batch first)."
            )
        m = jax.tree.map(lambda a: a.reshape(a.shape[1:]) if a.ndim and a.shape[0] == 1 else a, m)
    return traj, m, stats


def _curves(traj, t_max, xscale):
    """(ts, loss, weights, t_hi): the saved points to draw, ending at the run's end."""
    ts, loss = np.asarray(traj.ts), np.asarray(traj.loss)
    t_end = float(traj.t_end)
    t_hi = float(t_max) if t_max is not None else t_end
    keep = ts <= t_hi * (1 + 1e-12)
    if xscale == "log":
        keep &= ts > 0
    w_all = np.asarray(traj.weights)
    ts, loss_k, w = ts[keep], loss[keep], w_all[keep]
    if t_max is None and (ts.size == 0 or ts[-1] < t_end):
        # save slots after t_end hold the final state: draw it at t_end itself
        ts = np.append(ts, t_end)
        loss_k = np.append(loss_k, loss[-1])
        w = np.concatenate([w, w_all[-1:]], axis=0)
    return ts, loss_k, w, t_hi


def _modalities(traj, w):
    """(a, b, a_end, b_end, scalar, y label): A and B effective weights (signed for scalar
    modalities, else Frobenius norms) and their final values."""
    d_A = traj.d_A
    w_A, w_B = w[..., :d_A], w[..., d_A:]
    final = np.asarray(traj.weights)[-1]
    scalar = w_A.shape[-2:] == (1, 1) and w_B.shape[-2:] == (1, 1)
    if scalar:
        a, b = w_A[:, 0, 0], w_B[:, 0, 0]
        a_end, b_end = _scalar(final[..., :d_A]), _scalar(final[..., d_A:])
        label = "$W^{tot}_m(t) / W^{tot}_m(\\mathrm{end})$"
    else:
        a, b = (np.sqrt((v**2).sum(axis=(-2, -1))) for v in (w_A, w_B))
        a_end, b_end = (float(np.linalg.norm(v)) for v in (final[..., :d_A], final[..., d_A:]))
        label = "$\\|W^{tot}_m(t)\\| / \\|W^{tot}_m(\\mathrm{end})\\|$"
    return a, b, a_end, b_end, scalar, label


def _draw_weights(ax, ts, traj, w, stats) -> list:
    """The A and B curves (and W_A^uni, scalar modalities); returns their legend handles."""
    a, b, a_end, b_end, scalar, label = _modalities(traj, w)
    ax.plot(ts, a / _safe(a_end), color=COLORS["A"], lw=1.5)
    ax.plot(ts, b / _safe(b_end), color=COLORS["B"], lw=1.5)
    handles = [line_handle("modality A", COLORS["A"]), line_handle("modality B", COLORS["B"])]
    if scalar:
        w_uni = _scalar(stats.unimodal_weights("A"))
        rel = w_uni / _safe(a_end)
        ax.axhline(rel, color=COLORS["A"], ls="-.", lw=0.9)
        text = f"theory $W_A^{{uni}}/W_A^{{tot}}(\\mathrm{{end}})$ = {rel:.3g}"
        handles.append(line_handle(text, COLORS["A"], ls="-.", lw=0.9))
    ax.set_ylabel(label)
    return handles


def _mark_times(axes, t_A, t_B, xscale, t_hi) -> list:
    """Dotted vertical lines at t_A and t_B (labelled in place); returns their legend handles."""
    shown = []
    for ax in axes:
        for t, name, c in ((t_A, "A", COLORS["A"]), (t_B, "B", COLORS["B"])):
            if math.isfinite(t) and (xscale == "linear" or t > 0):
                ax.axvline(t, color=c, **MARKS["phase_time"])
                if ax is axes[0]:
                    shown.append((name, c))
                ax.annotate(
                    f"$t_{name}$",
                    xy=(t, 0.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, 4),
                    textcoords="offset points",
                    color=c,
                    fontsize="small",
                )
        ax.set_xscale(xscale)
        ax.set_xlabel(TIME_LABEL)
        if xscale == "linear":
            ax.set_xlim(0, t_hi)
    return [mark_handle("phase_time", f"$t_{n}$ (measured)", c) for n, c in shown]


def plot_trajectory(
    traj_member,
    measurements_member=None,
    stats=None,
    *,
    xscale: str = "linear",
    t_max: float | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    figsize=(8.0, 3.2),
    dpi: int = 150,
) -> Figure:
    """Loss and effective weights of ONE run (Zhang et al. 2024, training trajectories), two panels:

    - left: loss / initial loss (black), with the unimodal plateau L(M_A)/L(0) dashed;
    - right: W_A^tot and W_B^tot divided by their final values (A blue, B fuchsia); for
      scalar modalities the signed weights (so the plateau of W_A at W_A^uni / W_A^tot(inf) =
      1 + rho/r on the toy data shows, dash-dotted), otherwise Frobenius norms.

    t_A and t_B are dotted vertical lines in both panels, labelled in the modality colours;
    the legends explain every line.
    `traj_member` is one member (`traj[i]`), `measurements_member` its `measure(...)` entry
    (computed if None), `stats` the statistics it trained on (one member). Time is
    gradient-flow time t (for GD, steps x lr; `_style.TIME_LABEL`). The x-axis runs to the end
    of the run (or `t_max`); `xscale` "linear" (as in the paper) or "log".
    """
    traj, m, stats = _one_run(traj_member, measurements_member, stats)
    if xscale not in ("linear", "log"):
        raise ValueError(f"xscale must be 'linear' or 'log'; got {xscale!r}.")
    ts, loss, w, t_hi = _curves(traj, t_max, xscale)
    l0 = float(np.asarray(traj.loss)[0])
    fig, (ax_l, ax_w) = new_figure(figsize, ncols=2)
    ax_l.plot(ts, loss / _safe(l0), color=COLORS["loss"], lw=1.5)
    plateau = float(theory.plateau_loss(stats)) / _safe(l0)
    ax_l.axhline(plateau, color="0.4", ls="--", lw=1)
    ax_l.set_ylabel("loss / initial loss")
    w_handles = _draw_weights(ax_w, ts, traj, w, stats)
    t_A, t_B = float(m.t_A), float(m.t_B)
    t_handles = _mark_times((ax_l, ax_w), t_A, t_B, xscale, t_hi)
    l_handles = [
        line_handle("loss", COLORS["loss"]),
        line_handle(f"theory $L(M_A)/L(0)$ = {plateau:.3g}", "0.4", ls="--", lw=1),
    ]
    legend(ax_l, l_handles + t_handles, loc="best")
    legend(ax_w, w_handles + t_handles, loc="best")
    if bool(np.asarray(m.success)):
        sub = f"$t_A$ = {t_A:.4g}, $t_B$ = {t_B:.4g}, $t_B/t_A$ = {t_B / t_A:.4g}"
    else:
        sub = _failure_subtitle(traj, m)
    fig.suptitle(title + "\n" + sub if title else sub, fontsize="small")
    if path is not None:
        savefig(fig, path, dpi=dpi)
    return fig


def _failure_subtitle(traj_member, m) -> str:
    """'run FAILED (STATUS): reason' from the measurement (which includes the run's own
    status), else from the trajectory; wrapped to fit the figure."""
    source = m if hasattr(m, "failure_reasons") and hasattr(m, "status") else traj_member
    code = int(np.asarray(source.status).reshape(-1)[0])
    reason = source.failure_reasons()[0]
    text = f"run FAILED ({Status(code).name}): {reason}; no phase times"
    return "\n".join(textwrap.wrap(text.replace("$", "\\$"), width=110))
