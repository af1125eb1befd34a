"""Summaries of toy rows (no matplotlib): per grid point, per (L_f, ratio), failures, tables.

The theory compared with is the library's: `theory.time_ratio_toy_network` and
`theory.misattribution_toy_network` (Zhang et al. 2024, time ratio and misattribution;
docs/theory.md §2-§4). Only successful members enter a summary statistic (docs/theory.md §7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import theory

__all__ = [
    "failure_line",
    "failures",
    "fmt",
    "format_error_table",
    "median",
    "summarize",
    "text_table",
]


def median(values) -> float:
    """The median of the finite numbers among `values` (NaN when there are none)."""
    a = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.median(np.asarray(a, dtype=float))) if a else math.nan


def fmt(v, spec: str = ".4g") -> str:
    """A number, or '-' for no value (None or NaN: e.g. a failed member's phase times)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


Column = tuple[str, int, Callable[[Any], str]] | tuple[str, int, Callable[[Any], str], str]


def text_table(columns: Sequence[Column], records: Sequence[Any]) -> list[str]:
    """A plain-text table: the header line, then one line per record.

    Each column is ``(title, width, cell, sep=" ")``: the title and every `cell(record)` are
    right-aligned to `width` and preceded by `sep` (none before the first column).
    """

    def line(cells) -> str:
        out = ""
        for i, (col, text) in enumerate(zip(columns, cells, strict=True)):
            sep = "" if i == 0 else (col[3] if len(col) > 3 else " ")
            out += f"{sep}{text:>{col[1]}}"
        return out

    return [line([c[0] for c in columns])] + [line([c[2](r) for c in columns]) for r in records]


def _point(lf, ratio, rho, u0, rs) -> dict:
    ok = [r for r in rs if r["success"]]
    tr = [r["time_ratio"] for r in ok if math.isfinite(r["time_ratio"])]
    depth = rs[0]["depth"]
    return {
        "fusion_layer": lf,
        "ratio": ratio,
        "rho": rho,
        "init_scale": u0,
        "n": len(rs),
        "n_success": len(ok),
        "time_ratio_median": median(tr),
        "time_ratio_mean": float(np.mean(tr)) if tr else math.nan,
        "time_ratio_std": float(np.std(tr)) if len(tr) > 1 else math.nan,
        "theory_time_ratio": theory.time_ratio_toy_network(depth, lf, rho, ratio, u0),
        "rel_error_median": median([r["rel_error"] for r in ok]),
        "misattribution_median": median([r["misattribution"] for r in ok]),
        "misattribution_theory": theory.misattribution_toy_network(depth, lf, rho, ratio),
    }


def _by_ratio(lf, ratio, rows) -> dict:
    same = [r for r in rows if r["fusion_layer"] == lf and r["ratio"] == ratio]
    errs = [abs(r["rel_error"]) for r in same if r["success"] and math.isfinite(r["rel_error"])]
    return {
        "fusion_layer": lf,
        "ratio": ratio,
        "n": len(same),
        "n_success": sum(1 for r in same if r["success"]),
        "n_compared": len(errs),
        "median_abs_rel_error": float(np.median(errs)) if errs else math.nan,
        "max_abs_rel_error": float(np.max(errs)) if errs else math.nan,
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict:
    """Aggregate sweep rows: per grid point (over seeds, successful runs only) and per
    (fusion layer, ratio) the median and max |sim / theory - 1|."""
    rows = list(rows)
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["fusion_layer"], r["ratio"], r["rho"], r["init_scale"]), []).append(r)
    points = [_point(*key, rs) for key, rs in sorted(groups.items())]
    keys = sorted({(r["fusion_layer"], r["ratio"]) for r in rows})
    return {
        "n_members": len(rows),
        "n_success": sum(1 for r in rows if r["success"]),
        "failures": failures(rows),
        "by_ratio": [_by_ratio(lf, ratio, rows) for lf, ratio in keys],
        "points": points,
    }


def failures(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The failed rows grouped by status: [{"status", "reason", "count"}], most frequent first."""
    groups: dict[tuple, int] = {}
    for r in rows:
        if not r["success"]:
            key = (r.get("status", "FAILED"), r.get("reason", "unknown"))
            groups[key] = groups.get(key, 0) + 1
    return [
        {"status": st, "reason": why, "count": n}
        for (st, why), n in sorted(groups.items(), key=lambda kv: -kv[1])
    ]


def failure_line(rows: Sequence[Mapping[str, Any]], what: str = "members") -> str | None:
    """ "N of M <what> failed: STATUS (count): reason; ..." or None when nothing failed."""
    fails = failures(rows)
    if not fails:
        return None
    n = sum(f["count"] for f in fails)
    parts = "; ".join(f"{f['status']} ({f['count']}): {f['reason']}" for f in fails)
    return f"{n} of {len(rows)} {what} failed: {parts}"


def _pct(v, none: str) -> str:
    return f"{100 * v:.2f}%" if math.isfinite(v) else none


def format_error_table(summary: Mapping[str, Any]) -> str:
    """Plain-text table of `summary['by_ratio']` (per L_f and ratio: |sim / theory - 1|)."""

    def none(b) -> str:
        return "n/a (none succeeded)" if b.get("n_success", 1) == 0 else "n/a (no theory)"

    columns = [
        ("L_f", 4, lambda b: f"{b['fusion_layer']}"),
        ("ratio", 7, lambda b: f"{b['ratio']:.3g}"),
        ("runs", 5, lambda b: f"{b['n']}"),
        ("compared", 8, lambda b: f"{b['n_compared']}"),
        ("median |sim/theory-1|", 22, lambda b: _pct(b["median_abs_rel_error"], none(b))),
        ("max", 8, lambda b: _pct(b["max_abs_rel_error"], "-")),
    ]
    return "\n".join(text_table(columns, summary["by_ratio"]))
