"""`appliance bench call --json` as a user runs it: the keys DESIGN.md promises, the baseline pass
measured in the same run, and the call's latency work visibly in use (speculative replies adopted,
first clauses from the phrase cache) while the baseline has none of it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from testutil import REPO


def test_bench_call_json_has_the_contract_and_a_same_run_baseline():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "appliance", "bench", "call", "--calls", "1", "--json", "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(proc.stdout)
    for key in ("v2v_ms", "added_ms", "barge_in_stop_ms"):
        assert set(d[key]) >= {"p50", "p95"} and d[key]["p50"] is not None, (key, d[key])
    assert d["calls"] == 1 and isinstance(d["false_barge_ins"], int) and isinstance(d["underruns"], int)
    assert d["errors"] == [] and d["completed_calls"] == 1 and d["turns"] == 4, d
    # the box as configured: replies start in the caller's pause and are adopted; the common
    # openers of the scripted model ("Thanks,", "Yes,") come from the phrase cache
    assert d["speculative"]["used"] >= 1 and d["first_clause_cached"] >= 1, (d["speculative"], d["first_clause_cached"])
    # the baseline pass: same calls, none of that
    b = d["baseline"]
    assert b["errors"] == [] and b["added_ms"]["p50"] is not None
    assert b["speculative"]["started"] == 0 and b["first_clause_cached"] == 0, b
    assert set(d["speedup_vs_baseline"]) == {"v2v_ms_p50", "v2v_ms_p95", "added_ms_p50", "added_ms_p95"}
    assert d["speedup_vs_baseline"]["added_ms_p50"] == round(b["added_ms"]["p50"] / d["added_ms"]["p50"], 2)
