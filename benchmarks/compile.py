"""Compile time of one structure, split into its stages, and XLA:CPU's two fusion emitters.

What a user waits for before the first member of a new structure is solved: building the batch
(`sweeps.inputs`: statistics and networks, whose random draws are a threefry program) and
`gradient_flow` on 64 toy members (width 16, the default 512 saves), which traces the solve
(Python), lowers it to StableHLO and has XLA compile it; small eager programs (input checks,
the horizon estimate) compile too. JAX reports each stage's duration through
`jax.monitoring`; the first call's wall time includes them all and the run, the run time is the
median of three more calls.

Fresh processes, one after another, measure every structure of `STRUCTURES`:

1. ``default``: the package as users run it (XLA's default MLIR fusion emitters), empty
   persistent compilation cache;
2. ``warm``: the same, again, with the cache the first process filled (what a second
   `mdln sweep` of the same structure waits for: XLA's programs and the stored lowered
   solves, `multimodal_dln._exported`);
3. ``warm_plain``: the same with stored programs off (``MDLN_STORED_PROGRAMS=0``: traced
   and lowered again, XLA from the cache), after one such process filled the cache;
4. ``legacy``: XLA:CPU's legacy fusion emitters (``--xla_cpu_use_fusion_emitters=false``),
   cache off.

Headline ratios (same run): solve compile (first call minus run), default / legacy emitters;
batch-build compile, default / legacy; run time, legacy / default; the first call, cold /
warm cache; and the warm first call with stored programs off / on. The legacy emitters
compile the ODE solve 1.25-1.56x faster but run it up to 1.33x
slower (benchmarks/results/compile.json); since the sweep build draws networks with `lax.map`
(not vmap) both emitters compile it alike (it used to be much slower with the legacy ones).
The package keeps XLA's default: neither is better for every workload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from . import _common as C

NAME = "compile"
DESCRIPTION = "compile time per structure (build, trace, lower, XLA), default vs legacy emitters"
LEGACY = "--xla_cpu_use_fusion_emitters=false"

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
from multimodal_dln import sweeps
for depth, lf in {structures}:
    t0 = time.perf_counter()
    [g] = sweeps.inputs(sweeps.product(depth=depth, fusion_layer=lf, width=64, d_A=32, d_B=32,
                                       activation="relu", seed=0, data="random"))
    jax.block_until_ready(g.nets)
    build_s = time.perf_counter() - t0
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
    out.append(dict(depth=depth, fusion_layer=lf, build_s=build_s, first_s=t1 - t0,
                    run_s=sorted(runs)[1],
                    time_ratio=ratio, **stages))
print(json.dumps(out))
"""


def _process(structures, env: dict) -> list[dict]:
    script = _SCRIPT.format(structures=structures)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env(legacy: bool = False, **kw) -> dict:
    """This environment plus `kw`, with XLA's legacy CPU fusion emitters when `legacy`."""
    flags = os.environ.get("XLA_FLAGS", "").split() + ([LEGACY] if legacy else [])
    return {**os.environ, "XLA_FLAGS": " ".join(flags), **kw}


def run(mode: str) -> dict:
    structures = STRUCTURES[mode]
    with tempfile.TemporaryDirectory(prefix="mdln-cache-") as cache:
        on = dict(MDLN_COMPILATION_CACHE_DIR=cache, MDLN_COMPILATION_CACHE="1")
        C.log("compile: default emitters, cold cache")
        default = _process(structures, _env(**on))
        C.log("compile: default emitters, warm cache")
        warm = _process(structures, _env(**on))
        # Stored programs off (every process traces and lowers): the first process fills the
        # cache with this path's own XLA programs, the second is the warm one compared.
        C.log("compile: stored programs off, cold then warm cache")
        plain = _env(**on, MDLN_STORED_PROGRAMS="0")
        _process(structures, plain)
        warm_plain = _process(structures, plain)
    C.log("compile: legacy emitters, no cache")
    legacy = _process(structures, _env(legacy=True, MDLN_COMPILATION_CACHE="0"))
    rows = []
    for df, wm, lg, wp in zip(default, warm, legacy, warm_plain, strict=True):
        tag = f"L={df['depth']}, L_f={df['fusion_layer']}"
        pairs = (("d", df), ("w", wm), ("l", lg), ("p", wp))
        solve = {k: r["first_s"] - r["run_s"] for k, r in pairs}
        agree = abs(lg["time_ratio"] / df["time_ratio"] - 1)
        rows += [
            C.row(f"{tag}: solve compile, default / legacy emitters", solve["d"] / solve["l"],
                  note=f"{solve['d']:.1f} s / {solve['l']:.1f} s (goal <= 3 s); trace "
                       f"{df['trace']:.1f} s, lower {df['lower']:.1f} s"),
            C.row(f"{tag}: batch build, default / legacy emitters", df["build_s"] / lg["build_s"],
                  note=f"{df['build_s']:.1f} s / {lg['build_s']:.1f} s (width-64 networks)"),
            C.row(f"{tag}: run time, legacy / default emitters", lg["run_s"] / df["run_s"],
                  note=f"{lg['run_s']:.2f} s / {df['run_s']:.2f} s; time ratios agree to "
                       f"{agree:.1e}"),
            C.row(f"{tag}: first call, cold / warm cache", df["first_s"] / wm["first_s"],
                  note=f"solve compile {solve['w']:.1f} s warm (goal <= 1 s)"),
            C.row(f"{tag}: first call warm, stored programs off / on",
                  wp["first_s"] / wm["first_s"],
                  note=f"solve compile {solve['p']:.1f} s / {solve['w']:.1f} s; trace "
                       f"{wp['trace']:.1f} s / {wm['trace']:.1f} s"),
        ]  # fmt: skip
    details = {"default": default, "warm": warm, "legacy": legacy, "warm_plain": warm_plain}
    return {"rows": rows, "details": details}
