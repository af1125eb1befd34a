"""Compile time of one structure, split into its stages, with XLA:CPU's two fusion emitters.

What a user waits for before the first member of a new structure is solved: `gradient_flow`
on a batch of 64 toy members (width 16, the default 512 saves) traces the solve (Python),
lowers it to StableHLO and has XLA compile it; small eager programs (input checks, the horizon
estimate) compile too. JAX reports each stage's duration through `jax.monitoring`; the first
call's wall time includes them all and the run, the run time is the median of three more
calls.

Three fresh processes, one after another, measure every structure of `STRUCTURES`:

1. ``legacy``: the package default, XLA:CPU's legacy fusion emitters
   (``--xla_cpu_use_fusion_emitters=false``, `multimodal_dln._cpu_codegen`), empty
   persistent compilation cache;
2. ``warm``: the same, again, with the cache the first process filled (what a second
   `mdln sweep` of the same structure waits for);
3. ``emitters``: XLA's default MLIR fusion emitters (``MDLN_XLA_CPU_FLAGS=0``), cache off.

Headline ratios (same run): XLA compile time, default emitters / legacy emitters; run time,
legacy / default emitters (> 1 would mean the cheaper compile costs run time); and the time
ratio t_B/t_A of member 0 compared between the two (they must agree to round-off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from multimodal_dln._cpu_codegen import CPU_FLAG

from . import _common as C

NAME = "compile"
DESCRIPTION = "compile time per structure (trace, lower, XLA) with legacy vs default emitters"

STRUCTURES = {"full": [(2, 1), (2, 2), (3, 2), (4, 3)], "quick": [(2, 2), (3, 2)],
              "tiny": [(2, 2)]}  # fmt: skip

_SCRIPT = """
import collections, json, time
import jax, jax.numpy as jnp, equinox as eqx
import multimodal_dln as mdln
events = collections.defaultdict(float)
jax.monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: events.__setitem__(name, events[name] + secs))
STAGES = {{"trace": "/jax/core/compile/jaxpr_trace_duration",
          "lower": "/jax/core/compile/jaxpr_to_mlir_module_duration",
          "xla": "/jax/core/compile/backend_compile_duration"}}
out = []
for depth, lf in {structures}:
    n = 64
    stats = jax.vmap(mdln.Statistics.toy)(jnp.linspace(-0.5, 0.5, n), jnp.full(n, 2.0))
    nets = eqx.filter_vmap(lambda k: mdln.FusionDLN.init(
        k, depth=depth, fusion_layer=lf, width=16, d_A=1, d_B=1,
        init_scale={{2: 1e-6, 3: 1e-2}}.get(depth, 5e-2)))(jax.random.split(jax.random.key(0), n))
    jax.block_until_ready((stats, nets))
    events.clear()
    t0 = time.perf_counter()
    tr = mdln.gradient_flow(nets, stats, shard=False)
    jax.block_until_ready(tr.weights)
    t1 = time.perf_counter()
    stages = {{k: events[v] for k, v in STAGES.items()}}
    runs = []
    for _ in range(3):
        t2 = time.perf_counter()
        tr = mdln.gradient_flow(nets, stats, shard=False)
        jax.block_until_ready(tr.weights)
        runs.append(time.perf_counter() - t2)
    ratio = float(mdln.measure(tr, stats).time_ratio[0])
    out.append(dict(depth=depth, fusion_layer=lf, first_s=t1 - t0, run_s=sorted(runs)[1],
                    time_ratio=ratio, **stages))
print(json.dumps(out))
"""


def _process(structures, env: dict) -> list[dict]:
    script = _SCRIPT.format(structures=structures)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env(**kw) -> dict:
    """This environment without the flag the package appended on import (each child sets it
    itself unless told not to), plus `kw`."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f != CPU_FLAG]
    return {**os.environ, "XLA_FLAGS": " ".join(flags), **kw}


def run(mode: str) -> dict:
    structures = STRUCTURES[mode]
    with tempfile.TemporaryDirectory(prefix="mdln-cache-") as cache:
        on = dict(MDLN_COMPILATION_CACHE_DIR=cache, MDLN_COMPILATION_CACHE="1")
        C.log("compile: legacy emitters, cold cache")
        legacy = _process(structures, _env(**on))
        C.log("compile: legacy emitters, warm cache")
        warm = _process(structures, _env(**on))
    C.log("compile: default emitters, no cache")
    emitters = _process(structures, _env(MDLN_COMPILATION_CACHE="0", MDLN_XLA_CPU_FLAGS="0"))
    rows = []
    for lg, wm, em in zip(legacy, warm, emitters, strict=True):
        tag = f"L={lg['depth']}, L_f={lg['fusion_layer']}"
        compile_s = lg["first_s"] - lg["run_s"]
        agree = abs(lg["time_ratio"] / em["time_ratio"] - 1)
        rows += [
            C.row(f"{tag}: XLA compile, default / legacy emitters", em["xla"] / lg["xla"],
                  goal="> 1", met=em["xla"] > lg["xla"],
                  note=f"{em['xla']:.1f} s / {lg['xla']:.1f} s; trace {lg['trace']:.1f} s, "
                       f"lower {lg['lower']:.1f} s"),
            C.row(f"{tag}: run time, legacy / default emitters", lg["run_s"] / em["run_s"],
                  goal="<= 1.1", met=lg["run_s"] <= 1.1 * em["run_s"],
                  note=f"time ratios agree to {agree:.1e}"),
            C.row(f"{tag}: first call, cold / warm cache", lg["first_s"] / wm["first_s"],
                  note=f"compile {compile_s:.1f} s cold (goal <= 3 s), "
                       f"{wm['first_s'] - wm['run_s']:.1f} s warm (goal <= 1 s)"),
        ]  # fmt: skip
    return {"rows": rows, "details": {"legacy": legacy, "warm": warm, "emitters": emitters}}
