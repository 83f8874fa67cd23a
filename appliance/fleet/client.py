"""`Fleet`: the box's face to its owners over MQTT (see DESIGN.md for the topic contract).

Topics under `root` (default `appliance/<device id>/`): `status` (retained online/offline, last will),
`health` (retained JSON, periodic), `event/<type>` (QoS 1 JSON via the durable outbox), `cmd/<name>`
in and `cmd/<name>/result` out, `config` (desired, retained) in and `config/reported` out.

Threads: the link thread owns the socket and the outbox; command handlers, config callbacks and the
health provider run on the asyncio loop that called `start()`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from . import discovery, health
from .commands import SCHEMAS, BadRequest, check_schema, parse_request, validate
from .config import FleetConfig
from .link import Link, Will
from .outbox import Outbox
from .remote_config import ConfigHandler, RemoteConfig, parse_payload

log = logging.getLogger("appliance.fleet")

_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_COMMAND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
CommandHandler = Callable[[dict], Awaitable[dict]]


@dataclass(frozen=True)
class FleetStatus:
    connected: bool
    outbox_depth: int
    dropped: int
    delivered: int
    replayed: int
    connects: int
    protocol: str | None
    last_error: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Fleet:
    """One box's MQTT link: durable events, periodic health, commands, remote config.

    Runs fine without a broker: events are stored (bounded) and delivered in order once one answers.
    """

    def __init__(self, config: FleetConfig, device_id: str, version: str, state_dir: Path,
                 name: str = ""):
        if not _DEVICE_ID.fullmatch(device_id or ""):
            raise ValueError(f"device id {device_id!r}: expected 1-64 letters, digits, '_' or '-'")
        self.config = config
        self.device_id = device_id
        self.version = version
        self.name = name
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        root = config.root if config.root is not None else f"appliance/{device_id}/"
        self.root = root if root.endswith("/") or not root else root + "/"
        outbox_path = Path(config.outbox_path) if config.outbox_path else self.state_dir / "outbox.sqlite"
        self._outbox = Outbox(outbox_path, config.outbox_max_events)
        self._link = Link(config, f"appliance-{device_id}", self._outbox,
                          Will(self.topic("status"), b"offline"),
                          password=os.environ.get(config.password_env) if config.password_env else None,
                          on_connect=self._on_link_up, on_message=self._on_link_message)
        self._commands: dict[str, tuple[CommandHandler, dict]] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._health_provider: Callable[[], dict] | None = None
        self._remote: RemoteConfig | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health_now: asyncio.Event | None = None
        self._started = False
        self.register_command("ping", self._ping, {"type": "object", "additionalProperties": False,
                                                  "properties": {"echo": {"type": "string", "maxLength": 1024}}})
        self.register_command("config.set", self._config_set, {
            "type": "object", "required": ["config"], "additionalProperties": False,
            "properties": {"config": {"type": "object"}, "force": {"type": "boolean"}}})

    # -- public API ------------------------------------------------------------------------
    def topic(self, suffix: str) -> str:
        return f"{self.root}{suffix}"

    async def start(self) -> None:
        """Start the link in the background and return at once (no broker needed)."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._health_now = asyncio.Event()
        self._spawn(self._health_loop())
        self._link.start()

    async def stop(self, flush_s: float = 5.0) -> None:
        """Flush the outbox (up to `flush_s` while connected), publish retained `offline`, disconnect."""
        if not self._started:
            self._outbox.close()
            return
        end = time.monotonic() + flush_s
        while self._link.connected and self._link.depth and time.monotonic() < end:
            await asyncio.sleep(0.02)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._link.stop, [(self.topic("status"), b"offline", 1, True)])
        self._started = False

    def publish_event(self, type: str, data: dict) -> str:  # noqa: A002 - the contract's name
        """Queue one event for durable, in-order QoS 1 delivery on `event/<type>`; returns its id.

        Never blocks: the payload is built here, stored by the link thread."""
        if not _EVENT_TYPE.fullmatch(type or ""):
            raise ValueError(f"event type {type!r}: expected 1-64 letters, digits, '.', '_' or '-'")
        event_id = uuid.uuid4().hex
        body = {"id": event_id, "type": type, "ts": round(time.time(), 3), "device": self.device_id,
                "data": data if data is not None else {}}
        payload = json.dumps(body, separators=(",", ":"), default=str).encode()
        self._link.enqueue(self.topic(f"event/{type}"), payload)
        return event_id

    def set_health_provider(self, fn: Callable[[], dict]) -> None:
        """`fn()` (called on the loop) returns runtime figures merged into each health report, e.g.
        `lines: {name: {"state": ...}}`, `calls_today`, `turn_latency_ms: {p50, p95}`, `barge_ins`,
        `handoffs`, `last_error`, `models_verified`, `gsm: {registration, signal_dbm}`."""
        self._health_provider = fn

    def publish_health(self) -> None:
        """Publish health now (on a change worth telling) instead of waiting for the next period."""
        if self._health_now is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._health_now.set)

    def register_command(self, name: str, handler: CommandHandler, schema: dict | None = None) -> None:
        """Serve `cmd/<name>`: args validated against `schema`, each request id executed once.
        Without a schema, the standard one of `dial`, `hangup`, `reload`, `models.fetch` is used
        (`commands.SCHEMAS`). `handler(args)` is awaited on the loop and returns a dict (the result)
        or raises (an error result naming the exception)."""
        if not _COMMAND.fullmatch(name or ""):
            raise ValueError(f"command name {name!r}: expected 1-64 letters, digits, '.', '_' or '-'")
        if schema is None:
            if name not in SCHEMAS:
                raise ValueError(f"command {name!r}: no standard schema (standard: {', '.join(sorted(SCHEMAS))}); "
                                 "pass one")
            schema = SCHEMAS[name]
        check_schema(schema)
        self._commands[name] = (handler, schema)

    def on_config(self, fn: ConfigHandler, config_path: Path | None = None) -> None:
        """Handle desired configs (retained `config` topic, `config.set` command): see remote_config.py.
        Applied configs are written atomically to `config_path` (default `<state dir>/config.yaml`)."""
        path = Path(config_path) if config_path else self.state_dir / "config.yaml"
        self._remote = RemoteConfig(fn, path, self._outbox.get_meta, self._outbox.set_meta)

    @property
    def status(self) -> FleetStatus:
        link = self._link
        return FleetStatus(connected=link.connected, outbox_depth=link.depth, dropped=link.dropped,
                           delivered=link.delivered, replayed=link.replayed, connects=link.connects, protocol=link.protocol_in_use,
                           last_error=link.last_error)

    # -- link callbacks (link thread) --------------------------------------------------------
    def _on_link_up(self, link: Link) -> None:
        client = link._client
        client.subscribe([(self.topic("cmd/+"), 1), (self.topic("config"), 1)])
        link.publish_now(self.topic("status"), b"online", qos=1, retain=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._after_connect)

    def _on_link_message(self, topic: str, payload: bytes) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, topic, payload)

    # -- loop side -----------------------------------------------------------------------------
    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _after_connect(self) -> None:
        if self.config.home_assistant:
            lines = list((self._provider_figures().get("lines") or {}).keys())
            for topic, payload in discovery.messages(self.device_id, self.root, self.version, lines,
                                                     self.config.discovery_prefix, self.name):
                self._link.publish_now(topic, payload, qos=1, retain=True)
        if self._health_now is not None:
            self._health_now.set()

    def _dispatch(self, topic: str, payload: bytes) -> None:
        if topic == self.topic("config"):
            if payload:  # an empty retained message clears the desired config: nothing to do
                self._spawn(self._handle_config(payload))
        elif topic.startswith(self.topic("cmd/")):
            self._spawn(self._handle_command(topic[len(self.topic("cmd/")):], payload))

    def _reply(self, name: str, body: dict) -> None:
        body.setdefault("command", name)
        self._link.publish_now(self.topic(f"cmd/{name}/result"), json.dumps(body, default=str).encode(), qos=1)

    async def _handle_command(self, name: str, payload: bytes) -> None:
        try:
            request = parse_request(payload)
        except BadRequest as exc:
            self._reply(name, {"id": exc.request_id, "ok": False, "error": str(exc), "problems": exc.problems})
            return
        entry = self._commands.get(name)
        if entry is None:
            self._reply(name, {"id": request.id, "ok": False,
                               "error": f"unknown command {name!r}; known: {', '.join(sorted(self._commands))}"})
            return
        key = f"{name}/{request.id}"
        cached = self._outbox.request_result(key)
        if cached is not None:  # a repeat (a retry, or QoS 1 redelivery): answer, don't execute again
            body = json.loads(cached)
            body["duplicate"] = True
            self._reply(name, body)
            return
        if key in self._running:
            return  # the first copy is still running; its result will answer both
        handler, schema = entry
        problems = validate(request.args, schema)
        if problems:
            body = {"id": request.id, "ok": False, "error": "invalid arguments", "problems": problems}
        else:
            self._running.add(key)
            try:
                result = await asyncio.wait_for(handler(request.args), self.config.command_timeout_s)
                body = {"id": request.id, "ok": True,
                        "result": result if isinstance(result, dict) else {"value": result}}
            except TimeoutError:
                body = {"id": request.id, "ok": False,
                        "error": f"timed out after {self.config.command_timeout_s:g} s"}
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("fleet: command %s failed", name)
                body = {"id": request.id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                self._running.discard(key)
        body["command"] = name
        self._outbox.remember_request(key, name, json.dumps(body, default=str), time.time())
        self._reply(name, body)

    async def _handle_config(self, payload: bytes) -> None:
        data, problems = parse_payload(payload)
        if problems:
            report = {"status": "rejected", "problems": problems, "source": "config", "ts": time.time()}
        else:
            report = await self._apply_config(data, "config")
        self._link.publish_now(self.topic("config/reported"), json.dumps(report).encode(), qos=1, retain=True)

    async def _apply_config(self, data: dict, source: str, force: bool = False) -> dict:
        if self._remote is None:
            return {"status": "rejected", "problems": ["this box does not take remote configuration"],
                    "source": source, "ts": time.time()}
        return await self._remote.apply(data, source, force)

    async def _config_set(self, args: dict) -> dict:
        report = await self._apply_config(args["config"], "cmd", bool(args.get("force")))
        self._link.publish_now(self.topic("config/reported"), json.dumps(report).encode(), qos=1, retain=True)
        return report

    async def _ping(self, args: dict) -> dict:
        out = {"pong": True, "device": self.device_id, "version": self.version, "ts": time.time(),
               "outbox_depth": self._link.depth}
        if "echo" in args:
            out["echo"] = args["echo"]
        return out

    def _provider_figures(self) -> dict:
        if self._health_provider is None:
            return {}
        try:
            figures = self._health_provider()
            return figures if isinstance(figures, dict) else {"health_provider_error": "not a dict"}
        except Exception as exc:
            log.exception("fleet: health provider failed")
            return {"health_provider_error": f"{type(exc).__name__}: {exc}"}

    def health_report(self) -> dict:
        """The health JSON as published: box figures, fleet link figures, then the runtime's."""
        report = {"device": self.device_id, "version": self.version, "ts": round(time.time(), 3)}
        report.update(health.snapshot(self.state_dir))
        report["fleet"] = self.status.as_dict()
        report.update(self._provider_figures())
        return report

    async def _health_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._health_now.wait(), self.config.health_interval_s)
            except TimeoutError:
                pass
            self._health_now.clear()
            if self._link.connected:
                payload = json.dumps(self.health_report(), default=str).encode()
                self._link.publish_now(self.topic("health"), payload, qos=1, retain=True)
