"""`appliance demo` (the README's first command) end to end: the scripted caller through the whole
pipeline on the embedded defaults (offline call flow, no API key), as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

from testutil import REPO


def test_demo_runs_the_whole_call(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "appliance", "demo", "--json", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(proc.stdout)
    assert d["ok"] and d["mode"] == "callflow" and d["end_cause"] == "transferred", d["end_cause"]
    assert d["components"]["stt"].startswith("whisper-ct2:")
    said = [t["text"].lower() for t in d["turns"]]
    assert len(said) >= 5 and any("opening hours" in s for s in said), said
    assert all(t["v2v"] is not None and 0 < t["v2v"] < 5000 for t in d["turns"]), d["turns"]
    # the backchannel did not stop the agent; the interruption did, promptly
    outcomes = [b["outcome"] for b in d["barge_ins"]]
    assert "backchannel" in outcomes and "barge_in" in outcomes, d["barge_ins"]
    stops = {s["label"]: s["stop_ms"] for s in d["line_barge_in_stops"]}
    assert stops["interrupt"] is not None and stops["interrupt"] <= 300, stops
    # handoff with context: who, why, a summary naming what was collected, the transcript
    h = d["handoff"]
    assert h["reason"] == "caller asked for a person" and "Alex Carter" in h["summary"] and h["transcript"]
    assert d["summary"]["underruns"] == 0
    with wave.open(str(tmp_path / "call.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000 and w.getnframes() > 8000 * 20
    assert (tmp_path / "timeline.png").stat().st_size > 10000
