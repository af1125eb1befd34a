"""Shared pieces: environment record, timing, compile counting, toy batches, the batched VF."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import platform
import re
import statistics as _st
import time
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.flatten_util
import numpy as np

import multimodal_dln as mdln
from multimodal_dln import sweeps
from multimodal_dln._io import jsonable as jsonable  # noqa: F401  (C.jsonable)

# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001
        return None


def env_info() -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    dev = jax.devices()[0]
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "versions": {
            m: _version(m)
            for m in ("jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "multimodal-dln")
        },
        "x64": bool(jax.config.jax_enable_x64),
        "env": {
            k: os.environ.get(k)
            for k in (
                "XLA_FLAGS",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
                "JAX_COMPILATION_CACHE_DIR",
                "EQX_ON_ERROR",
            )
        },
        "loadavg": loadavg(),
    }


def is_gpu() -> bool:
    return jax.default_backend() == "gpu"


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    """Progress line (benchmarks are long; the table comes at the end)."""
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------------
# Time budget: full mode must finish in 10 minutes on the shared 2-core CPU, where compilation
# alone takes 7-25 s per structure depending on the load. Optional parts of a benchmark ask
# `can_afford(estimate)` first; skipped parts are recorded (`skipped`) and said in the JSON.
# ------------------------------------------------------------------------------------------------
BUDGET: dict[str, Any] = {"deadline": None, "reserve": 0.0, "skipped": []}

# Rough minimum wall time (s) of each benchmark's mandatory part at load ~5 (full mode).
MINIMUM_S = {
    "sweep": 150,
    "overhead": 80,
    "scaling": 90,
    "buckets": 35,
    "dtype": 45,
    "row_order": 25,
    "gpu": 10,
}


def set_budget(deadline: float | None) -> None:
    BUDGET.update(deadline=deadline, reserve=0.0, skipped=[])


def set_reserve(seconds: float) -> None:
    """Time to keep for the benchmarks still to run after the current one."""
    BUDGET["reserve"] = float(seconds)
    BUDGET["skipped"] = []


def can_afford(estimate_s: float, what: str) -> bool:
    """Whether an optional part estimated at `estimate_s` fits before the deadline (always
    True without a deadline). A refusal is recorded in `BUDGET["skipped"]`."""
    if BUDGET["deadline"] is None:
        return True
    ok = time.perf_counter() + estimate_s + BUDGET["reserve"] <= BUDGET["deadline"]
    if not ok:
        BUDGET["skipped"].append(what)
        log(f"  (time budget) skipped: {what}")
    return ok


def block(x):
    return jax.block_until_ready(x)


def time_call(fn: Callable[[], Any], repeats: int = 3) -> dict[str, Any]:
    """Run `fn()` (which must block on its result) `repeats` times; wall and CPU times.

    CPU time is this process's (all threads): less sensitive than wall time to other jobs on
    the machine, but it counts XLA's worker threads, so it can exceed wall time.
    """
    walls, cpus, out = [], [], None
    for _ in range(max(1, repeats)):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {
        "wall_s": _st.median(walls),
        "cpu_s": _st.median(cpus),
        "wall_all_s": walls,
        "cpu_all_s": cpus,
        "result": out,
    }


TIMING = {"min_time": 0.2, "repeats": 5}
"""Defaults of `time_per_call`; `set_mode("tiny")` shrinks them (smoke test: structure only)."""


def set_mode(mode: str) -> None:
    if mode == "tiny":
        TIMING.update(min_time=0.005, repeats=2)
    else:
        TIMING.update(min_time=0.2, repeats=5)


def time_per_call(
    fn: Callable[[], Any], *, min_time: float | None = None, repeats: int | None = None
) -> dict[str, float]:
    """Median over `repeats` of the mean time of `fn()` in a loop lasting >= `min_time` s."""
    min_time = TIMING["min_time"] if min_time is None else min_time
    repeats = TIMING["repeats"] if repeats is None else repeats
    fn()  # warm
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    number = max(1, math.ceil(min_time / one))
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(number):
            fn()
        walls.append((time.perf_counter() - t) / number)
        cpus.append((time.process_time() - c) / number)
    return {
        "wall_s": _st.median(walls),
        "cpu_s": _st.median(cpus),
        "number": number,
        "repeats": repeats,
    }


def strip(d: dict) -> dict:
    """A `time_call` record without its result (for JSON)."""
    return {k: v for k, v in d.items() if k != "result"}


class CompileLog:
    """Count XLA compilations inside a `with` block (jax_log_compiles messages).

    `entries` lists (function name, compile seconds) of every compilation, `count` how many.
    """

    _pat = re.compile(r"Finished XLA compilation of (.+?) in ([0-9.eE+-]+) sec")

    def __enter__(self):
        self.entries: list[tuple[str, float]] = []
        outer = self

        class _H(logging.Handler):
            def emit(self, record):
                m = outer._pat.search(record.getMessage())
                if m:
                    outer.entries.append((m.group(1), float(m.group(2))))

        self._handler = _H(level=logging.DEBUG)
        self._logger = logging.getLogger("jax")
        self._old_level = self._logger.level
        self._old_flag = jax.config.jax_log_compiles
        self._old_prop = self._logger.propagate
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False  # keep the console quiet
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc):
        jax.config.update("jax_log_compiles", self._old_flag)
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old_level)
        self._logger.propagate = self._old_prop
        return False

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def seconds(self) -> float:
        return float(sum(s for _, s in self.entries))

    def big(self, threshold: float = 0.2) -> list[tuple[str, float]]:
        return [e for e in self.entries if e[1] >= threshold]


# ------------------------------------------------------------------------------------------------
# Table rows
# ------------------------------------------------------------------------------------------------


def row(
    metric: str,
    value,
    *,
    unit: str = "x",
    goal: str | None = None,
    met: bool | None = None,
    note: str = "",
):
    """One line of the printed table: a ratio (or fraction), its goal and whether it was met."""
    v = (
        None
        if value is None or (isinstance(value, float) and not math.isfinite(value))
        else float(value)
    )
    return {"metric": metric, "value": v, "unit": unit, "goal": goal, "met": met, "note": note}


def fmt_value(r: dict) -> str:
    v = r["value"]
    if v is None:
        return "n/a"
    unit = r.get("unit", "x")
    if unit == "%":
        return f"{100 * v:.1f} %" if abs(v) >= 1e-3 or v == 0 else f"{100 * v:.1g} %"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    elif abs(v) >= 0.01 or v == 0:
        s = f"{v:.3g}"
    else:
        s = f"{v:.2e}"
    return f"{s} {unit}".rstrip() if unit else s


def format_table(results: list[dict]) -> str:
    lines = []
    head = ("benchmark", "metric", "value", "goal", "met")
    body = []
    for res in results:
        for r in res.get("rows", []):
            met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
            body.append((res["name"], r["metric"], fmt_value(r), r.get("goal") or "-", met))
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    widths[1] = min(widths[1], 70)

    def fmt(cols):
        return " | ".join(
            str(c).ljust(w) if i != 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cols, widths))
        )

    lines.append(fmt(head))
    lines.append("-+-".join("-" * w for w in widths))
    for b in body:
        lines.append(fmt(b))
    return "\n".join(lines)


def markdown_table(results: list[dict]) -> str:
    lines = ["| benchmark | metric | value | goal | met |", "| --- | --- | ---: | --- | --- |"]
    for res in results:
        for r in res.get("rows", []):
            met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
            cells = (res["name"], r["metric"], fmt_value(r), r.get("goal") or "-", met)
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Batches of toy networks
# ------------------------------------------------------------------------------------------------


def toy_batch(
    rho, ratio, seed, init_scale, *, depth: int, fusion_layer: int, width: int, init: str
):
    """A batch of toy problems and networks: one member per entry of the (equal-length) arrays,
    from the sweep engine's builder (`multimodal_dln.sweeps.inputs`: a member's network is drawn
    from `fold_in(key(seed), 0)`, its statistics are `Statistics.toy(rho, ratio)`). Members must
    differ in (rho, ratio, seed, init_scale). Returns `(nets, stats)`."""
    sweep = sweeps.zipped(
        rho=np.asarray(rho, dtype=float),
        ratio=np.asarray(ratio, dtype=float),
        seed=np.asarray(seed),
        init_scale=np.asarray(init_scale, dtype=float),
    ) * sweeps.product(depth=depth, fusion_layer=fusion_layer, width=width, init=init)
    [g] = sweeps.inputs(sweep)
    if len(g.members) != len(sweep):
        raise ValueError("toy_batch: members repeat; give each a distinct (rho, ratio, seed, u0).")
    return g.nets, g.stats


def n_params(nets) -> int:
    """Parameters per member of a batch of networks."""
    return int(sum(a[0].size for a in jax.tree.leaves(eqx.filter(nets, eqx.is_array))))


def batched_vector_field(nets, stats):
    """The engine's vector field, rebuilt from public pieces: -grad of the population loss with
    respect to each member's flat parameter vector (`ravel_pytree`, as in
    `multimodal_dln._gradient_flow`), vmapped over members and jitted.

    Returns `(flat, vf, loss, summary)`: the stacked flat parameters `(B, P)` and jitted batched
    functions `vf(flat, stats)`, `loss(flat, stats)` and `summary(flat, stats)` (what the engine
    saves at each save time: W_tot, its derivative along the flow by a jvp, and the loss). The
    unbatched versions are attached as `vf.one`, `loss.one`, `summary.one`.
    """
    params, static = eqx.partition(nets, eqx.is_array)
    p0 = jax.tree.map(lambda a: a[0], params)
    _, unravel = jax.flatten_util.ravel_pytree(p0)
    flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(params)

    def loss_one(f, s):
        return mdln.loss(eqx.combine(unravel(f), static), s)

    def vf_one(f, s):
        return -jax.grad(loss_one)(f, s)

    def summary_one(f, s):
        readout = lambda g: eqx.combine(unravel(g), static).total_weights()  # noqa: E731
        w, w_dot = jax.jvp(readout, (f,), (vf_one(f, s),))
        return w, w_dot, loss_one(f, s)

    vf = jax.jit(jax.vmap(vf_one))
    loss = jax.jit(jax.vmap(loss_one))
    summary = jax.jit(jax.vmap(summary_one))
    vf.one, loss.one, summary.one = vf_one, loss_one, summary_one
    return flat, vf, loss, summary


def rel_err_stats(sim, theory, ok=None) -> dict[str, Any]:
    """median and max of |sim / theory - 1| over members (successful ones if `ok` is given)."""
    sim, theory = np.asarray(sim, float), np.asarray(theory, float)
    mask = np.isfinite(sim) & np.isfinite(theory)
    if ok is not None:
        mask &= np.asarray(ok, bool)
    err = np.abs(sim[mask] / theory[mask] - 1.0)
    if err.size == 0:
        return {"median": None, "max": None, "n": 0, "n_total": int(sim.size)}
    return {
        "median": float(np.median(err)),
        "max": float(err.max()),
        "n": int(err.size),
        "n_total": int(sim.size),
    }
