#!/usr/bin/env bash
# One call on a lent GPU machine (the project's device tool runs it in the repository root with
# $OUT set): the full-size deep-fusion campaign (docs/reproduction.md F6 figures) and the `gpu`
# benchmark. The machine's own JAX install is used (no pip there); every part has its own time
# limit, and what finished comes back under $OUT (at most 8 files: the figures are one archive).
# QUICK=1 runs the same at smoke-test sizes (to try the script on a CPU first); DEEP_S and
# BENCH_S are the parts' limits in seconds (0 skips the benchmark).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
OUT=${OUT:-gpu-session-out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv
  python3 -c "import jax, diffrax, equinox; print('jax', jax.__version__, jax.devices())"
} 2>&1 | tee "$OUT/machine.txt"
timeout "${DEEP_S:-300}" python3 - <<'PY' 2>&1 | tee "$OUT/deep.log"
import os, time
from multimodal_dln.experiments.zhang2024.registry import reproduce
t = time.time()
for name in ("deep-loss", "deep-rho", "deep-ratio", "deep-init"):
    r = reproduce(name, quick=bool(os.environ.get("QUICK")), out=os.environ["OUT"] + "/repro", log=print)
    print(f"{name}: {r.seconds:.1f} s (total {time.time() - t:.1f} s)", flush=True)
PY
[ -d "$OUT/repro" ] && tar -C "$OUT" -czf "$OUT/repro.tgz" repro && rm -rf "$OUT/repro"
[ "${BENCH_S:-320}" -gt 0 ] && timeout "${BENCH_S:-320}" python3 -m benchmarks --only gpu ${QUICK:+--tiny} --budget "${BUDGET_S:-300}" \
  --out "$OUT/bench" 2>&1 | tee "$OUT/bench.log"
