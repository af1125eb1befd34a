"""`python -m benchmarks [--quick] [--only NAME[,NAME...]] [--out DIR | --update-results]`.

Runs the benchmarks, prints one table of ratios, writes `<out>/<name>.json` per benchmark and
`<out>/summary.json` (the table and the total wall time). The default `<out>` is a new folder,
`benchmark-results/<UTC time>-<mode>/`; the committed results in `benchmarks/results/` are only
replaced with `--update-results` (full mode), and no run writes over another run's files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
import traceback
from pathlib import Path

from . import BENCHMARKS, MODES, load

RESULTS = Path(__file__).parent / "results"


def run_one(name: str, mode: str, out: Path | None, **kwargs) -> dict:
    """Run one benchmark, attach the environment record, write `<out>/<name>.json`."""
    from . import _common as C

    mod = load(name)
    C.set_mode(mode)
    env = C.env_info()
    t0 = time.perf_counter()
    error = None
    try:
        res = mod.run(mode, **kwargs)
    except Exception as e:  # noqa: BLE001  -- record the failure, keep going with the others
        error = "".join(traceback.format_exception(e))
        res = {"rows": [C.row("FAILED", None, note=f"{type(e).__name__}: {e}")], "details": {}}
    skipped = list(C.BUDGET["skipped"])
    record = {
        "name": name,
        "skipped_for_time_budget": skipped,
        "description": mod.DESCRIPTION,
        "mode": mode,
        "wall_s": time.perf_counter() - t0,
        "environment": env,
        "loadavg_start": env["loadavg"],
        "loadavg_end": C.loadavg(),
        "rows": res["rows"],
        "details": res["details"],
        "error": error,
    }
    record = C.jsonable(record)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return record


def report(out: Path) -> int:
    """Re-print the table of the results saved in `out` (no benchmark is run)."""
    from . import _common as C

    records = [
        json.loads((out / f"{n}.json").read_text())
        for n in BENCHMARKS
        if (out / f"{n}.json").exists()
    ]
    if not records:
        print(f"no results in {out}/", file=sys.stderr)
        return 1
    print(C.format_table(records))
    print()
    print(C.markdown_table(records))
    return 0


def _out_dir(args, mode: str, names) -> Path:
    """Where this run writes: the committed results only with --update-results (full mode),
    else --out (which must not hold results of these benchmarks yet) or a new timestamped
    folder. Raises ValueError with the one-line reason."""
    if args.update_results:
        if mode != "full":
            raise ValueError(
                "--update-results records full runs only (the committed numbers are full "
                "size); drop --quick/--tiny, or pass a new --out DIR."
            )
        if args.out is not None:
            raise ValueError("give --out DIR or --update-results, not both.")
        return RESULTS
    if args.out is None:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return Path("benchmark-results") / f"{stamp}-{mode}"
    out = Path(args.out)
    taken = [f"{n}.json" for n in (*names, "summary") if (out / f"{n}.json").exists()]
    if taken:
        raise ValueError(
            f"--out {out} already holds results ({', '.join(taken)}); choose a new "
            "folder (--update-results replaces the committed ones)."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes / fewer repeats (about 3 minutes on 2 CPU cores)",
    )
    p.add_argument(
        "--tiny", action="store_true", help="smoke-test sizes (seconds; numbers meaningless)"
    )
    p.add_argument(
        "--only", default=None, help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    p.add_argument(
        "--out",
        default=None,
        help="new directory for the JSON results (default: benchmark-results/<UTC time>-<mode>/)",
    )
    p.add_argument(
        "--update-results",
        action="store_true",
        help="full mode: write into the committed results, benchmarks/results/",
    )
    p.add_argument(
        "--full-baseline",
        action="store_true",
        help="sweep: run the hand-written GD baseline on all 180 configurations (~40 min on 2 "
        "cores) instead of a subset",
    )
    p.add_argument(
        "--members",
        type=int,
        default=None,
        help="gpu: number of members (default 4096 on a GPU; off-GPU the overhead benchmark's 8)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="total seconds; optional parts (extra sizes, the engine-defaults sweep, the overhead "
        "decomposition) are skipped when they would not fit (default: 540 in full mode when "
        "running all benchmarks, none otherwise)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="print the table (text and markdown) from the JSON files in --out; run nothing",
    )
    args = p.parse_args(argv)
    if args.report:
        return report(RESULTS if args.out is None else Path(args.out))
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    assert mode in MODES
    names = (
        BENCHMARKS
        if args.only is None
        else tuple(n.strip() for n in args.only.split(",") if n.strip())
    )
    try:
        for n in names:
            load(n)  # fail early on an unknown name
        out = _out_dir(args, mode, names)
    except ValueError as err:
        print(f"python -m benchmarks: error: {err}", file=sys.stderr)
        return 2
    from . import _common as C

    print(
        f"benchmarks ({mode}) on {C.env_info()['device_kind']} ({C.env_info()['backend']}), "
        f"{C.env_info()['cpu_count']} CPUs, load average {C.loadavg()}",
        flush=True,
    )
    t0 = time.perf_counter()
    budget = (
        args.budget
        if args.budget is not None
        else (540.0 if mode == "full" and args.only is None else None)
    )
    C.set_budget(None if budget is None else t0 + budget)
    results = []
    for j, n in enumerate(names):
        C.set_reserve(sum(C.MINIMUM_S.get(m, 0) for m in names[j + 1 :]))
        kwargs = {}
        if n == "sweep" and args.full_baseline:
            kwargs["baseline_every"] = 1
        if n == "gpu" and args.members is not None:
            kwargs["members"] = args.members
        t = time.perf_counter()
        print(f"[{n}] {load(n).DESCRIPTION} ...", flush=True)
        rec = run_one(n, mode, out, **kwargs)
        results.append(rec)
        status = "FAILED" if rec["error"] else "done"
        print(
            f"[{n}] {status} in {time.perf_counter() - t:.0f} s (load {rec['loadavg_end']})",
            flush=True,
        )
        if rec["error"]:
            print(rec["error"], file=sys.stderr)
    total = time.perf_counter() - t0
    table = C.format_table(results)
    print()
    print(table)
    skipped = {
        r["name"]: r["skipped_for_time_budget"] for r in results if r["skipped_for_time_budget"]
    }
    if skipped:
        print(f"skipped to stay within the {budget:.0f} s budget: {skipped}")
    print(f"\ntotal wall time {total:.0f} s; results in {out}/")
    if args.only is None:
        summary = {
            "mode": mode,
            "total_wall_s": total,
            "budget_s": budget,
            "skipped_for_time_budget": skipped,
            "environment": C.jsonable(C.env_info()),
            "table": table,
            "markdown_table": C.markdown_table(results),
            "rows": {r["name"]: r["rows"] for r in results},
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(
            json.dumps(C.jsonable(summary), indent=1, allow_nan=False) + "\n"
        )
    return 1 if any(r["error"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
