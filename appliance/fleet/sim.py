"""A simulated fleet: up to thousands of virtual boxes in one process (one asyncio loop, one paho
client per box driven by the loop's reader/writer callbacks, no thread per box).

Each virtual box behaves like a real one on the wire: last will and retained `online`, retained
health with realistic figures every `health_interval_s` (jittered), calls as event sequences
(`call.started`, `call.answered`, `amd.result`, `turn`s with latency breakdowns, sometimes `handoff`,
`call.ended`) at `calls_per_hour`, and answers to `cmd/ping`. For scale tests, demos and the
`appliance bench fleet` connect storm. Used by `tools/fleet_sim.py`.
"""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import uuid
from dataclasses import dataclass, field

from .health import process_rss_mb


@dataclass
class SimStats:
    boxes: int = 0
    connected: int = 0
    refused: int = 0
    connect_storm_s: float | None = None
    events_sent: int = 0
    events_acked: int = 0
    health_sent: int = 0
    commands_answered: int = 0
    disconnects: int = 0
    connack_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "connack_ms"}
        if self.connack_ms:
            ordered = sorted(self.connack_ms)
            out["connack_ms"] = {"p50": round(ordered[len(ordered) // 2], 1),
                                 "p95": round(ordered[int(len(ordered) * 0.95) - 1], 1)}
        return out


class _Box:
    """One virtual box: a paho client on the shared loop."""

    def __init__(self, sim: VirtualFleet, index: int):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.sim = sim
        self.id = f"{sim.prefix}{index:04d}"
        self.root = f"appliance/{self.id}/"
        self.rng = random.Random(index)
        self.connected = asyncio.Event()
        self.started_at = 0.0
        self.calls_today = 0
        self.handoffs = 0
        self.barge_ins = 0
        self.gsm = index % 4 == 3
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"appliance-{self.id}", protocol=mqtt.MQTTv5)
        if sim.username_from_id:
            self.c.username_pw_set(self.id, sim.password)
        if sim.tls_ca:
            self.c.tls_set(ca_certs=sim.tls_ca)
        self.c.will_set(self.root + "status", b"offline", qos=1, retain=True)
        self.c.max_inflight_messages_set(100)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.on_socket_open = self._on_socket_open
        self.c.on_socket_close = self._on_socket_close
        self.c.on_socket_register_write = self._on_register_write
        self.c.on_socket_unregister_write = self._on_unregister_write
        self._event_mids: set[int] = set()
        self._misc: asyncio.Task | None = None

    # -- paho <-> asyncio glue (the pattern of paho's loop_asyncio example) -------------------
    def _on_socket_open(self, client, userdata, sock):
        self.sim.loop.add_reader(sock, client.loop_read)
        self._misc = self.sim.loop.create_task(self._misc_loop())

    def _on_socket_close(self, client, userdata, sock):
        self.sim.loop.remove_reader(sock)
        self.sim.loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()

    def _on_register_write(self, client, userdata, sock):
        self.sim.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client, userdata, sock):
        self.sim.loop.remove_writer(sock)

    async def _misc_loop(self):
        import paho.mqtt.client as mqtt

        while self.c.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1.0)

    # -- MQTT behaviour ------------------------------------------------------------------------
    def connect(self) -> None:
        self.started_at = time.monotonic()
        self.c.connect(self.sim.host, self.sim.port, keepalive=60, clean_start=True)
        self.c.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.sim.stats.refused += 1
            return
        self.sim.stats.connected += 1
        self.sim.stats.connack_ms.append((time.monotonic() - self.started_at) * 1000)
        client.subscribe(self.root + "cmd/+", qos=1)
        client.publish(self.root + "status", b"online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self.connected.is_set():
            self.sim.stats.connected -= 1
            if not self.sim.closing:
                self.sim.stats.disconnects += 1
        self.connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties=None):
        if mid in self._event_mids:
            self._event_mids.discard(mid)
            self.sim.stats.events_acked += 1

    def _on_message(self, client, userdata, msg):
        name = msg.topic.rsplit("/", 1)[-1]
        try:
            request = json.loads(msg.payload)
            rid = request.get("id") if isinstance(request, dict) else None
        except ValueError:
            rid = None
        ok = name == "ping" and rid is not None
        body = {"id": rid, "command": name, "ok": ok}
        if ok:
            body["result"] = {"pong": True, "device": self.id, "simulated": True}
        else:
            body["error"] = "simulated box answers ping only"
        client.publish(f"{self.root}cmd/{name}/result", json.dumps(body), qos=1)
        self.sim.stats.commands_answered += 1

    def event(self, type_: str, data: dict) -> None:
        body = {"id": uuid.uuid4().hex, "type": type_, "ts": round(time.time(), 3), "device": self.id,
                "data": data}
        info = self.c.publish(f"{self.root}event/{type_}", json.dumps(body, separators=(",", ":")), qos=1)
        self._event_mids.add(info.mid)
        self.sim.stats.events_sent += 1

    def health(self) -> None:
        r = self.rng
        body = {"device": self.id, "version": "sim", "ts": round(time.time(), 3),
                "uptime_s": {"process_s": round(time.monotonic() - self.started_at, 1)},
                "cpu": {"load_1m": round(r.uniform(0.2, 1.6), 2), "cores": 4},
                "temperature_c": round(r.uniform(42, 68), 1),
                "memory": {"total_mb": 3793.1, "used_pct": round(r.uniform(20, 45), 1)},
                "disk": {"used_pct": round(r.uniform(10, 60), 1)},
                "lines": {"line1": {"state": r.choice(["idle"] * 8 + ["in_call", "ringing"])}},
                "calls_today": self.calls_today, "handoffs": self.handoffs, "barge_ins": self.barge_ins,
                "turn_latency_ms": {"p50": r.randint(650, 900), "p95": r.randint(1000, 1500)},
                "models_verified": True, "last_error": None,
                "fleet": {"outbox_depth": 0, "connected": True}}
        if self.gsm:  # every fourth box sits on a GSM line
            body["lines"]["line1"]["type"] = "gsm"
            body["gsm"] = {"registration": r.choice(["home"] * 9 + ["searching"]), "signal_dbm": r.randint(-105, -60)}
        self.c.publish(self.root + "health", json.dumps(body), qos=0, retain=True)
        self.sim.stats.health_sent += 1

    async def run_calls(self, calls_per_hour: float, stop: asyncio.Event) -> None:
        """A Poisson stream of calls, each a realistic sequence of events."""
        r = self.rng
        while not stop.is_set():
            gap = r.expovariate(calls_per_hour / 3600.0) if calls_per_hour > 0 else 3600
            try:
                await asyncio.wait_for(stop.wait(), gap)
                return
            except asyncio.TimeoutError:
                pass
            if not self.connected.is_set():
                continue
            call = uuid.uuid4().hex[:12]
            self.calls_today += 1
            direction = r.choice(["inbound", "outbound"])
            self.event("call.started", {"call": call, "line": "line1", "direction": direction})
            self.event("call.answered", {"call": call})
            if direction == "outbound":
                self.event("amd.result", {"call": call, "label": r.choice(["human", "human", "machine"]),
                                          "decision_ms": r.randint(900, 3500)})
            for turn in range(r.randint(2, 6)):
                llm = r.randint(250, 700)
                self.barge_ins += r.random() < 0.15
                self.event("turn", {"call": call, "turn": turn, "endpoint": r.randint(150, 400),
                                    "stt": r.randint(60, 200), "llm_first_token": llm,
                                    "tts_first_audio": r.randint(80, 220), "v2v": llm + r.randint(300, 700)})
            if r.random() < 0.1:
                self.handoffs += 1
                self.event("handoff", {"call": call, "to": "+15550100"})
            self.event("call.ended", {"call": call, "cause": "normal", "duration_s": r.randint(20, 300)})

    async def run_health(self, interval_s: float, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.uniform(0, interval_s))  # spread the fleet's reports
        while not stop.is_set():
            if self.connected.is_set():
                self.health()
            try:
                await asyncio.wait_for(stop.wait(), interval_s * self.rng.uniform(0.9, 1.1))
            except asyncio.TimeoutError:
                pass

    def close(self) -> None:
        if self.connected.is_set():
            self.c.publish(self.root + "status", b"offline", qos=1, retain=True)
        self.c.disconnect()


