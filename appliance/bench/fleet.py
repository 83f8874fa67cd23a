"""Fleet over MQTT: one box's event rate, outbox replay rate, and a 1,000-box connect storm.

Everything runs against a private mosquitto on a free 127.0.0.1 port:
1. `events_per_s`: events a box delivers per second through `Fleet.publish_event` (durable outbox,
   QoS 1, until every PUBACK), against a baseline of bare paho QoS 1 publishes of the same payloads.
2. `replay_events_per_s`: the rate at which an outbox filled during an outage is delivered after
   the broker comes back (every event checked at a subscriber).
3. `boxes`, `connect_storm_s`: virtual boxes connecting at once (tools/fleet_sim.py's engine),
   then living for a while (health, calls); broker and simulator CPU and memory.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from ..stats import percentiles

TARGETS = {"events_per_s": 500, "replay_events_per_s": 500, "connect_storm_s": 30.0}


def add_arguments(p) -> None:
    p.add_argument("--events", type=int, default=20000, help="events for the rate and replay runs")
    p.add_argument("--boxes", type=int, default=1000, help="virtual boxes for the connect storm")
    p.add_argument("--duration", type=float, default=15.0, help="seconds the virtual fleet runs")


def _pct(values: list[float]) -> dict:
    return percentiles(values, 2)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class _Counter:
    """A subscriber that counts distinct event ids (what really arrived)."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.ids: set[str] = set()
        self.ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: self.ids.add(json.loads(m.payload)["id"])
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.ready.wait(10)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _payload(i: int) -> dict:
    return {"call": "c0ffee", "turn": i, "endpoint": 220, "stt": 95, "llm_first_token": 410,
            "tts_first_audio": 130, "v2v": 860}


