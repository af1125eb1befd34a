"""Faster XLA:CPU compiles, on by default: the legacy fusion emitters.

On CPU most of a small sweep's wall time is XLA compiling the batched solve (benchmarks/
compile.py splits it into tracing, lowering and XLA compilation). XLA:CPU code-generates each
fusion of a program on its own; its newer MLIR "fusion emitters" take about twice as long per
fusion as the legacy emitters for the many small fusions of an ODE solve. Measured on the
2-core CI machine (jax 0.10.2): XLA compilation of a vmapped depth-3 gradient-flow solve
9.1-9.6 s by default, 4.5-6.0 s with ``--xla_cpu_use_fusion_emitters=false``; the time ratios
were bit-identical and the solves ran no slower (0.80 -> 0.67 s and 16.6 -> 15.9 s on two
batches).

`import multimodal_dln` calls `use_fast_cpu_codegen()`, which appends that flag to
``XLA_FLAGS`` unless ``XLA_FLAGS`` already sets it (yours wins) or ``MDLN_XLA_CPU_FLAGS=0`` is
set (the opt-out). XLA reads ``XLA_FLAGS`` once, when JAX first uses a device, so it only takes
effect when `multimodal_dln` is imported before anything has run on a device (importing jax
first is fine). The flag only changes CPU code generation; GPU and TPU are unaffected.
"""

from __future__ import annotations

import os

__all__ = ["CPU_FLAG", "use_fast_cpu_codegen"]

CPU_FLAG = "--xla_cpu_use_fusion_emitters=false"


def use_fast_cpu_codegen() -> bool:
    """Append `CPU_FLAG` to ``XLA_FLAGS`` (see the module docstring); returns whether the
    flag is in ``XLA_FLAGS`` afterwards."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" in flags:
        return CPU_FLAG in flags.split()
    if os.environ.get("MDLN_XLA_CPU_FLAGS", "1") == "0":
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()
    return True