class VirtualFleet:
    """`boxes` virtual boxes against one broker. `await connect()` measures the connect storm;
    `await run(duration_s)` lets them live; `await close()` disconnects them cleanly."""

    def __init__(self, host: str, port: int, boxes: int, prefix: str = "sim-", password: str | None = None,
                 username_from_id: bool = False, tls_ca: str | None = None):
        self.host, self.port = host, port
        self.prefix = prefix
        self.password, self.username_from_id, self.tls_ca = password, username_from_id, tls_ca
        self.count = boxes
        self.stats = SimStats(boxes=boxes)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.boxes: list[_Box] = []
        self.closing = False

    async def connect(self, timeout_s: float = 60.0, batch: int = 50) -> float:
        """Connect every box as fast as possible; seconds until the last CONNACK (the storm)."""
        self.loop = asyncio.get_running_loop()
        self.boxes = [_Box(self, i) for i in range(self.count)]
        t0 = time.monotonic()
        for i, box in enumerate(self.boxes):
            try:
                box.connect()
            except OSError:
                self.stats.refused += 1
            if i % batch == batch - 1:
                await asyncio.sleep(0)  # let CONNACKs in while the storm goes on
        try:
            await asyncio.wait_for(asyncio.gather(*(b.connected.wait() for b in self.boxes)), timeout_s)
        except asyncio.TimeoutError:
            pass
        self.stats.connect_storm_s = round(time.monotonic() - t0, 3)
        return self.stats.connect_storm_s

    async def run(self, duration_s: float, calls_per_hour: float = 6.0, health_interval_s: float = 30.0) -> None:
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(b.run_calls(calls_per_hour, stop)) for b in self.boxes]
        tasks += [asyncio.ensure_future(b.run_health(health_interval_s, stop)) for b in self.boxes]
        await asyncio.sleep(duration_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every event sent has been acknowledged (or the timeout)."""
        end = time.monotonic() + timeout_s
        while self.stats.events_acked < self.stats.events_sent and time.monotonic() < end:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.closing = True
        for box in self.boxes:
            box.close()
        await asyncio.sleep(0.3)  # let the DISCONNECTs go out

    @staticmethod
    def rss_mb() -> float | None:
        return process_rss_mb()
