"""V.253 analog voice modem line (USB voice modem on an analog phone line).

Flow (MODEMS.md §1): open -> `AT`, `ATZ`, `ATE0` (echo is on after reset) -> identify (ATI,
ATI3, +GMI) -> `AT+FCLASS=?` must list 8 -> `AT+FCLASS=8` -> `AT+VSM=?` -> codec -> caller ID on.
RING / caller ID (between the first and second RING) -> `ring` event at ring N with the caller
ID -> `answer()`: `+VLS=1`, `+VSM=<cml>,8000`, `+VTR` full duplex (or +VRX/+VTX turns on a
half-duplex modem) -> DLE events become dtmf/hangup/progress events -> hang-up `+VLS=0`.
Transfer: leave duplex, hook flash (`+VTS=!`), wait for dial tone, dial with `+VTS`, go on hook.

Faults: a vanished port ends the call ("line-lost"), the line goes `down` and reopens by
itself when the device comes back; two missed idle `AT` probes (or voice data stopping in a
call) reset the modem by closing the port (DTR drop) and initialising again.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import Any, Literal

from ..errors import LineError
from . import dle, vsm
from .at import ATChannel, CommandError, ModemTimeout, Response, is_caller_id_line
from .at_line import DTMF_DIGITS, AtLine
from .base import Call, LineCapabilities, LineEvent
from .modem_audio import FRAME_S, SAMPLES_PER_FRAME, ClockStats, VoiceStream
from .modem_config import ModemLineConfig
from .modem_dialects import DIALECTS, VoiceDialect, detect_dialect
from .vsm import VsmCodec, choose_codec, parse_vsm_list

log = logging.getLogger(__name__)

HANGUP_EVENTS = {"b": "busy-tone", "K": "busy-tone", "d": "dial-tone", "i": "dial-tone",
                 "l": "loop-current-lost"}


class NotAVoiceModem(LineError):
    """The device speaks AT but has no V.253 voice class."""


class ModemCall(Call):
    """A call on a voice or GSM modem line; actions are delegated to the line."""

    async def answer(self) -> None:
        await self.line._answer(self)

    async def hangup(self, cause: str = "local") -> None:
        await self.line._hangup(self, cause)

    async def send_dtmf(self, digits: str) -> None:
        await self.line._send_dtmf(self, digits)

    async def transfer(self, target: str, mode: Literal["blind", "warm"] = "blind",
                       briefing: str | None = None) -> bool:
        return await self.line._transfer(self, target, mode)


class VoiceModemLine(AtLine):
    """A V.253 voice modem on a serial port (or any pyserial URL)."""

    def __init__(self, config: ModemLineConfig):
        super().__init__(config)
        self.dialect: VoiceDialect = VoiceDialect()
        self.codecs: list[VsmCodec] = []
        self.codec: VsmCodec | None = None
        self.full_duplex = True
        self.caller_id_enabled = False
        self.capabilities = LineCapabilities(transfer_blind=True)
        self.stream: VoiceStream | None = None
        self._totals = {"frames_in": 0, "frames_out": 0, "underruns": 0, "overruns": 0, "cpu_s": 0.0}
        self._ring_times: list[float] = []
        self._cid: dict[str, str] = {}
        self._dtmf_marked: str | None = None
        self._dtmf_started = 0.0
        self._last_digit = ("", 0.0)
        self._last_probe = time.monotonic()
        self._half: threading.Thread | None = None
        self._half_stop = threading.Event()
        self._no_stream_since = 0.0

    # ---- lifecycle (start/stop: AtLine) ----------------------------------------------------
    def _opened_state(self, why: str | None = None) -> None:
        self.set_state("idle", why or f"{self.dialect.name} modem on {self.config.port}")

    def _open_and_init(self) -> None:
        cfg = self.config
        ch = ATChannel(cfg.port, cfg.baudrate, on_urc=self._urc_from_thread, on_dle=self._dle_from_thread,
                       on_lost=self._lost_from_thread, command_delay_s=cfg.command_delay_ms / 1000,
                       name=cfg.name)
        self._open_channel(ch)
        self._last_probe = time.monotonic()

    def _init(self, ch: ATChannel) -> None:
        """Sync, reset, identify, check voice class, pick codec and dialect (MODEMS.md §1.1, §3)."""
        self._sync(ch)
        self._cmd(ch, "ATZ", max(3.0, self.config.command_timeout_s))
        self._cmd(ch, "ATE0")
        self._try(ch, "ATV1")
        ident = self._identify(ch, ("ATI", "ATI3", "AT+GMI"))
        if self.config.dialect == "auto":
            self.dialect = detect_dialect(ident)
        else:
            self.dialect = DIALECTS[self.config.dialect]()
        r = self._try(ch, "AT+FCLASS=?")
        classes = [c.strip() for c in ",".join(r.lines).split(",")] if r else []
        if "8" not in classes:
            raise NotAVoiceModem(f"{self.name}: {self.config.port} is not a voice modem "
                                 f"(AT+FCLASS=? lists {','.join(classes) or 'nothing'}, no class 8)")
        self._cmd(ch, self.dialect.voice_class)
        r = self._try(ch, "AT+VSM=?")
        self.codecs = parse_vsm_list(r.lines if r else [])
        self.codec = choose_codec(self.codecs)
        if self.codec is None:
            raise LineError(f"{self.name}: no usable 8 kHz sample format in AT+VSM=? "
                            f"({'; '.join(c.describe() for c in self.codecs) or 'empty'})")
        self.full_duplex = self._try(ch, "AT+VTR=?") is not None
        self.caller_id_enabled = False
        for c in self.dialect.caller_id:
            if self._try(ch, c) is not None:
                self.caller_id_enabled = True
        for c in self.dialect.setup:
            self._try(ch, c)
        self._update_caps()

    def _update_caps(self) -> None:
        self.capabilities = LineCapabilities(full_duplex=self.full_duplex, caller_id=self.caller_id_enabled,
                                             dtmf_in=True, dtmf_out=True, transfer_blind=True,
                                             transfer_warm=False, outbound=True)

    # ---- supervision: reopen, probe, reset ------------------------------------------------
    async def _supervise(self) -> None:
        cfg = self.config
        while not self._stopping:
            await asyncio.sleep(cfg.reopen_interval_s if self.channel is None else 0.25)
            try:
                if self.channel is None or not self.channel.is_open:
                    await self._reopen()
                elif (self.call is not None and self.call.answered_at and not self.call.ended.is_set()
                      and not self._op_lock.locked()):
                    now = time.monotonic()
                    last = self.clock.last_frame_at
                    stalled = (self.stream is not None and not self.stream.ended and last is not None
                               and now - last > 2.0)
                    if self.full_duplex and (self.stream is None or self.stream.ended):
                        # out of voice mode with nothing in progress (a command failed mid-call)
                        self._no_stream_since = self._no_stream_since or now
                        stalled = stalled or now - self._no_stream_since > 2.0
                    else:
                        self._no_stream_since = 0.0
                    if stalled:
                        log.warning("%s: voice data stopped mid-call: resetting the modem", self.name)
                        await self._reset("voice data stopped")
                elif self.call is None and time.monotonic() - self._last_probe > cfg.health_check_s:
                    await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - supervision never dies
                self.last_error = str(exc)
                log.debug("%s: supervision: %s", self.name, exc)

    async def _probe(self) -> None:
        ch = self.channel
        self._last_probe = time.monotonic()
        if ch is None or ch.in_data_mode or self._op_lock.locked():
            return
        try:
            await asyncio.to_thread(ch.command, "AT", 1.0)
            self._probe_failures = 0
        except ModemTimeout:
            self._probe_failures += 1
            if self._probe_failures >= 2:
                await self._reset("modem stopped answering")
        except CommandError:
            self._probe_failures = 0

    async def _reset(self, why: str) -> None:
        self._no_stream_since = 0.0
        await super()._reset(why)

    # ---- events from the reader thread (and AtLine's) ---------------------------------------
    def _dle_from_thread(self, code: str) -> None:
        self._post(self._on_dle_events, [code])

    def _on_urc(self, line: str) -> None:
        if line.startswith("RING"):
            self._on_ring()
        elif is_caller_id_line(line):
            tag, _, value = line.partition("=") if "=" in line else line.partition(":")
            self._cid[tag.strip()] = value.strip()
            if tag.strip() == "NMBR" and self.call is not None and self.call.direction == "inbound":
                self.call.remote = self._caller_number()
        elif line.startswith(("NO CARRIER", "BUSY")) and self.call is not None and self.call.answered_at:
            self._remote_hangup("no-carrier" if line.startswith("NO") else "busy")

    def _caller_number(self) -> str:
        n = self._cid.get("NMBR", "")
        return {"P": "private", "O": "unavailable"}.get(n, n)

    def _on_ring(self) -> None:
        now = time.monotonic()
        if self.call is not None and self.call.answered_at:
            return
        if self.call is None:
            self.call = ModemCall(self, "inbound", loop=self._loop)
            self._ring_count, self._ring_times, self._ring_emitted, self._cid = 0, [], False, {}
            self.set_state("ringing", "RING")
        self._ring_count += 1
        self._ring_times.append(now)
        if not self._ring_emitted and self._ring_count >= self.config.rings_before_answer:
            self._ring_emitted = True
            self.call.remote = self._caller_number()
            self.emit(LineEvent("ring", {"caller_id": self.call.remote, "name": self._cid.get("NAME", ""),
                                         "cid": dict(self._cid), "rings": self._ring_count, "call": self.call},
                                self.call.call_id))
        self._post_ring_watch(self.call, self._ring_count)

    def _post_ring_watch(self, call: ModemCall, count: int) -> None:
        if len(self._ring_times) >= 2:
            # a late RING (a busy host, a jittery exchange) must not end a call still ringing
            timeout = 1.5 * (self._ring_times[-1] - self._ring_times[-2]) + 1.5
        else:
            timeout = 10.0      # a real line rings every 6 s (MODEMS.md 1.5)

        def check() -> None:
            if self.call is call and not call.answered_at and self._ring_count == count and not call.ended.is_set():
                self.call = None
                call.mark_ended("caller-gave-up")
                self.set_state("idle", "ringing stopped")
        assert self._loop is not None
        self._loop.call_later(timeout, check)

    def _on_dle_events(self, codes: list[str]) -> None:
        call = self.call
        for code in codes:
            if code in self.dialect.ignore_events:
                continue
            if code == "R":
                self._on_ring()
                continue
            if call is None or not call.answered_at or call.ended.is_set():
                continue
            if code == "/":
                self._dtmf_marked, self._dtmf_started = "", time.monotonic()
            elif code == "~":
                if self._dtmf_marked:
                    ms = int((time.monotonic() - self._dtmf_started) * 1000)
                    call.events.put_nowait(LineEvent("dtmf", {"digit": self._dtmf_marked, "duration_ms": ms},
                                                     call.call_id))
                self._dtmf_marked = None
            elif code in DTMF_DIGITS:
                if self._dtmf_marked is not None:
                    if not self._dtmf_marked:
                        self._dtmf_marked = code          # repeats while held are debounced
                    continue
                last, at = self._last_digit
                now = time.monotonic()
                self._last_digit = (code, now)
                if code == last and now - at < 0.1:
                    continue
                call.events.put_nowait(LineEvent("dtmf", {"digit": code, "duration_ms": None}, call.call_id))
            elif code in HANGUP_EVENTS:
                self._remote_hangup(HANGUP_EVENTS[code])
            elif code in "cm":
                call.events.put_nowait(LineEvent("progress", {"status": "fax-calling-tone"}, call.call_id))
            elif code == "r" and call.direction == "outbound":
                call.events.put_nowait(LineEvent("progress", {"status": "ringing"}, call.call_id))

    def _remote_hangup(self, cause: str) -> None:
        call = self.call
        if call is None or call.ended.is_set():
            return
        self._end_call_now(call, cause)
        ch = self.channel
        if ch is not None:
            self._spawn(self._on_hook_quietly(ch))

    async def _on_hook_quietly(self, ch: ATChannel) -> None:
        async with self._op_lock:
            await asyncio.to_thread(self._hang_up_device, ch)

    def _end_call_now(self, call: ModemCall, cause: str) -> None:
        """Loop thread: the call is over whatever the modem still does."""
        self._half_stop.set()
        if call.ended.is_set():
            if self.call is call:
                self.call = None
            return
        call.flush_playout()
        call.events.put_nowait(LineEvent("metrics", self._call_metrics(), call.call_id))
        call.mark_ended(cause)
        if self.call is call:
            self.call = None
        self.calls_total += 1
        self.underruns_total += int(self._stream_totals()["underruns"])
        self._retire_stream()
        if self.state not in ("down", "error"):
            self.set_state("idle", f"call ended: {cause}")

    def _stream_totals(self) -> dict[str, float]:
        """This call's audio counters: finished streams plus the running one."""
        t = dict(self._totals)
        s = self.stream
        if s is not None:
            for k in ("frames_in", "frames_out", "underruns", "overruns", "cpu_s"):
                t[k] += getattr(s, k)
        return t

    def _retire_stream(self) -> None:
        s, self.stream = self.stream, None
        if s is not None:
            for k in ("frames_in", "frames_out", "underruns", "overruns", "cpu_s"):
                self._totals[k] += getattr(s, k)

    def _call_metrics(self) -> dict[str, Any]:
        t = self._stream_totals()
        s = self.stream
        drift = self.clock.drift_ppm
        return {"drift_ppm": round(drift, 1) if drift is not None else None, "frames_in": t["frames_in"],
                "frames_out": t["frames_out"], "modem_underruns": t["underruns"],
                "modem_overruns": t["overruns"], "max_gap_ms": round(self.clock.max_gap_s * 1000, 1),
                "framing_cpu_ms": round(t["cpu_s"] * 1000, 2),
                "framing_cpu_pct": round(100 * t["cpu_s"] / max(t["frames_in"] * FRAME_S, 1e-9), 3),
                "lead_ms": ((s.prime_frames + s.extra_prime) * 20) if s else None}

    # ---- audio streams (worker threads) -------------------------------------------------------

    def _start_audio(self, ch: ATChannel, call: ModemCall) -> None:
        assert self.codec is not None
        if self.full_duplex:
            stream = self._new_stream(ch, call, duplex=True)
            try:
                self._cmd(ch, "AT+VTR", data_sink=stream)
            except CommandError:
                log.warning("%s: AT+VTR refused: half-duplex modem, barge-in impossible", self.name)
                self.full_duplex = False
                self._update_caps()
            else:
                self._retire_stream()
                self.stream = stream
                stream.prime()
                return
        self._half_stop.clear()
        self._half = threading.Thread(target=self._half_duplex_loop, args=(ch, call), daemon=True,
                                      name=f"{self.name}-halfduplex")
        self._half.start()

    def _new_stream(self, ch: ATChannel, call: ModemCall, duplex: bool) -> VoiceStream:
        assert self.codec is not None
        prime = max(1, round(self.config.prime_ms / 20))
        return VoiceStream(call, self.codec.kind, ch.write, lambda ev: self._post(self._on_dle_events, ev),
                           lambda: None, self.clock, duplex=duplex, prime_frames=prime,
                           ignore_events=self.dialect.ignore_events)

    def _stop_audio(self, ch: ATChannel) -> None:
        """Leave voice data mode (DLE ^ for +VTR, DLE ! for +VRX) and wait for OK."""
        if self._half is not None and self._half is not threading.current_thread():
            self._half_stop.set()
            self._half.join(timeout=5.0)
            self._half = None
        if ch.in_data_mode:
            with ch.reader_lock:        # the lockstep replies stop before the stop code goes out
                sink = ch.data_sink
                duplex = getattr(sink, "duplex", True)
                if isinstance(sink, VoiceStream):
                    sink.stop_tx()
            stop = self.dialect.end_duplex if duplex else self.dialect.abort_record
            try:
                ch.send_raw_expect(stop, 3.0, label="<end voice data>", check=False)
            except ModemTimeout:
                ch.leave_data_mode()
                ch.write(dle.END_STREAM)       # some chipsets want DLE ETX as well
        self._retire_stream()

    def _half_duplex_loop(self, ch: ATChannel, call: ModemCall) -> None:
        """Half-duplex modem: record (+VRX) while the agent is silent, play (+VTX) when it talks.
        While playing, the caller cannot be heard: rx gets silence to keep the session's clock."""
        import numpy as np

        silence = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        kind = self.codec.kind if self.codec else "ulaw"
        try:
            while not self._half_stop.is_set() and not call.ended.is_set():
                if call.tx.available() < SAMPLES_PER_FRAME:
                    if not ch.in_data_mode:
                        self._retire_stream()
                        self.stream = self._new_stream(ch, call, duplex=False)
                        self._cmd(ch, "AT+VRX", data_sink=self.stream)
                    time.sleep(0.02)
                    continue
                if ch.in_data_mode:
                    ch.send_raw_expect(self.dialect.abort_record, 3.0, label="<abort record>", check=False)
                self._cmd(ch, "AT+VTX", call_finals=True)
                lead = max(1, round(self.config.prime_ms / 20))
                t0, sent, idle = time.monotonic(), 0, 0
                while not self._half_stop.is_set() and idle < 10:
                    due = int((time.monotonic() - t0) / FRAME_S) + lead
                    while sent < due:
                        if call.tx.available() == 0:
                            idle += 1
                        else:
                            idle = 0
                        frame = call.next_playout_frame()
                        ch.write(dle.shield(vsm.encode(kind, frame)))
                        call.rx.write(silence)
                        call.rx_written()
                        sent += 1
                    time.sleep(0.005)
                ch.send_raw_expect(dle.END_STREAM, 2.0 + lead * FRAME_S, label="<end play>", check=False)
        except LineError as exc:
            log.debug("%s: half-duplex loop ended: %s", self.name, exc)

    def _hang_up_device(self, ch: ATChannel) -> None:
        try:
            self._stop_audio(ch)
            for c in self.dialect.on_hook:
                self._try(ch, c)
        except LineError as exc:
            log.debug("%s: hang-up: %s", self.name, exc)

    # ---- call actions ------------------------------------------------------------------------
    async def _answer(self, call: ModemCall) -> None:
        if call.ended.is_set():
            raise LineError(f"{self.name}: the caller hung up before the answer")
        async with self._op_lock:
            ch = self._channel()

            def go() -> None:
                self._cmd(ch, self.dialect.off_hook, call_finals=True)
                if self.dialect.reapply_each_call:
                    for c in self.dialect.setup:
                        self._try(ch, c)
                self._set_codec(ch)
                self._new_call_stats()
                self._start_audio(ch, call)
            await asyncio.to_thread(go)
        call.answered_at = time.time()
        self.set_state("in_call", f"answered {call.remote}")
        call.events.put_nowait(LineEvent("answered", {"remote": call.remote, "full_duplex": self.full_duplex},
                                         call.call_id))

    def _new_call_stats(self) -> None:
        self.clock = ClockStats()
        self.stream = None
        self._totals = dict.fromkeys(self._totals, 0)
        self._totals["cpu_s"] = 0.0

    def _set_codec(self, ch: ATChannel) -> None:
        assert self.codec is not None
        try:
            self._cmd(ch, f"AT+VSM={self.codec.cml},8000")
        except CommandError:
            self._cmd(ch, f"AT+VSM={self.codec.cml},8000,0,0")     # vgetty's retry form

    async def _send_dtmf(self, call: ModemCall, digits: str) -> None:
        self._check_dtmf(call, digits)
        async with self._op_lock:
            ch = self._channel()

            def go() -> None:
                self._stop_audio(ch)
                try:
                    self._cmd(ch, self.dialect.vts(digits), 5.0 + 0.3 * len(digits))
                finally:
                    if not call.ended.is_set():
                        self._start_audio(ch, call)      # the call goes on even if +VTS failed
            await asyncio.to_thread(go)

    async def _transfer(self, call: ModemCall, target: str, mode: str) -> bool:
        number = re.sub(r"[\s\-().]", "", target or self.config.transfer_number or "")
        if mode != "blind":
            raise LineError(f"{self.name}: an analog line can only transfer blind (hook flash + dial)")
        if not number or any(d not in DTMF_DIGITS for d in number):
            raise LineError(f"{self.name}: cannot dial {target!r} after a hook flash: digits only")
        if call.ended.is_set():
            raise LineError(f"{self.name}: call already ended")
        call.events.put_nowait(LineEvent("transfer", {"target": number, "mode": mode, "status": "trying",
                                                      "detail": "hook flash"}, call.call_id))
        async with self._op_lock:
            ch = self._channel()

            def go() -> None:
                self._stop_audio(ch)
                self._cmd(ch, self.dialect.hook_flash, 5.0)
                time.sleep(self.config.flash_settle_ms / 1000)
                self._cmd(ch, self.dialect.vts(number), 5.0 + 0.3 * len(number))
                for c in self.dialect.on_hook:
                    self._try(ch, c)
            try:
                await asyncio.to_thread(go)
            except LineError as exc:
                call.events.put_nowait(LineEvent("transfer", {"target": number, "mode": mode, "status": "failed",
                                                              "detail": str(exc)}, call.call_id))
                if not call.ended.is_set():
                    try:                      # back to the caller: the agent apologises
                        await asyncio.to_thread(self._start_audio, ch, call)
                    except LineError:
                        pass                  # the supervisor resets a modem left out of voice mode
                return False
        call.events.put_nowait(LineEvent("transfer", {"target": number, "mode": mode, "status": "ok",
                                                      "detail": "flash + dial, on hook"}, call.call_id))
        self._end_call_now(call, "transferred")
        return True

    async def dial(self, number: str, timeout_s: float = 60.0) -> Call:
        digits = re.sub(r"[\s\-().]", "", number)
        if not digits or any(d not in DTMF_DIGITS + ",W" for d in digits):
            raise LineError(f"{self.name}: cannot dial {number!r}: expected digits 0-9 * # A-D "
                            "(',' or 'W' to pause; spaces, '-', '.', '(' ')' are ignored)")
        if self.call is not None:
            raise LineError(f"{self.name}: line busy with another call")
        call = ModemCall(self, "outbound", remote=digits, loop=self._loop)
        self.call = call
        async with self._op_lock:
            ch = self._channel()

            def go() -> Response:
                self._set_codec(ch)
                return self._cmd(ch, f"ATD{digits}", timeout_s, call_finals=True, check=False)
            try:
                r = await asyncio.to_thread(go)
            except LineError:
                self.call = None
                raise
            final = r.final.upper()
            if final not in ("VCON", "OK") and not final.startswith("CONNECT"):
                status = {"BUSY": "busy", "NO DIALTONE": "no-dialtone", "NO DIAL TONE": "no-dialtone",
                          "NO ANSWER": "no-answer", "NO CARRIER": "no-answer"}.get(final, "failed")
                self.call = None
                call.mark_ended(status)
                self.emit(LineEvent("progress", {"status": status, "number": digits}, call.call_id))
                await asyncio.to_thread(self._hang_up_device, ch)
                raise LineError(status)

            def audio() -> None:
                self._new_call_stats()
                self._start_audio(ch, call)
            await asyncio.to_thread(audio)
        call.answered_at = time.time()
        self.set_state("in_call", f"dialled {digits}")
        call.events.put_nowait(LineEvent("answered", {"remote": digits, "full_duplex": self.full_duplex},
                                         call.call_id))
        return call

    # ---- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        ch = self.channel
        drift = self.clock.drift_ppm
        return {
            "name": self.name, "state": self.state, "type": "modem", "port": self.config.port,
            "dialect": self.dialect.name, "identity": self.identity,
            "codec": self.codec.describe() if self.codec else None,
            "full_duplex": self.full_duplex,
            "barge_in": self.full_duplex,
            "note": None if self.full_duplex else "half-duplex modem (no +VTR): the caller cannot be heard "
                                                  "while the agent speaks, so barge-in is impossible",
            "caller_id": self.caller_id_enabled,
            "drift_ppm": round(drift, 1) if drift is not None else None,
            "underruns": self.underruns_total + (int(self._stream_totals()["underruns"]) if self.call else 0),
            "calls": self.calls_total, "resets": self.resets, "reopens": self.reopens,
            "stray_lines": ch.stray_lines if ch else None, "timeouts": ch.timeouts if ch else None,
            "last_error": self.last_error or None,
        }


#: the name `lines.ADAPTERS` and the config's `type: modem` use
ModemLine = VoiceModemLine
