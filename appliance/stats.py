"""Percentiles for the benchmarks, the demo and the box's health: one definition everywhere.

P50/P95 by linear interpolation between the closest ranks (numpy's default), values that are
None ignored, {"p50": None, "p95": None} for no values.
"""
from __future__ import annotations

from collections.abc import Iterable


def percentiles(values: Iterable[float | None], digits: int = 1) -> dict[str, float | None]:
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return {"p50": None, "p95": None}

    def pick(q: float) -> float:
        pos = (len(vals) - 1) * q
        lo = int(pos)
        hi = min(lo + 1, len(vals) - 1)
        return round(vals[lo] + (vals[hi] - vals[lo]) * (pos - lo), digits)

    return {"p50": pick(0.5), "p95": pick(0.95)}