def _baseline(port: int, n: int) -> float:
    """Bare paho, QoS 1, same payload size, no outbox: events per second until all acknowledged."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    body = json.dumps({"id": "0" * 32, "type": "turn", "ts": time.time(), "device": "b", "data": _payload(0)})
    t0 = time.monotonic()
    infos = [c.publish("appliance/baseline/event/turn", body, qos=1) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    spent = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    return n / spent


async def _wait(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.005)
    return True


async def _one_box(port: int, n: int, state: Path) -> dict:
    from ..fleet import Fleet, FleetConfig

    counter = _Counter(port, "appliance/bench-box/event/#")
    fleet = Fleet(FleetConfig(port=port), "bench-box", "bench", state)
    await fleet.start()
    await _wait(lambda: fleet.status.connected, 10)
    call_us = []
    t0 = time.monotonic()
    for i in range(n):
        c0 = time.perf_counter()
        fleet.publish_event("turn", _payload(i))
        call_us.append((time.perf_counter() - c0) * 1e6)
        if i % 100 == 99:
            await asyncio.sleep(0)  # the loop also runs calls: yield as a real box would
    await _wait(lambda: fleet.status.outbox_depth == 0, 120)
    spent = time.monotonic() - t0
    await _wait(lambda: len(counter.ids) >= n, 10)
    await fleet.stop()
    counter.close()
    return {"events_per_s": round(n / spent, 1), "publish_event_us": _pct(call_us),
            "delivered": len(counter.ids)}


async def _replay(broker, n: int, state: Path) -> dict:
    from ..fleet import Fleet, FleetConfig

    broker.stop()
    fleet = Fleet(FleetConfig(port=broker.port, reconnect_min_s=0.5, reconnect_max_s=0.5), "replay-box", "bench",
                  state)
    await fleet.start()
    for i in range(n):
        fleet.publish_event("turn", _payload(i))
    await _wait(lambda: fleet._outbox.depth == n, 60)  # all stored on disk during the outage
    broker.start()
    counter = _Counter(broker.port, "appliance/replay-box/event/#")
    connects_before = fleet.status.connects
    await _wait(lambda: fleet.status.connected, 30)
    t0 = time.monotonic()
    await _wait(lambda: fleet.status.outbox_depth == 0, 120)
    spent = time.monotonic() - t0
    await _wait(lambda: len(counter.ids) >= n, 10)
    await fleet.stop()
    counter.close()
    return {"replay_events_per_s": round(n / spent, 1), "replay_delivered": len(counter.ids),
            "replay_subscriber_late": connects_before != 0}


async def _storm(broker, boxes: int, duration_s: float) -> dict:
    from ..fleet.health import process_rss_mb
    from ..fleet.sim import VirtualFleet

    sim = VirtualFleet("127.0.0.1", broker.port, boxes, prefix="bench-")
    cpu0, b0 = _cpu_s(), broker.cpu_s()
    t0 = time.monotonic()
    storm_s = await sim.connect(timeout_s=120)
    await sim.run(duration_s, calls_per_hour=120, health_interval_s=10)
    await sim.drain()
    wall = time.monotonic() - t0
    out = {"boxes": sim.stats.connected, "boxes_asked": boxes, "connect_storm_s": storm_s,
           "connack_ms": sim.stats.as_dict().get("connack_ms", {}),
           "sim_events": sim.stats.events_sent, "sim_events_acked": sim.stats.events_acked,
           "sim_health_reports": sim.stats.health_sent,
           "sim_cpu_pct": round(100 * (_cpu_s() - cpu0) / wall, 1), "sim_rss_mb": sim.rss_mb(),
           "broker_cpu_pct": round(100 * (broker.cpu_s() - b0) / wall, 1),
           "broker_rss_mb": process_rss_mb(pid=broker.pid)}
    await sim.close()
    return out


def run(args) -> dict:
    from ..fleet.mosquitto import Mosquitto

    n, boxes = args.events, args.boxes
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        tmp = Path(tmp)
        broker = Mosquitto(tmp / "broker").start()
        try:
            baseline = _baseline(broker.port, n)
            result = asyncio.run(_one_box(broker.port, n, tmp / "box"))
            result.update(asyncio.run(_replay(broker, n, tmp / "replay")))
            broker.stop()
            broker = Mosquitto(tmp / "broker2").start()  # a fresh broker for the storm
            result.update(asyncio.run(_storm(broker, boxes, args.duration)))
        finally:
            broker.stop()
    result.update(events=n, baseline_events_per_s=round(baseline, 1),
                  events_ratio=round(result["events_per_s"] / baseline, 2))
    return result


def report(r: dict) -> str:
    def mark(ok):
        return "ok" if ok else "BELOW TARGET"

    return "\n".join([
        f"fleet benchmark ({r['events']} events; private mosquitto on 127.0.0.1)",
        f"  events_per_s         {r['events_per_s']:>10.0f}   target >= {TARGETS['events_per_s']}  "
        f"{mark(r['events_per_s'] >= TARGETS['events_per_s'])}",
        f"    bare paho QoS 1    {r['baseline_events_per_s']:>10.0f}   ratio {r['events_ratio']:.2f} "
        f"(durable outbox / no outbox); delivered {r['delivered']}/{r['events']}",
        f"    publish_event()    p50 {r['publish_event_us']['p50']} us, p95 {r['publish_event_us']['p95']} us "
        "(cost on the event loop)",
        f"  replay_events_per_s  {r['replay_events_per_s']:>10.0f}   target >= {TARGETS['replay_events_per_s']}  "
        f"{mark(r['replay_events_per_s'] >= TARGETS['replay_events_per_s'])}; delivered "
        f"{r['replay_delivered']}/{r['events']}",
        f"  boxes                {r['boxes']:>10d}   of {r['boxes_asked']} asked",
        f"  connect_storm_s      {r['connect_storm_s']:>10.2f}   target <= {TARGETS['connect_storm_s']}  "
        f"{mark(r['connect_storm_s'] <= TARGETS['connect_storm_s'])}; CONNACK p50 "
        f"{r['connack_ms'].get('p50')} ms, p95 {r['connack_ms'].get('p95')} ms",
        f"    fleet running      {r['sim_events']} events ({r['sim_events_acked']} acked), "
        f"{r['sim_health_reports']} health reports",
        f"    broker             cpu {r['broker_cpu_pct']}%  rss {r['broker_rss_mb']} MB",
        f"    simulator          cpu {r['sim_cpu_pct']}%  rss {r['sim_rss_mb']} MB",
    ])
