"""Whole-process time of the 180-member toy sweep, cold and warm compilation cache.

What a user waits for when running a sweep from a shell: a fresh Python process imports the
package, declares the toy grid of `benchmarks.sweep` (two-layer late fusion, width 100,
entrywise init 1e-9, ratios {1.5, 2, 2.5, 3} x rho in linspace(-0.9, 0.9, 9) x 5 seeds = 180
members) with `multimodal_dln.sweeps.product` and runs it with `sweeps.run` (no output
folder). Three processes, one after another:

1. cold: an empty persistent compilation cache (`MDLN_COMPILATION_CACHE_DIR` = a new folder);
2. warm: the same command again, reusing the cache the first process filled;
3. no cache (``MDLN_COMPILATION_CACHE=0``), the state before the cache was enabled.

Each process reports its own wall time from start to the finished DataFrame and how many
members succeeded; the headline ratio is cold / warm (same machine, same run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from . import _common as C

NAME = "process"
DESCRIPTION = "toy sweep (180 members) as a fresh process: cold vs warm compilation cache"

_SCRIPT = """
import time, json
t0 = time.perf_counter()
import numpy as np
from multimodal_dln import sweeps
rhos = np.linspace(-0.9, 0.9, {n_rho}).round(10).tolist()
sweep = sweeps.product(depth=2, width=100, init="entrywise", init_scale=1e-9,
                       ratio={ratios}, rho=rhos, seed=range({seeds}))
t1 = time.perf_counter()
df = sweeps.run(sweep, progress=False, chunk_size={chunk})
t2 = time.perf_counter()
print(json.dumps({{"members": len(df), "ok": int(df["success"].sum()),
                  "import_s": t1 - t0, "sweep_s": t2 - t1, "wall_s": t2 - t0}}))
"""

_SIZES = {
    "full": dict(n_rho=9, ratios=[1.5, 2.0, 2.5, 3.0], seeds=5, chunk=64),
    "quick": dict(n_rho=9, ratios=[1.5, 2.0, 2.5, 3.0], seeds=5, chunk=64),
    "tiny": dict(n_rho=2, ratios=[2.0], seeds=1, chunk=64),
}


def _process(script: str, env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def run(mode: str) -> dict:
    sizes = _SIZES[mode]
    script = _SCRIPT.format(**sizes)
    with tempfile.TemporaryDirectory(prefix="mdln-cache-") as cache:
        env = dict(os.environ, MDLN_COMPILATION_CACHE_DIR=cache, MDLN_COMPILATION_CACHE="1")
        C.log("process: cold cache")
        cold = _process(script, env)
        C.log("process: warm cache")
        warm = _process(script, env)
        n_files = sum(len(f) for _, _, f in os.walk(cache))
    C.log("process: no cache")
    off = _process(script, dict(os.environ, MDLN_COMPILATION_CACHE="0"))
    ratio = cold["process_s"] / warm["process_s"]
    rows = [
        C.row("toy sweep process, cold / warm cache", ratio, goal="> 1",
              met=ratio > 1, note=f"{cold['process_s']:.1f} s / {warm['process_s']:.1f} s"),
        C.row("toy sweep process, no cache / warm cache", off["process_s"] / warm["process_s"],
              note=f"{off['process_s']:.1f} s without the cache"),
    ]  # fmt: skip
    details = {"sizes": sizes, "cold": cold, "warm": warm, "no_cache": off,
               "cache_files": n_files}  # fmt: skip
    return {"rows": rows, "details": details}
