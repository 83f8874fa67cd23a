"""One percentile definition for benchmarks, the demo and health."""
from appliance.stats import percentiles


def test_percentiles_interpolate_and_ignore_none():
    assert percentiles([]) == {"p50": None, "p95": None}
    assert percentiles([None, None]) == {"p50": None, "p95": None}
    assert percentiles([7]) == {"p50": 7.0, "p95": 7.0}
    # numpy's default (linear between closest ranks): P50 of 1..10 is 5.5, P95 is 9.55
    assert percentiles(range(1, 11), 2) == {"p50": 5.5, "p95": 9.55}
    assert percentiles([3, 1, None, 2]) == {"p50": 2.0, "p95": 2.9}
