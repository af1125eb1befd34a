"""The fusion-depth research sweep as one command against its four single-L_f sweeps.

The question "time ratio against L_f for depth 4 at rho in {-0.5, 0, 0.5}" is one command:

    mdln sweep --depth 4 --fusion-layer 1:4 --rho=-0.5,0,0.5 --seeds 3 --out DIR

(36 members; each L_f is its own structure, so four compiled solves). The baseline runs the
same members as four commands, one per fusion layer (`--fusion-layer 1`, ..., one after
another). Every command is a fresh process with the compilation cache off
(``MDLN_COMPILATION_CACHE=0``), so both sides compile everything they use. Goal: the one
command takes at most 1.3x the summed time of the four (before the sweep engine, each 9-member
group was padded to a 64-member chunk and the sweep took 5x longer than needed). The results
of the two sides must agree member by member (same seeds, same networks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _common as C

NAME = "lf_sweep"
DESCRIPTION = "L_f research sweep (depth 4, 36 members): one command vs four single-L_f commands"

_SIZES = {
    "full": dict(rho="-0.5,0,0.5", seeds="3", extra=[]),
    "quick": dict(rho="-0.5,0,0.5", seeds="3", extra=[]),
    "tiny": dict(rho="0", seeds="1", extra=["--width", "8"]),
}


def _command(out: Path, lf: str, sizes: dict) -> float:
    cmd = [sys.executable, "-m", "multimodal_dln", "sweep", "--depth", "4", "--fusion-layer", lf,
           f"--rho={sizes['rho']}", "--seeds", sizes["seeds"], *sizes["extra"], "--out",
           str(out), "--no-progress", "--no-figure"]  # fmt: skip
    env = dict(os.environ, MDLN_COMPILATION_CACHE="0")
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def run(mode: str) -> dict:
    import numpy as np

    from multimodal_dln import sweeps

    sizes = _SIZES[mode]
    with tempfile.TemporaryDirectory(prefix="mdln-lf-") as tmp:
        tmp = Path(tmp)
        C.log("lf_sweep: one command, L_f 1:4")
        one = _command(tmp / "all", "1:4", sizes)
        singles = []
        for lf in "1234":
            C.log(f"lf_sweep: single command, L_f {lf}")
            singles.append(_command(tmp / f"lf{lf}", lf, sizes))
        combined = sweeps.load(tmp / "all")
        parts = [sweeps.load(tmp / f"lf{lf}") for lf in "1234"]
    key = ["fusion_layer", "rho", "seed"]
    import pandas as pd

    a = combined.sort_values(key).reset_index(drop=True)
    b = pd.concat(parts).sort_values(key).reset_index(drop=True)
    ok = a["success"] & b["success"]
    diff = float(np.max(np.abs(a.loc[ok, "time_ratio"] / b.loc[ok, "time_ratio"] - 1.0)))
    ratio = one / sum(singles)
    rows = [
        C.row("L_f sweep: one command / four single-L_f commands", ratio, goal="<= 1.3",
              met=ratio <= 1.3, note=f"{one:.1f} s vs {sum(singles):.1f} s"),
        C.row("same members, max |time ratio difference|", diff, unit="", goal="<= 1e-9",
              met=diff <= 1e-9),
    ]  # fmt: skip
    details = {"one_command_s": one, "single_commands_s": singles, "members": len(a),
               "successful": int(ok.sum()), "max_rel_diff_time_ratio": diff}  # fmt: skip
    return {"rows": rows, "details": details}
