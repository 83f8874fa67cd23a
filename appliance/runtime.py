"""`appliance run --config FILE`: the supervisor that runs the box.

It opens every configured line (several at once), runs one `CallSession` per call, refuses calls a
line has no room for, places outbound calls on command (with answering-machine detection first),
restarts a line that fails with backoff (logging the outage once, and its end), hands every event
to the fleet (MQTT, durable outbox) when `fleet:` is configured, serves the fleet's commands
(`dial`, `hangup`, `reload`, `config.set`, `ping`, `models.fetch`) and health, applies remote
configs (rolling back when a line does not come up), and on SIGTERM/SIGINT stops accepting calls,
says a short goodbye on connected calls, hangs up, closes recordings, stops the lines and exits 0.
SIGHUP re-reads the config file.

Exit codes: 0 stopped by a signal, 2 bad configuration (every problem listed; see cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ApplianceError, ConfigError, LineError
from .stats import percentiles

log = logging.getLogger("appliance.runtime")

GOODBYE = "I'm sorry, I have to end the call now. Goodbye."
LINE_UP_TIMEOUT_S = 30.0  # a line that has not come up by then counts as failed (remote config)
REGISTER_TIMEOUT_S = 10.0  # a SIP line with a registrar is up once registered
SESSION_END_TIMEOUT_S = 10.0  # shutdown: wait this long for sessions to close after hang-up
LATENCY_WINDOW = 200  # recent turns kept for the health report's latency percentiles


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="appliance config (YAML); remote configs that apply are written back to it. "
        "Default: the embedded one (simulated line, offline call flow)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="fleet outbox and state (default /var/lib/appliance as root, else ~/.local/state/appliance)",
    )


def default_state_dir() -> Path:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/appliance")
    return Path.home() / ".local" / "state" / "appliance"


def main(args) -> int:
    from .config import load

    cfg = load(args.config)  # ConfigError: the CLI prints every problem and exits 2
    if not getattr(args, "verbose", 0):
        logging.getLogger().setLevel(cfg.log.level.upper())
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    runtime = Runtime(cfg, config_path=Path(args.config) if args.config else None, state_dir=state_dir)
    return asyncio.run(runtime.serve())




@dataclasses.dataclass
class Stats:
    """Figures for the health report."""

    calls_today: int = 0
    day: str = ""
    calls_total: int = 0
    busy_refused: int = 0
    barge_ins: int = 0
    handoffs: int = 0
    last_error: dict | None = None
    v2v_ms: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW)
    )

    def call_started(self) -> None:
        today = datetime.date.today().isoformat()
        if today != self.day:
            self.day, self.calls_today = today, 0
        self.calls_today += 1
        self.calls_total += 1


@dataclasses.dataclass
class ActiveCall:
    call: Any
    line: str
    session: Any = None
    task: asyncio.Task | None = None
    outbound: bool = False
    amd: bool | None = None  # answering-machine detection on this outbound call (None: as configured)
    context: dict | None = None  # facts from the fleet's dial command, in call.started
    announced: bool = False  # call.started/answered already sent (before AMD on outbound calls)


class LineRunner:
    """Keeps one line up: builds and starts it, restarts it with backoff when it fails, and feeds
    its events (ring, state) to the runtime."""

    def __init__(self, runtime: Runtime, cfg):
        self.rt = runtime
        self.cfg = cfg
        self.name = cfg.name
        self.line = None
        self.state = "down"
        self.detail = "starting"
        self.failed_attempts = 0  # consecutive, in the current outage
        self.restarts = 0  # outages recovered from
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.retry_delays_s: collections.deque = collections.deque(maxlen=32)  # backoff, most recent last
        self.task: asyncio.Task | None = None
        self.first_result: asyncio.Future | None = None
        self._stopping = False

    def start(self) -> None:
        self.first_result = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._supervise(), name=f"line-{self.name}")

    async def wait_first(self, timeout_s: float = LINE_UP_TIMEOUT_S) -> str | None:
        """None once the line came up on its first attempt, else why it did not."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.first_result), timeout_s)
        except TimeoutError:
            return f"did not come up within {timeout_s:g} s"

    def _first(self, error: str | None) -> None:
        if self.first_result is not None and not self.first_result.done():
            self.first_result.set_result(error)

    async def stop(self) -> None:
        self._stopping = True
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping either way
                pass
        line, self.line = self.line, None
        if line is not None:
            try:
                await asyncio.wait_for(line.stop(), 10.0)
            except Exception as exc:  # noqa: BLE001
                log.warning("line %s: stop failed: %s", self.name, exc)
        self._set_state("down", "stopped")

    def _set_state(self, state: str, detail: str = "") -> None:
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        self.rt.publish("line.state", {"line": self.name, "state": state, "detail": detail})
        self.rt.health_changed()

    async def _supervise(self) -> None:
        from .lines import create_line

        delay = self.rt.restart_min_s
        while not self._stopping:
            line = None
            try:
                line = create_line(self.cfg)
                if hasattr(line, "briefing_audio"):   # attended transfer: brief the human first
                    line.briefing_audio = self.rt.briefing_audio
                await line.start()
                error = await self._wait_ready(line)
            except asyncio.CancelledError:
                if line is not None:
                    await _quietly(line.stop())
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to start is retried
                error = _describe(exc, self.name)
                if line is not None:
                    await _quietly(line.stop())
                line = None
            if line is None:
                self._failed(error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.rt.restart_max_s)
                continue
            self.line = line
            self._first(error)
            if self.down_since is not None:
                log.info(
                    "line %s: up again after %d failed attempt(s), %.0f s down",
                    self.name,
                    self.failed_attempts,
                    time.monotonic() - self.down_since,
                )
                self.restarts += 1
            elif error:
                log.warning("line %s (%s): started, but %s; it keeps trying", self.name, self.cfg.type, error)
            else:
                log.info("line %s (%s): up, %s", self.name, self.cfg.type, line.state)
            self.down_since, self.failed_attempts = None, 0
            delay = self.rt.restart_min_s
            self._set_state(line.state, "up")
            try:
                await self._serve(line)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a line that dies is restarted
                self.line = None
                await _quietly(line.stop())
                self._failed(_describe(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.rt.restart_max_s)

    async def _wait_ready(self, line) -> str | None:
        """A SIP line with a registrar is up once registered (it keeps trying by itself)."""
        if getattr(line, "registrar", None) and hasattr(line, "wait_registered"):
            if not await line.wait_registered(REGISTER_TIMEOUT_S):
                return (
                    f"not registered with {self.cfg.registrar} within {REGISTER_TIMEOUT_S:g} s "
                    f"(last answer: {line.last_register_status or 'none'})"
                )
        return None

    def _failed(self, error: str, retry_in_s: float) -> None:
        self.failed_attempts += 1
        self.last_error = error
        self.retry_delays_s.append(retry_in_s)
        self._first(error)
        if self.down_since is None:  # log the outage once; the retries quietly
            self.down_since = time.monotonic()
            log.error(
                "line %s: %s; retrying with backoff (%g s, doubling up to %g s)",
                self.name,
                error,
                retry_in_s,
                self.rt.restart_max_s,
            )
            self.rt.publish("error", {"where": "line", "line": self.name, "error": error})
            self.rt.stats.last_error = {
                "where": f"line {self.name}",
                "error": error,
                "ts": round(time.time(), 3),
            }
        else:
            log.debug("line %s: attempt %d failed: %s", self.name, self.failed_attempts, error)
        self._set_state("error", error)

    async def _serve(self, line) -> None:
        async for ev in line.events():
            if ev.type == "state":
                self._set_state(ev.data.get("state", "?"), ev.data.get("detail", ""))
            elif ev.type == "ring":
                call = ev.data.get("call")
                if call is not None:
                    self.rt.on_ring(self, call, ev.data.get("caller_id", ""))
            elif ev.type == "progress":
                log.debug("line %s: call %s progress %s", self.name, ev.call_id, ev.data)

    def health(self) -> dict:
        out = {"name": self.name, "type": self.cfg.type}
        if self.line is not None:
            try:
                out.update(self.line.health())
            except Exception as exc:  # noqa: BLE001 - a health bug must not hide the rest
                out["health_error"] = _describe(exc)
        out.update(
            state=self.state,
            detail=self.detail,
            restarts=self.restarts,
            failed_attempts=self.failed_attempts,
            last_error=self.last_error,
            retry_in_s=self.retry_delays_s[-1] if self.down_since is not None else None,
            calls_active=len(self.rt.calls_on(self.name)),
        )
        return out


class Runtime:
    """The box. `await Runtime(cfg).serve()` runs until SIGTERM/SIGINT and returns the exit code."""

    def __init__(
        self,
        cfg,
        *,
        config_path: Path | None = None,
        state_dir: Path | None = None,
        version: str = __version__,
        preload: bool = True,
        restart_min_s: float = 1.0,
        restart_max_s: float = 60.0,
        llm_client=None,
        on_event=None,
    ):
        self.cfg = cfg
        self.on_event = on_event  # optional `fn(type, data)`: every event, also without a fleet
        self.config_path = Path(config_path) if config_path else None
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.version = version
        self.preload = preload
        self.restart_min_s = restart_min_s
        self.restart_max_s = restart_max_s
        self.llm_client = llm_client
        self.lines: dict[str, LineRunner] = {}
        self.calls: dict[str, ActiveCall] = {}
        self.stats = Stats()
        self.fleet = None
        self.models_verified: bool | None = None
        self.stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._restoring = False
        self._apply_lock: asyncio.Lock | None = None
        self._goodbye = None
        self._background: set[asyncio.Future] = set()

    # ---- lifecycle --------------------------------------------------------------------------
    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._spawn, self._reload_logged)
        try:
            await self.start()
            await self._stop_requested.wait()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0

    def _spawn(self, make_coro) -> None:
        task = asyncio.ensure_future(make_coro())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def request_stop(self, why: str = "request") -> None:
        if self._stop_requested is not None and self._stop_requested.is_set():
            log.warning("%s again while stopping: hanging up without goodbye", why)
            self._goodbye = None
            return
        log.info("%s: stopping (no new calls; ending %d call(s) politely)", why, len(self.calls))
        self.stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def start(self) -> None:
        self._apply_lock = asyncio.Lock()
        if self._stop_requested is None:
            self._stop_requested = asyncio.Event()
        cfg = self.cfg
        names = ", ".join(f"{ln.name} ({ln.type})" for ln in cfg.lines)
        log.info(
            "appliance %s starting: device %s, config %s, lines %s, %s",
            self.version,
            cfg.device.id,
            self.config_path or "<embedded defaults>",
            names,
            f"LLM {cfg.llm.model} at {cfg.llm.base_url}" if cfg.llm else "offline call flow",
        )
        if cfg.fleet is not None:
            await self._start_fleet()
        if self.preload:
            await self._preload()
        if self.stopping:
            return
        for line_cfg in cfg.lines:
            runner = LineRunner(self, line_cfg)
            self.lines[line_cfg.name] = runner
            runner.start()

    async def _preload(self) -> None:
        """Load (and verify) the speech models before taking calls, so the first call is answered
        as fast as the next; prepare the shutdown goodbye."""
        from .agent import engines

        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            await loop.run_in_executor(None, engines.get_stt, self.cfg.speech)
            tts = await loop.run_in_executor(None, engines.get_tts, self.cfg.speech)
            await loop.run_in_executor(None, engines.preload_semantic_endpointing, self.cfg.detect)
            self._goodbye = await loop.run_in_executor(None, tts.synthesize_to_array, GOODBYE, 8000)
            self.models_verified = True
            # what calls say word for word, into the voice's phrase cache (Tts.phrase): a few
            # seconds of synthesis, in the background; a call meanwhile synthesizes what it needs
            loop.run_in_executor(None, engines.prewarm, tts, self.cfg)
            log.info("speech models ready in %.1f s", time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - keep running: the fleet can fetch models
            self.models_verified = False
            self.record_error("models", _describe(exc))

    async def shutdown(self) -> None:
        self.stopping = True
        active = list(self.calls.values())
        if active:
            await asyncio.gather(*(self._end_politely(ac) for ac in active), return_exceptions=True)
            tasks = [ac.task for ac in active if ac.task is not None]
            done, pending = (
                await asyncio.wait(tasks, timeout=SESSION_END_TIMEOUT_S) if tasks else (set(), set())
            )
            for t in pending:
                log.warning("call session %s did not end in time; cancelling it", t.get_name())
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for runner in list(self.lines.values()):
            await runner.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        log.info("stopped")

    async def _end_politely(self, ac: ActiveCall) -> None:
        call, session = ac.call, ac.session
        if session is not None:
            session.end_reason = "shutdown"
        if call.ended.is_set():
            return
        if call.answered_at is None and ac.task is not None and not ac.task.done():
            # still ringing (the session is loading): stop it; its clean-up declines the call
            ac.task.cancel()
        pcm = self._goodbye
        if (
            pcm is not None
            and call.answered_at is not None
            and session is not None
            and session.state != "ringing"
        ):
            if session.speaker is not None:
                session.speaker.stop()
            call.flush_playout()
            call.play(pcm)
            limit = time.monotonic() + len(pcm) / 8000.0 + 1.0
            # the line's clock drains the playout ring; there is no event to wait on
            while call.queued_playout_ms > 0 and not call.ended.is_set() and time.monotonic() < limit:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # the last frame leaves the line
        try:
            await asyncio.wait_for(call.hangup("shutdown"), 5.0)
        except Exception as exc:  # noqa: BLE001
            log.warning("call %s: hang-up at shutdown failed: %s", call.call_id, _describe(exc))

    # ---- calls ------------------------------------------------------------------------------
    def calls_on(self, line: str) -> list[ActiveCall]:
        return [ac for ac in self.calls.values() if ac.line == line]

    def on_ring(self, runner: LineRunner, call, caller_id: str) -> None:
        limit = getattr(runner.cfg, "max_calls", 1)
        if self.stopping or len(self.calls_on(runner.name)) >= limit:
            why = "shutting down" if self.stopping else f"line busy ({limit} call(s) in progress)"
            log.info("line %s: refused a call from %s: %s", runner.name, caller_id or "unknown", why)
            self.stats.busy_refused += 1
            self._spawn(lambda: _quietly(call.hangup("busy")))
            return
        log.info("line %s: incoming call %s from %s", runner.name, call.call_id, caller_id or "unknown")
        self._start_session(runner, call)

    def _call_config(self, line_cfg):
        """The config a call runs with: the line's own transfer target when the agent has none."""
        cfg = self.cfg
        if not cfg.agent.handoff_target:
            target = getattr(line_cfg, "transfer_target", None) or getattr(line_cfg, "transfer_number", None)
            if target:
                cfg = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, handoff_target=target))
        return cfg

    def _start_session(self, runner: LineRunner, call, outbound: bool = False, amd: bool | None = None,
                       context: dict | None = None) -> ActiveCall:
        from .agent.session import CallSession

        ac = ActiveCall(call, runner.name, outbound=outbound, amd=amd, context=context)
        cfg = self._call_config(runner.cfg)
        ac.session = CallSession(
            call, cfg, emit=lambda t, d: self._call_event(ac, t, d), llm_client=self.llm_client
        )
        self.calls[call.call_id] = ac
        ac.task = asyncio.create_task(self._run_call(ac, cfg), name=f"call-{call.call_id}")
        self.health_changed()
        return ac

    async def _run_call(self, ac: ActiveCall, cfg) -> None:
        call, session = ac.call, ac.session
        try:
            if ac.outbound and (cfg.detect.amd.enabled if ac.amd is None else ac.amd):
                self._call_event(
                    ac,
                    "call.started",
                    {
                        "call_id": call.call_id,
                        "direction": "outbound",
                        "remote": call.remote,
                        "line": ac.line,
                    },
                    own=True,
                )
                self._call_event(
                    ac, "call.answered", {"call_id": call.call_id, "remote": call.remote}, own=True
                )
                ac.announced = True
                t0 = time.monotonic()
                result = await self._amd(ac, cfg)
                if result["label"] == "machine" or call.ended.is_set():
                    cause = call.end_cause or (
                        "voicemail_left" if (result.get("voicemail") or {}).get("left") else "machine"
                    )
                    self._call_event(
                        ac,
                        "call.ended",
                        {
                            "call_id": call.call_id,
                            "cause": cause,
                            "duration_s": round(time.monotonic() - t0, 2),
                            "turns": 0,
                            "recording": None,
                        },
                        own=True,
                    )
                    return
                # the AMD read far-end frames without the echo reference: realign them for the session
                call.rx.clear()
                call.ref.clear()
            await session.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one call's failure must not take the box down
            self.record_error("call", _describe(exc), call_id=call.call_id)
            await _quietly(call.hangup("error"))
        finally:
            self.calls.pop(call.call_id, None)
            self.health_changed()

    async def _amd(self, ac: ActiveCall, cfg) -> dict:
        from .agent import engines
        from .agent.voicemail import VoicemailDrop

        loop = asyncio.get_running_loop()
        stt = await loop.run_in_executor(None, engines.get_stt, cfg.speech)
        tts = await loop.run_in_executor(None, engines.get_tts, cfg.speech)
        drop = VoicemailDrop(
            cfg.detect.amd,
            tts=tts,
            stt=lambda pcm: stt.transcribe(pcm, 8000),
            emit=lambda t, d: self._call_event(ac, t, d),
        )
        return await drop.run(ac.call)

    def _call_event(self, ac: ActiveCall, type_: str, data: dict, own: bool = False) -> None:
        if ac.announced and not own and type_ in ("call.started", "call.answered"):
            return  # announced before the answering-machine detection
        data = {"line": ac.line, **data}
        st = self.stats
        if type_ == "call.started":
            if ac.context:
                data["context"] = ac.context
            st.call_started()
            log.info(
                "call %s started: %s %s on line %s",
                data.get("call_id"),
                data.get("direction"),
                data.get("remote") or "unknown",
                ac.line,
            )
        elif type_ == "turn":
            st.v2v_ms.append(data.get("v2v"))
        elif type_ == "barge_in" and data.get("outcome") == "stopped":
            st.barge_ins += 1
        elif type_ == "handoff":
            st.handoffs += 1
            log.info(
                "call %s: handoff (%s) to %s", data.get("call_id"), data.get("reason"), data.get("target")
            )
        elif type_ == "amd.result":
            log.info(
                "call %s: answered by %s (%s at %s ms)",
                data.get("call_id"),
                data.get("label"),
                data.get("cause"),
                data.get("decision_ms"),
            )
        elif type_ == "error":
            st.last_error = {
                "where": data.get("where"),
                "error": data.get("error"),
                "ts": round(time.time(), 3),
            }
        elif type_ == "call.ended":
            log.info(
                "call %s ended: %s after %s s, %s turn(s)%s",
                data.get("call_id"),
                data.get("cause"),
                data.get("duration_s"),
                data.get("turns"),
                f", recording {data['recording']}" if data.get("recording") else "",
            )
        self.publish(type_, data)
        if type_ in ("call.started", "call.ended", "handoff"):
            self.health_changed()

    # ---- commands ---------------------------------------------------------------------------
    def _pick_line(self, name: str | None) -> LineRunner:
        if name is not None:
            runner = self.lines.get(name)
            if runner is None:
                raise LineError(f"no line {name!r}; lines: {', '.join(self.lines) or 'none'}")
            if runner.line is None:
                raise LineError(f"line {name} is not up ({runner.state}: {runner.detail})")
            return runner
        for runner in self.lines.values():
            if (
                runner.line is not None
                and runner.line.capabilities.outbound
                and len(self.calls_on(runner.name)) < getattr(runner.cfg, "max_calls", 1)
            ):
                return runner
        raise LineError(
            "no line is free to dial out: "
            + "; ".join(
                f"{r.name} {r.state}" + (" (in a call)" if self.calls_on(r.name) else "")
                for r in self.lines.values()
            )
        )

    async def briefing_audio(self, text: str):
        """What a line says to the human on an attended transfer's consultation call (the handoff
        summary), spoken by the configured voice: PCM16 at 8 kHz."""
        from .agent import engines

        tts = await asyncio.to_thread(engines.get_tts, self.cfg.speech)
        return await asyncio.to_thread(tts.synthesize_to_array, text, 8000)

    async def dial(self, number: str, line: str | None = None, timeout_s: float = 60.0, amd: bool | None = None,
                   context: dict | None = None) -> dict:
        """Place a call and run a session on it once answered. Returns when answered (or raises).
        `amd`: run answering-machine detection (default: detect.amd.enabled); `context`: facts about
        the call from the fleet, carried in its call.started event."""
        if self.stopping:
            raise LineError("the box is shutting down")
        runner = self._pick_line(line)
        if len(self.calls_on(runner.name)) >= getattr(runner.cfg, "max_calls", 1):
            raise LineError(f"line {runner.name} is busy")
        log.info("line %s: dialling %s", runner.name, number)
        try:
            call = await runner.line.dial(number, timeout_s)
        except Exception as exc:
            log.info("line %s: call to %s not answered: %s", runner.name, number, _describe(exc))
            self.publish("error", {"where": "dial", "line": runner.name, "error": _describe(exc)})
            raise
        self._start_session(runner, call, outbound=True, amd=amd, context=context)
        return {"call_id": call.call_id, "line": runner.name, "remote": number}

    async def hangup(self, call_id: str | None = None, line: str | None = None) -> dict:
        if call_id is not None and call_id not in self.calls:
            raise LineError(f"no call {call_id!r} in progress")
        targets = [
            ac
            for ac in self.calls.values()
            if (call_id is None or ac.call.call_id == call_id) and (line is None or ac.line == line)
        ]
        for ac in targets:
            if ac.session is not None:
                ac.session.end_reason = "hangup command"
            await _quietly(ac.call.hangup("hangup command"))
        return {"hung_up": [ac.call.call_id for ac in targets]}

    async def reload(self, drain: bool = False, drain_timeout_s: float = 600.0) -> dict:
        """Re-read the config file and apply it (rolling back if a line does not come up). `drain`:
        wait for the calls in progress to end first (at most `drain_timeout_s`)."""
        from .config import load

        if drain:
            deadline = time.monotonic() + drain_timeout_s
            while self.calls and time.monotonic() < deadline and not self.stopping:
                await asyncio.sleep(0.5)
            if self.calls:
                return {"status": "rejected",
                        "problems": [f"{len(self.calls)} call(s) still in progress after {drain_timeout_s:.0f} s"]}

        if self.config_path is None:
            return {
                "status": "rejected",
                "problems": ["started without --config: there is no file to reload"],
            }
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            return {"status": "rejected", "problems": exc.problems}
        from .fleet.remote_config import ConfigApplyError

        try:
            problems = await self.apply_config(new, strict=True)
        except ConfigApplyError as exc:
            self._restoring = False
            await self.apply_config(self.cfg, strict=False)
            return {"status": "rolled_back", "problems": exc.problems}
        return {"status": "rejected" if problems else "applied", "problems": problems}

    async def _reload_logged(self) -> None:
        report = await self.reload()
        log.info("SIGHUP: config %s %s", report["status"], "; ".join(report["problems"]))

    async def fetch_models(self, names: list[str] | None = None, verify: bool = False) -> dict:
        """Fetch (and verify) models: by default every model the config uses. `verify`: re-hash
        every file of the installed models as well (fetch trusts size + mtime stamps)."""
        from .speech.registry import ModelRegistry, required_models

        speech = self.cfg.speech
        needed = required_models(speech)   # the VAD, the STT model and the voice
        names = names or needed
        reg = ModelRegistry.from_config(speech)
        out: dict[str, dict] = {}
        for name in names:
            try:
                path = await asyncio.to_thread(reg.fetch, name, False)
                out[name] = {"ok": True, "path": str(path)}
                if verify:
                    out[name]["verify_s"] = (await asyncio.to_thread(reg.verify, name))["verify_s"]
            except ApplianceError as exc:
                out[name] = {"ok": False, "error": str(exc)}
        ok = all(v["ok"] for v in out.values())
        if ok and set(names) >= set(needed):
            self.models_verified = True
        return {"models": out, "all_ok": ok}

    # ---- configuration ----------------------------------------------------------------------
    async def apply_config(self, new, strict: bool = True) -> list[str]:
        """Make the running box match `new`. Returns problems (nothing changed) or [] (applied).
        With `strict`, a line that does not come up undoes the line changes and raises
        ConfigApplyError (the caller restores the previous config); without, it keeps retrying."""
        from .fleet.remote_config import ConfigApplyError

        async with self._apply_lock:
            wanted = {ln.name: ln for ln in new.lines}
            changed = [n for n, r in self.lines.items() if wanted.get(n) != r.cfg]
            busy = [n for n in changed if self.calls_on(n)]
            if busy:
                return [
                    f"lines.{n}: a call is in progress on it; apply again once it has ended" for n in busy
                ]
            for n in changed:
                log.info("line %s: stopping (config changed)", n)
                await self.lines.pop(n).stop()
            started = []
            for n, line_cfg in wanted.items():
                if n not in self.lines:
                    runner = LineRunner(self, line_cfg)
                    self.lines[n] = runner
                    runner.start()
                    started.append(runner)
            failures = []
            for runner in started:
                error = await runner.wait_first()
                if error:
                    failures.append(f"lines.{runner.name}: {error}")
            if failures and strict:
                for runner in started:
                    self.lines.pop(runner.name, None)
                    await runner.stop()
                self._restoring = True
                raise ConfigApplyError(failures)
            if (new.fleet, new.device) != (self.cfg.fleet, self.cfg.device):
                log.warning("config: device/fleet changes take effect at the next start")
            self.cfg = new
            self.health_changed()
            return []

    async def _remote_config(self, data: dict) -> list[str]:
        from .config import parse

        strict = not self._restoring  # the fleet restores the previous config after a failed apply
        self._restoring = False
        try:
            new = parse(data, "remote config")
        except ConfigError as exc:
            return exc.problems
        return await self.apply_config(new, strict=strict)

    # ---- fleet ------------------------------------------------------------------------------
    async def _start_fleet(self) -> None:
        from .fleet import Fleet

        cfg = self.cfg
        self.fleet = Fleet(cfg.fleet, cfg.device.id, self.version, self.state_dir, name=cfg.device.name)
        f = self.fleet
        f.set_health_provider(self.health)
        # the standard commands with their documented argument schemas (fleet/commands.SCHEMAS)
        f.register_command(
            "dial",
            lambda a: self.dial(
                a["number"], a.get("line"), float(a.get("timeout_s", 60)), amd=a.get("amd"), context=a.get("context")
            ),
        )
        f.register_command("hangup", lambda a: self.hangup(a.get("call"), a.get("line")))
        f.register_command("reload", lambda a: self.reload(drain=bool(a.get("drain"))))
        f.register_command("models.fetch",
                           lambda a: self.fetch_models(a.get("models"), bool(a.get("verify"))))
        f.on_config(self._remote_config, self.config_path or (self.state_dir / "config.yaml"))
        await f.start()
        log.info("fleet: MQTT %s:%d, topics under %s", cfg.fleet.host, cfg.fleet.port, f.root)

    def publish(self, type_: str, data: dict) -> None:
        if self.on_event is not None:
            try:
                self.on_event(type_, data)
            except Exception:  # noqa: BLE001 - an event sink must never break a call
                log.exception("event sink failed on %s", type_)
        if self.fleet is None:
            return
        try:
            self.fleet.publish_event(type_, data)
        except Exception as exc:  # noqa: BLE001 - the fleet must never break a call
            log.warning("fleet: event %s not queued: %s", type_, exc)

    def health_changed(self) -> None:
        if self.fleet is not None:
            self.fleet.publish_health()

    def record_error(self, where: str, error: str, **extra) -> None:
        log.error("%s: %s", where, error)
        self.stats.last_error = {"where": where, "error": error, "ts": round(time.time(), 3)}
        self.publish("error", {"where": where, "error": error, **extra})

    def health(self) -> dict:
        st = self.stats
        lines = {name: r.health() for name, r in self.lines.items()}
        # `gsm: {registration, signal_dbm}` as the fleet reads it (Home Assistant discovery, the fleet
        # simulator): the first GSM line's figures, registration as one word; every line's own
        # figures (+CREG/+CEREG in full) are under `lines`
        gsm = next(
            (
                {
                    "line": name,
                    "registration": _registration_status(h.get("registration")),
                    "signal_dbm": h.get("signal_dbm"),
                    "operator": h.get("operator"),
                }
                for name, h in lines.items()
                if h.get("type") == "gsm"
            ),
            None,
        )
        return {
            "lines": lines,
            **({"gsm": gsm} if gsm else {}),
            "calls_today": st.calls_today if st.day == datetime.date.today().isoformat() else 0,
            "calls_total": st.calls_total,
            "calls_active": len(self.calls),
            "calls": [
                {
                    "call_id": ac.call.call_id,
                    "line": ac.line,
                    "direction": ac.call.direction,
                    "state": getattr(ac.session, "state", None),
                    "turns": len(getattr(ac.session, "turns", ())),
                }
                for ac in self.calls.values()
            ],
            "turn_latency_ms": {
                **percentiles(st.v2v_ms),
                "turns": sum(1 for v in st.v2v_ms if v is not None),
            },
            "barge_ins": st.barge_ins,
            "handoffs": st.handoffs,
            "busy_refused": st.busy_refused,
            "last_error": st.last_error,
            "models_verified": self.models_verified,
            "stopping": self.stopping,
        }


def _registration_status(registration) -> str | None:
    """A GSM line's registrations ({"CREG": {"status": "home", ...}, "CEREG": ...}) as one word:
    "home" or "roaming" if any network took us, else the first status ("searching", "denied")."""
    if not isinstance(registration, dict):
        return registration
    statuses = [r.get("status") for r in registration.values() if isinstance(r, dict) and r.get("status")]
    return next((st for st in ("home", "roaming") if st in statuses), statuses[0] if statuses else None)


def _describe(exc: BaseException, name: str | None = None) -> str:
    text = str(exc)
    if name and text.startswith(name + ": "):
        text = text[len(name) + 2 :]
    if isinstance(exc, ApplianceError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception as exc:  # noqa: BLE001 - best effort while failing or stopping
        log.debug("ignored during clean-up: %s", _describe(exc))
