"""The Fleet against a real mosquitto: events, status/last will, health, commands, discovery."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fleet_helpers import cfg, wait_for

from appliance.fleet import Fleet


def test_events_in_order_status_and_health(broker, collector_factory, tmp_path):
    sub = collector_factory(broker.port, topics=("appliance/#",))

    async def main():
        fleet = Fleet(cfg(broker.port), "box1", "1.2.3", tmp_path / "state")
        fleet.set_health_provider(lambda: {"calls_today": 7, "lines": {"sip1": {"state": "idle"}}})
        await fleet.start()
        ids = [fleet.publish_event("turn", {"n": i, "v2v_ms": 800 + i}) for i in range(500)]
        ids.append(fleet.publish_event("call.ended", {"cause": "normal"}))
        assert await wait_for(lambda: len(sub.on("appliance/box1/event/")) >= 501)
        assert await wait_for(lambda: sub.on("appliance/box1/health"))
        assert await wait_for(lambda: fleet.status.outbox_depth == 0)  # every PUBACK settled
        assert fleet.status.connected and fleet.status.dropped == 0 and fleet.status.delivered == 501
        await fleet.stop()
        return ids

    ids = asyncio.run(main())
    events = sub.json_on("appliance/box1/event/")
    assert [e["id"] for e in events] == ids  # every one, once, in order
    assert [e["data"]["n"] for e in events[:500]] == list(range(500))
    assert events[-1]["type"] == "call.ended" and events[0]["device"] == "box1" and events[0]["ts"] > 0
    assert {t for t, _ in sub.on("appliance/box1/event/")} == {"appliance/box1/event/turn",
                                                                "appliance/box1/event/call.ended"}
    health = sub.json_on("appliance/box1/health")[-1]
    assert health["version"] == "1.2.3" and health["calls_today"] == 7 and health["lines"]["sip1"]["state"] == "idle"
    assert health["memory"]["total_mb"] > 0 and health["uptime_s"]["process_s"] >= 0 and "cpu" in health
    assert [p for _, p in sub.on("appliance/box1/status")] == [b"online", b"offline"]


def test_status_retained_and_last_will_on_crash(broker, collector_factory, tmp_path):
    """A box process killed with SIGKILL: the broker publishes its retained `offline` (last will)."""
    script = (
        "import asyncio, sys\nfrom pathlib import Path\nfrom appliance.fleet import Fleet, FleetConfig\n"
        "async def main():\n"
        f"    f = Fleet(FleetConfig(port={broker.port}, keepalive_s=5), 'crashy', '0', Path(sys.argv[1]))\n"
        "    await f.start()\n"
        "    while not f.status.connected: await asyncio.sleep(0.02)\n"
        "    print('up', flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "crashy")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"up"
        live = collector_factory(broker.port, topics=("appliance/crashy/status",))
        assert live.wait(lambda: live.on("appliance/crashy/status"))
        assert live.messages[0][1:] == (b"online", True)  # retained, seen by a late subscriber
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert live.wait(lambda: len(live.on("appliance/crashy/status")) >= 2)
        assert live.on("appliance/crashy/status")[-1][1] == b"offline"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    late = collector_factory(broker.port, topics=("appliance/crashy/status",))
    assert late.wait(lambda: late.messages)
    assert late.messages[-1][1:] == (b"offline", True)


def _request(client, topic, body):
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    client.client.publish(topic, payload, qos=1)


def test_commands_validation_dedupe_and_bad_payloads(broker, collector_factory, tmp_path):
    sub = collector_factory(broker.port, topics=("appliance/box1/cmd/+/result",))
    calls = []

    async def dial(args):
        calls.append(args)
        await asyncio.sleep(0.05)
        return {"dialled": args["number"]}

    async def boom(args):
        raise RuntimeError("line is down")

    async def reload(args):
        calls.append(("reload", args))
        return {"reloaded": True}

    async def fetch(args):
        calls.append(("fetch", args))
        return {"fetched": args["models"]}

    bad_payloads = [b"", b"\xff\xfe\x00", b"null", b"[]", b'"text"', b"42", b"{", b"{}", b'{"id": 5}',
                    b'{"id": "", "args": {}}', b'{"id": "x", "args": []}', b'{"id": "x", "argz": {}}',
                    b"[" * 100000 + b"]" * 100000, b'{"id": "' + b"a" * 300 + b'"}', b"x" * 300000]

    async def main():
        fleet = Fleet(cfg(broker.port), "box1", "1", tmp_path / "state")
        fleet.register_command("dial", dial)  # the standard schemas (commands.SCHEMAS)
        fleet.register_command("hangup", boom)
        fleet.register_command("reload", reload)
        fleet.register_command("models.fetch", fetch)
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected)
        await asyncio.sleep(0.2)  # subscriptions in place
        names = ["dial", "hangup", "reload", "models.fetch", "ping", "config.set", "no.such"]
        for name in names:
            for i, payload in enumerate(bad_payloads):
                _request(sub, f"appliance/box1/cmd/{name}", payload)
        expected_bad = len(names) * len(bad_payloads)
        assert await wait_for(lambda: len(sub.messages) >= expected_bad, 30), len(sub.messages)
        bad_results = [json.loads(p) for _, p, _ in sub.messages]
        assert all(r["ok"] is False and r["error"] for r in bad_results)
        assert {r["command"] for r in bad_results} == set(names)
        sub.messages.clear()

        _request(sub, "appliance/box1/cmd/dial", {"id": "r1", "args": {"number": "1; ATH"}})  # pattern fails
        _request(sub, "appliance/box1/cmd/dial", {"id": "r2", "args": {"number": "+15551234", "x": 1}})
        _request(sub, "appliance/box1/cmd/dial", {"id": "r3", "args": {"number": "+15551234"}})
        _request(sub, "appliance/box1/cmd/dial", {"id": "r3", "args": {"number": "+15551234"}})  # same id
        _request(sub, "appliance/box1/cmd/hangup", {"id": "h1"})
        _request(sub, "appliance/box1/cmd/ping", {"id": "p1", "args": {"echo": "hi"}})
        _request(sub, "appliance/box1/cmd/reload", {"id": "rl1", "args": {"drain": "yes"}})  # wrong type
        _request(sub, "appliance/box1/cmd/models.fetch", {"id": "m1", "args": {"models": ["../etc/passwd"]}})
        _request(sub, "appliance/box1/cmd/models.fetch", {"id": "m2", "args": {"models": ["silero-vad"]}})
        _request(sub, "appliance/box1/cmd/config.set", {"id": "c1", "args": {"config": {}}})  # no handler set
        # the second r3 arrives while the first runs: it is not executed, the one result answers it
        assert await wait_for(lambda: len(sub.messages) >= 9)
        await asyncio.sleep(0.3)
        _request(sub, "appliance/box1/cmd/dial", {"id": "r3", "args": {"number": "+15551234"}})  # later repeat
        assert await wait_for(lambda: len(sub.messages) >= 10)
        await fleet.stop()

    asyncio.run(main())
    results = {}
    for _, payload, _ in sub.messages:
        r = json.loads(payload)
        results.setdefault(r["id"], []).append(r)
    assert results["r1"][0]["ok"] is False and "args.number" in results["r1"][0]["problems"][0]
    assert results["r2"][0]["ok"] is False and any("args.x" in p for p in results["r2"][0]["problems"])
    assert len(calls) == 2 and {"number": "+15551234"} in calls  # r3 ran once
    assert ("fetch", {"models": ["silero-vad"]}) in calls  # reload rl1 and models.fetch m1 did not run
    assert results["rl1"][0]["ok"] is False and "args.drain" in results["rl1"][0]["problems"][0]
    assert results["m1"][0]["ok"] is False and "args.models[0]" in results["m1"][0]["problems"][0]
    assert results["m2"][0]["ok"] and results["m2"][0]["result"] == {"fetched": ["silero-vad"]}
    assert results["c1"][0]["ok"] and results["c1"][0]["result"]["status"] == "rejected"
    assert "does not take remote configuration" in results["c1"][0]["result"]["problems"][0]
    assert all(r["ok"] and r["result"] == {"dialled": "+15551234"} for r in results["r3"])
    assert any(r.get("duplicate") for r in results["r3"])
    assert results["h1"][0]["ok"] is False and "line is down" in results["h1"][0]["error"]
    assert results["p1"][0]["ok"] and results["p1"][0]["result"]["echo"] == "hi"


def test_box_runs_without_broker_then_delivers_after_reboot(tmp_path, collector_factory):
    """No broker at all: start() returns at once, events are stored, stop() is prompt. After a
    'reboot' (a new Fleet on the same state dir) and a broker appearing, every event arrives."""
    from appliance.fleet.mosquitto import Mosquitto, free_port

    port = free_port()
    state = tmp_path / "state"

    async def offline():
        fleet = Fleet(cfg(port), "lonely", "1", state)
        t0 = time.monotonic()
        await fleet.start()
        assert time.monotonic() - t0 < 0.5
        ids = [fleet.publish_event("line.state", {"n": i}) for i in range(300)]
        await asyncio.sleep(1.5)  # several failed connection attempts
        status = fleet.status
        assert not status.connected and status.outbox_depth == 300 and status.last_error
        t0 = time.monotonic()
        await fleet.stop()
        assert time.monotonic() - t0 < 5
        return ids

    ids = asyncio.run(offline())
    with Mosquitto(tmp_path / "broker", port=port) as broker:
        sub = collector_factory(broker.port, topics=("appliance/lonely/event/#",))

        async def online():
            fleet = Fleet(cfg(port), "lonely", "1", state)
            assert fleet.status.outbox_depth == 300
            await fleet.start()
            assert await wait_for(lambda: len(sub.messages) >= 300)
            await fleet.stop()

        asyncio.run(online())
    assert [json.loads(p)["id"] for _, p, _ in sub.messages] == ids


def test_home_assistant_discovery(broker, collector_factory, tmp_path):
    sub = collector_factory(broker.port, topics=("homeassistant/#", "appliance/ha1/health"))

    async def main():
        fleet = Fleet(cfg(broker.port, home_assistant=True), "ha1", "9.9", tmp_path / "s")
        fleet.set_health_provider(lambda: {"lines": {"fxo-1": {"state": "ringing"}}, "calls_today": 3})
        await fleet.start()
        assert await wait_for(lambda: sub.on("appliance/ha1/health") and len(sub.on("homeassistant/")) >= 16)
        await fleet.stop()

    asyncio.run(main())
    configs = {t: json.loads(p) for t, p in sub.on("homeassistant/")}
    assert "homeassistant/sensor/ha1/calls_today/config" in configs
    line = configs["homeassistant/sensor/ha1/line_fxo_1/config"]
    assert line["state_topic"] == "appliance/ha1/health" and line["availability_topic"] == "appliance/ha1/status"
    assert line["device"]["sw_version"] == "9.9" and line["unique_id"] == "appliance_ha1_line_fxo_1"
    assert "fxo-1" in line["value_template"]
    temp = configs["homeassistant/sensor/ha1/temperature/config"]
    assert temp["unit_of_measurement"] == "°C" and temp["device_class"] == "temperature"
    late = collector_factory(broker.port, topics=("homeassistant/#",))  # discovery is retained
    assert late.wait(lambda: len(late.messages) >= len(configs)) and all(r for _, _, r in late.messages)
    # the value templates read keys that the health report really has
    health = json.loads(sub.on("appliance/ha1/health")[-1][1])
    assert health["calls_today"] == 3 and health["lines"]["fxo-1"]["state"] == "ringing"
    assert "load_1m" in health["cpu"] and "used_pct" in health["memory"] and "used_pct" in health["disk"]
    assert "outbox_depth" in health["fleet"]
    assert len(configs) == 16 and {"barge_ins", "turn_latency_p95", "gsm_signal", "models_verified"} <= {
        t.split("/")[3] for t in configs}


def test_standard_command_schemas(tmp_path):
    """The standard schemas accept what a dashboard sends and name what is wrong otherwise."""
    from appliance.fleet.commands import SCHEMAS, check_schema, validate

    assert set(SCHEMAS) == {"dial", "hangup", "reload", "models.fetch"}
    for schema in SCHEMAS.values():
        check_schema(schema)
    assert validate({"number": "+4930123456", "line": "sip1", "timeout_s": 30, "amd": True}, SCHEMAS["dial"]) == []
    assert validate({"number": "sip:alice@127.0.0.1:5070"}, SCHEMAS["dial"]) == []
    assert any("args.number" in p for p in validate({"number": "12; rm -rf"}, SCHEMAS["dial"]))
    assert validate({}, SCHEMAS["hangup"]) == [] and validate({"call": "c1"}, SCHEMAS["hangup"]) == []
    assert validate({}, SCHEMAS["reload"]) == [] and validate({}, SCHEMAS["models.fetch"]) == []
    assert any("args.models[0]" in p for p in validate({"models": ["a b"]}, SCHEMAS["models.fetch"]))
    fleet = Fleet(cfg(1883), "box1", "1", tmp_path / "s")  # never started: no broker needed
    with pytest.raises(ValueError, match="no standard schema"):
        fleet.register_command("mystery", None)
    with pytest.raises(ValueError, match="unknown keys"):
        fleet.register_command("dial", None, {"type": "object", "propertys": {}})
    asyncio.run(fleet.stop())


def test_health_on_change_between_periods(broker, collector_factory, tmp_path):
    """Health is published on connect, then on `publish_health()` (a change), not only every period."""
    sub = collector_factory(broker.port, topics=("appliance/hc/health",))
    state = {"lines": {"sip1": {"state": "idle"}}, "calls_today": 0}

    async def main():
        fleet = Fleet(cfg(broker.port, health_interval_s=3600), "hc", "1", tmp_path / "s")
        fleet.set_health_provider(lambda: state)
        await fleet.start()
        assert await wait_for(lambda: len(sub.messages) == 1)
        state["lines"]["sip1"]["state"] = "ringing"
        state["calls_today"] = 1
        fleet.publish_health()
        assert await wait_for(lambda: len(sub.messages) == 2)
        await fleet.stop()

    asyncio.run(main())
    first, second = (json.loads(p) for _, p, _ in sub.messages)
    assert first["lines"]["sip1"]["state"] == "idle" and second["lines"]["sip1"]["state"] == "ringing"
    assert second["calls_today"] == 1
    late = collector_factory(broker.port, topics=("appliance/hc/health",))  # retained: the newest
    assert late.wait(lambda: late.messages) and json.loads(late.messages[0][1])["lines"]["sip1"]["state"] == "ringing"
