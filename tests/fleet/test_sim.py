"""The fleet simulator (appliance/fleet/sim.py, tools/fleet_sim.py) against a real mosquitto: virtual
boxes look like real ones on the wire (status + last will, retained health, events, ping answers)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from testutil import REPO

from appliance.fleet.sim import VirtualFleet

BOXES = 24
EVENT_TYPES = {"call.started", "call.answered", "amd.result", "turn", "handoff", "call.ended"}


def test_virtual_boxes_speak_the_box_contract(broker, collector_factory):
    ops = collector_factory(broker.port, topics=("appliance/#",))

    async def main():
        fleet = VirtualFleet("127.0.0.1", broker.port, BOXES, prefix="t-")
        storm_s = await fleet.connect(timeout_s=20)
        assert fleet.stats.connected == BOXES and storm_s > 0
        ops.client.publish("appliance/t-0003/cmd/ping", json.dumps({"id": "p"}), qos=1)
        ops.client.publish("appliance/t-0004/cmd/dial", b"{", qos=1)
        await fleet.run(2.0, calls_per_hour=7200, health_interval_s=0.5)
        await fleet.drain()
        stats = fleet.stats.as_dict()
        await fleet.close()
        return stats

    stats = asyncio.run(main())
    assert stats["events_sent"] > 0 and stats["events_acked"] == stats["events_sent"]
    assert stats["refused"] == 0 and stats["commands_answered"] == 2
    assert ops.wait(lambda: len({t for t, _ in ops.on("appliance/") if t.endswith("/status")}) == BOXES
                    and len(ops.on("appliance/t-0023/status")) >= 2)
    for i in range(BOXES):
        assert [p for _, p in ops.on(f"appliance/t-{i:04d}/status")][-1] == b"offline"
    health = ops.json_on("appliance/t-0003/health")[-1]  # a GSM box (every fourth)
    for key in ("uptime_s", "version", "cpu", "temperature_c", "memory", "disk", "lines", "calls_today",
                "turn_latency_ms", "barge_ins", "handoffs", "models_verified", "last_error", "gsm"):
        assert key in health, key
    assert health["gsm"]["signal_dbm"] < 0 and health["lines"]["line1"]["state"]
    events = [json.loads(p) for t, p in ops.on("appliance/") if "/event/" in t]
    assert len(events) == stats["events_sent"] and len({e["id"] for e in events}) == len(events)
    assert {e["type"] for e in events} <= EVENT_TYPES and "turn" in {e["type"] for e in events}
    assert all(e["ts"] > 0 and e["device"].startswith("t-") for e in events)
    turn = next(e for e in events if e["type"] == "turn")["data"]
    assert {"endpoint", "stt", "llm_first_token", "tts_first_audio", "v2v"} <= set(turn)
    assert ops.json_on("appliance/t-0003/cmd/ping/result")[0]["ok"] is True
    assert ops.json_on("appliance/t-0004/cmd/dial/result")[0]["ok"] is False


def test_fleet_sim_cli_with_its_own_broker():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "fleet_sim.py"), "--local-broker", "--boxes", "10",
                          "--duration", "1", "--calls-per-hour", "3600", "--health-interval", "0.5", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["boxes"] == 10 and result["connected"] == 10 and result["refused"] == 0
    for key in ("connect_storm_s", "sim_cpu_pct", "sim_rss_mb", "broker_cpu_pct", "broker_rss_mb", "health_sent"):
        assert result[key] is not None, key
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "fleet_sim.py"), "--boxes", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--boxes 0: expected 1-5000" in bad.stderr
