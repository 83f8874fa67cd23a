"""3GPP TS 27.007 GSM/LTE modem line (SIMCom SIM7600/SIM800, Quectel EC25 dialects).

Flow (MODEMS.md §2): open -> `AT`, `ATZ`, `ATE0`, `AT+CMEE=1` -> identify -> SIM (`+CPIN?`,
PIN from the environment variable named in the config) -> `+CLIP=1`, `+CVHU=0`, `+CREG=2`,
`+CEREG=2`, dialect extras (SIMCom `+CLCC=1` URCs, DTMF detection `+DDET=1`/`+QTONEDET=1`) ->
registration and signal (`+CREG?`, `+CEREG?`, `+CSQ`, `+COPS?`) for health, polled.
RING + `+CLIP` -> `ring` event -> `ATA` -> audio on (SIM7600 `+CPCMREG=1` once active, EC25
`+QPCMV`) -> `+RXDTMF`/`+QTONEDET`/`+DTMF` -> dtmf events -> `NO CARRIER`, `VOICE CALL: END`,
`+CLCC` stat 6, or a `+CLCC` poll without our call -> hangup. Hang-up `AT+CHUP`.
Transfer: a ringing call is deflected with `+CTFR`; an active one is held (`+CHLD=2`), the
target dialled, then the two joined with explicit call transfer (`+CHLD=4`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any, Literal

from ..errors import LineError
from .at import ATChannel, CommandError, ModemTimeout
from .at_line import DTMF_DIGITS, AtLine
from .base import Call, LineCapabilities, LineEvent
from .gsm_audio import SerialPcmAudio, UsbAudio
from .modem import ModemCall
from .modem_audio import ClockStats
from .modem_config import GsmLineConfig

log = logging.getLogger(__name__)

CREG_STAT = {0: "not-searching", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


def rssi_to_dbm(rssi: int) -> int | None:
    """27.007 §8.5: 0 -> -113 dBm or less, 2..30 -> -109..-53, 31 -> -51 or more, 99 unknown."""
    if rssi == 99 or rssi < 0 or rssi > 31:
        return None
    return -113 + 2 * rssi


def parse_creg(line: str) -> tuple[int, str | None, str | None, int | None] | None:
    """`+CREG: <stat>[,<lac>,<ci>[,<AcT>]]` (URC) or `+CREG: <n>,<stat>[,...]` (read form).
    They are told apart by whether field 2 is quoted (chan_quectel's at_parse_creg).
    Returns (stat, lac, ci, act)."""
    m = re.match(r"\+C[EG]?REG:\s*(.*)$", line.strip())
    if not m:
        return None
    fields = [f.strip() for f in m.group(1).split(",")]
    if not fields or not fields[0].isdecimal():
        return None
    if len(fields) >= 2 and fields[1].isdecimal():        # read form: drop <n>
        fields = fields[1:]
    stat = int(fields[0])
    lac = fields[1].strip('"') if len(fields) > 1 else None
    ci = fields[2].strip('"') if len(fields) > 2 else None
    act = int(fields[3]) if len(fields) > 3 and fields[3].isdecimal() else None
    return stat, lac, ci, act


def parse_clip(line: str) -> tuple[str, str]:
    """`+CLIP: "<number>",<type>[,,,<alpha>,<validity>]` -> (number or 'private'/'unavailable', name)."""
    m = re.match(r'\+CLIP:\s*"([^"]*)"\s*(?:,\s*(\d+))?(.*)$', line.strip())
    if not m:
        return "", ""
    number, rest = m.group(1), m.group(3) or ""
    fields = [f.strip() for f in rest.split(",")]
    alpha = next((f.strip('"') for f in fields[3:4] if f.startswith('"')), "")
    validity = fields[-1] if fields and fields[-1].isdecimal() and len(fields) >= 5 else ""
    if not number:
        number = {"1": "private", "2": "unavailable"}.get(validity, "unavailable")
    return number, alpha


def parse_clcc(line: str) -> dict[str, Any] | None:
    """`+CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,"<number>",<type>...]`."""
    m = re.match(r'\+CLCC:\s*(\d+)\s*,\s*(\d)\s*,\s*(\d)\s*,\s*(\d)\s*,\s*(\d)\s*(?:,\s*"([^"]*)")?', line.strip())
    if not m:
        return None
    return {"id": int(m.group(1)), "dir": int(m.group(2)), "stat": int(m.group(3)), "mode": int(m.group(4)),
            "number": m.group(6) or ""}


class GsmDialect:
    name = "generic"
    markers: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    dtmf_urc = ("+DTMF:",)
    pcm: Literal["cpcmreg", "qpcmv", "none"] = "none"
    call_urcs = False          # VOICE CALL: BEGIN/END

    @classmethod
    def matches(cls, identity: str) -> bool:
        ident = identity.upper()
        return any(m in ident for m in cls.markers)

    def dtmf_digit(self, line: str) -> str | None:
        m = re.match(r"\+(?:RXDTMF|DTMF):\s*([0-9*#A-D])", line)
        return m.group(1) if m else None

    def audio_setup(self, mode: str) -> tuple[str, ...]:
        return ()

    def audio_on(self) -> tuple[str, ...]:
        return ()

    def audio_off(self) -> tuple[str, ...]:
        return ()


class Sim7600Dialect(GsmDialect):
    """SIMCom SIM7600/SIM7500: serial PCM on ttyUSB4 after `+CPCMREG=1` (call active)."""

    name = "sim7600"
    markers = ("SIM7600", "SIM7500", "SIM7100")
    setup = ("AT+CLCC=1", "AT+DDET=1")
    pcm = "cpcmreg"
    call_urcs = True

    def audio_setup(self, mode: str) -> tuple[str, ...]:
        return ("AT+CPCMFRM=0",) if mode == "serial-pcm" else ()      # 8 kHz

    def audio_on(self) -> tuple[str, ...]:
        return ("AT+CPCMREG=1",)

    def audio_off(self) -> tuple[str, ...]:
        return ("AT+CPCMREG=0",)


class Sim800Dialect(GsmDialect):
    """SIMCom SIM800/SIM900: analog MIC/SPK only (a USB sound card carries the audio)."""

    name = "sim800"
    markers = ("SIM800", "SIM900")
    setup = ("AT+DDET=1",)


class Ec25Dialect(GsmDialect):
    """Quectel EC25/EG25: `+QPCMV=1,0` PCM on ttyUSB1, or `1,2` UAC; DTMF `+QTONEDET: <ascii>`."""

    name = "ec25"
    markers = ("EC25", "EG25", "EC21", "QUECTEL")
    setup = ("AT+QTONEDET=1",)
    pcm = "qpcmv"

    def dtmf_digit(self, line: str) -> str | None:
        m = re.match(r"\+QTONEDET:\s*(\d+)", line)
        if not m:
            return None
        ch = chr(int(m.group(1))) if int(m.group(1)) < 128 else ""
        return ch if ch and ch in DTMF_DIGITS else None

    def audio_setup(self, mode: str) -> tuple[str, ...]:
        return ("AT+QPCMV=1,0",) if mode == "serial-pcm" else ("AT+QPCMV=1,2",)


GSM_DIALECTS: dict[str, type[GsmDialect]] = {d.name: d for d in (Sim7600Dialect, Sim800Dialect, Ec25Dialect, GsmDialect)}


def detect_gsm_dialect(identity: str) -> GsmDialect:
    for cls in (Sim7600Dialect, Sim800Dialect, Ec25Dialect):
        if cls.matches(identity):
            return cls()
    return GsmDialect()


class GsmLine(AtLine):
    """A 27.007 cellular modem with a SIM."""

    def __init__(self, config: GsmLineConfig):
        super().__init__(config)
        self.dialect: GsmDialect = GsmDialect()
        self.capabilities = LineCapabilities(full_duplex=True, caller_id=True, dtmf_in=True, dtmf_out=True,
                                             transfer_blind=True, transfer_warm=False, outbound=True)
        self.audio: SerialPcmAudio | UsbAudio | None = None
        self.sim = "unknown"
        self.registration: dict[str, Any] = {}
        self.signal: dict[str, Any] = {}
        self.operator = ""
        self._call_idx: int | None = None
        self._active_evt = asyncio.Event()
        self._outcome: str | None = None
        self._last_poll = 0.0
        self._audio_on = False
        self._call_audio: list[SerialPcmAudio | UsbAudio] = []

    # ---- lifecycle (start/stop: AtLine) ----------------------------------------------------
    def _opened_state(self, why: str | None = None) -> None:
        self._set_state_from_registration()

    def _before_close(self) -> None:
        self._stop_audio_stream()

    def _open_and_init(self) -> None:
        cfg = self.config
        ch = ATChannel(cfg.port, cfg.baudrate, on_urc=self._urc_from_thread, on_lost=self._lost_from_thread,
                       name=cfg.name)
        self._open_channel(ch)

    def _init(self, ch: ATChannel) -> None:
        self._sync(ch)
        self._cmd(ch, "ATZ")
        self._cmd(ch, "ATE0")
        self._try(ch, "AT+CMEE=1")
        ident = self._identify(ch, ("AT+CGMI", "AT+CGMM", "AT+CGMR"))
        self.dialect = (detect_gsm_dialect(ident) if self.config.dialect == "auto"
                        else GSM_DIALECTS[self.config.dialect]())
        self._unlock_sim(ch)
        for c in ("AT+CLIP=1", "AT+CVHU=0", "AT+CREG=2", "AT+CEREG=2", *self.dialect.setup,
                  *self.dialect.audio_setup(self.config.audio)):
            self._try(ch, c)
        if self.config.audio == "serial-pcm" and self.dialect.pcm == "none":
            raise LineError(f"{self.name}: {self.dialect.name} has no serial PCM audio; use audio: usb "
                            "with a sound card on its MIC/SPK")
        self._poll_status(ch)

    def _unlock_sim(self, ch: ATChannel) -> None:
        try:
            r = self._cmd(ch, "AT+CPIN?")
        except CommandError as exc:
            self.sim = "absent"
            raise LineError(f"{self.name}: no usable SIM ({exc.final})") from exc
        state = (r.first("+CPIN:") or "").upper()
        if state == "SIM PIN":
            pin = os.environ.get(self.config.pin_env or "", "") if self.config.pin_env else ""
            if not pin:
                self.sim = "pin-required"
                raise LineError(f"{self.name}: the SIM asks for a PIN: set pin_env to an environment variable "
                                "holding it")
            try:
                self._cmd(ch, f'AT+CPIN="{pin}"', 10.0)
            except CommandError as exc:
                self.sim = "pin-rejected"
                raise LineError(f"{self.name}: the SIM rejected the PIN ({exc.final}); not retrying, "
                                "to keep the SIM from locking") from exc
            time.sleep(0.3)
            r = self._cmd(ch, "AT+CPIN?")
            state = (r.first("+CPIN:") or "").upper()
        if state != "READY":
            self.sim = state.lower() or "unknown"
            raise LineError(f"{self.name}: SIM not ready ({state or 'no answer'})")
        self.sim = "ready"

    def _poll_status(self, ch: ATChannel) -> None:
        for c in ("AT+CREG?", "AT+CEREG?"):
            r = self._try(ch, c)
            if r is not None and r.lines:
                parsed = parse_creg(r.lines[0])
                if parsed:
                    self._set_registration(c[3:7] if c == "AT+CREG?" else "CEREG", parsed)
        r = self._try(ch, "AT+CSQ")
        if r is not None and r.first("+CSQ:"):
            parts = (r.first("+CSQ:") or "").split(",")
            if parts and parts[0].strip().isdecimal():
                rssi = int(parts[0])
                self.signal = {"rssi": rssi, "dbm": rssi_to_dbm(rssi),
                               "ber": int(parts[1]) if len(parts) > 1 and parts[1].strip().isdecimal() else None}
        r = self._try(ch, "AT+COPS?")
        if r is not None and r.first("+COPS:"):
            m = re.search(r'"([^"]*)"', r.first("+COPS:") or "")
            self.operator = m.group(1) if m else ""
        self._last_poll = time.monotonic()

    def _set_registration(self, which: str, parsed: tuple) -> None:
        stat, lac, ci, act = parsed
        self.registration[which] = {"stat": stat, "status": CREG_STAT.get(stat, str(stat)), "lac": lac, "ci": ci,
                                    "act": act}

    @property
    def registered(self) -> bool:
        return any(r["stat"] in (1, 5) for r in self.registration.values())

    def _set_state_from_registration(self) -> None:
        if self.call is not None:
            return
        if self.registered:
            self.set_state("idle", f"registered ({self.operator or 'network'})")
        else:
            st = ", ".join(f"{k} {v['status']}" for k, v in self.registration.items()) or "unknown"
            self.set_state("error", f"not registered: {st}")

    # ---- supervision -------------------------------------------------------------------------
    async def _supervise(self) -> None:
        cfg = self.config
        while not self._stopping:
            await asyncio.sleep(cfg.reopen_interval_s if self.channel is None else 0.25)
            try:
                ch = self.channel
                if ch is None or not ch.is_open:
                    await self._reopen()
                    continue
                if self.call is not None and self.call.answered_at and not self._op_lock.locked():
                    if time.monotonic() - self._last_poll > 2.0:
                        await self._poll_calls()
                elif self.call is None and time.monotonic() - self._last_poll > cfg.health_check_s:
                    await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.last_error = str(exc)
                log.debug("%s: supervision: %s", self.name, exc)

    async def _probe(self) -> None:
        ch = self.channel
        if ch is None or self._op_lock.locked():
            return
        try:
            await asyncio.to_thread(self._cmd, ch, "AT", 1.0)      # a wedged modem shows in 1 s
            await asyncio.to_thread(self._poll_status, ch)
            self._probe_failures = 0
            self._set_state_from_registration()
        except ModemTimeout:
            self._last_poll = time.monotonic()
            self._probe_failures += 1
            if self._probe_failures >= 2:
                await self._reset("modem stopped answering")

    async def _poll_calls(self) -> None:
        """No URC for our call's end is guaranteed (SIM7600 has no end URC for ^DSCI; GM polls)."""
        ch = self.channel
        self._last_poll = time.monotonic()
        if ch is None:
            return
        try:
            r = await asyncio.to_thread(self._cmd, ch, "AT+CLCC", 3.0)
        except ModemTimeout:
            self._probe_failures += 1
            if self._probe_failures >= 2:
                await self._reset("modem stopped answering during a call")
            return
        except LineError:
            return
        self._probe_failures = 0
        calls = [c for c in (parse_clcc(x) for x in r.lines) if c]
        call = self.call
        if call is not None and call.answered_at and not any(c["stat"] in (0, 1) for c in calls):
            self._end_call_now(call, "remote")

    # ---- URCs --------------------------------------------------------------------------------
    def _on_urc(self, line: str) -> None:
        call = self.call
        if line.startswith(("RING", "+CRING")):
            self._on_ring(None)
        elif line.startswith("+CLIP:"):
            number, name = parse_clip(line)
            self._on_ring((number, name))
        elif line.startswith(("+CREG:", "+CEREG:", "+CGREG:")):
            parsed = parse_creg(line)
            if parsed:
                self._set_registration(line[1:line.index(":")], parsed)
                self._set_state_from_registration()
        elif line.startswith("+CLCC:"):
            c = parse_clcc(line)
            if c and call is not None:
                self._on_clcc(call, c)
        elif line.startswith("VOICE CALL: BEGIN"):
            self._active_evt.set()
        elif line.startswith(("VOICE CALL: END", "NO CARRIER", "BUSY", "NO ANSWER", "MISSED_CALL")):
            if call is None:
                return
            word = line.split(":")[0] if line.startswith(("VOICE", "MISSED")) else line
            if not call.answered_at:
                self._outcome = {"BUSY": "busy", "NO ANSWER": "no-answer"}.get(word, "no-answer")
                self._active_evt.set()
                if call.direction == "inbound":
                    self._end_call_now(call, "caller-gave-up")
            elif not self._op_lock.locked() or word != "NO CARRIER":
                self._end_call_now(call, "remote")
        else:
            digit = self.dialect.dtmf_digit(line)
            if digit and call is not None and call.answered_at and not call.ended.is_set():
                call.events.put_nowait(LineEvent("dtmf", {"digit": digit, "duration_ms": None}, call.call_id))

    def _on_clcc(self, call: ModemCall, c: dict[str, Any]) -> None:
        if self._call_idx is None and ((call.direction == "inbound" and c["dir"] == 1)
                                       or (call.direction == "outbound" and c["dir"] == 0)):
            self._call_idx = c["id"]
        if c["id"] != self._call_idx:
            return
        if c["stat"] == 0:
            self._active_evt.set()
        elif c["stat"] == 6 and call.answered_at and not self._op_lock.locked():
            self._end_call_now(call, "remote")

    def _on_ring(self, clip: tuple[str, str] | None) -> None:
        if self.call is not None and (self.call.answered_at or self.call.direction == "outbound"):
            return
        if self.call is None:
            self.call = ModemCall(self, "inbound", loop=self._loop)
            self._ring_count, self._ring_emitted, self._call_idx = 0, False, None
            self._active_evt = asyncio.Event()
            self._outcome = None
            self.set_state("ringing", "RING")
            self._watch_ringing(self.call)
        call = self.call
        if clip is None:
            self._ring_count += 1
            self._last_ring = time.monotonic()
        else:
            call.remote, self._cid_name = clip
        if not self._ring_emitted and (clip is not None or self._ring_count > self.config.rings_before_answer):
            if self._ring_count >= self.config.rings_before_answer:
                self._ring_emitted = True
                self.emit(LineEvent("ring", {"caller_id": call.remote, "name": getattr(self, "_cid_name", ""),
                                             "rings": self._ring_count, "call": call}, call.call_id))

    def _watch_ringing(self, call: ModemCall) -> None:
        async def watch() -> None:
            while not call.answered_at and not call.ended.is_set():
                await asyncio.sleep(1.0)
                if time.monotonic() - getattr(self, "_last_ring", time.monotonic()) > 12.0:
                    self._end_call_now(call, "caller-gave-up")
        self._spawn(watch())

    # ---- calls ---------------------------------------------------------------------------------

    def _end_call_now(self, call: ModemCall, cause: str) -> None:
        if call.ended.is_set():
            if self.call is call:
                self.call = None
            return
        call.flush_playout()
        call.events.put_nowait(LineEvent("metrics", self._call_metrics(), call.call_id))
        self.underruns_total += sum(a.underruns for a in self._call_audio)
        self._stop_audio_stream()
        call.mark_ended(cause)
        if self.call is call:
            self.call = None
        self.calls_total += 1
        ch = self.channel
        if ch is not None and ch.is_open and self._audio_on and cause not in ("line-lost", "modem-reset"):
            self._spawn(self._audio_off_quietly(ch))
        if self.state not in ("down", "error"):
            self._set_state_from_registration()

    async def _audio_off_quietly(self, ch: ATChannel) -> None:
        async with self._op_lock:
            await asyncio.to_thread(self._audio_off, ch)

    def _call_metrics(self) -> dict[str, Any]:
        streams = self._call_audio
        drift = self.clock.drift_ppm
        frames_in = sum(a.frames_in for a in streams)
        cpu_s = sum(a.cpu_s for a in streams)
        return {"drift_ppm": round(drift, 1) if drift is not None else None,
                "frames_in": frames_in, "frames_out": sum(a.frames_out for a in streams),
                "modem_underruns": sum(a.underruns for a in streams),
                "max_gap_ms": round(self.clock.max_gap_s * 1000, 1),
                "framing_cpu_ms": round(cpu_s * 1000, 2),
                "framing_cpu_pct": round(100 * cpu_s / max(frames_in * 0.02, 1e-9), 3)}

    def _stop_audio_stream(self) -> None:
        a, self.audio = self.audio, None
        if a is not None:
            a.stop()

    def _audio_on_cmds(self, ch: ATChannel, call: ModemCall) -> None:
        for c in self.dialect.audio_on():
            try:
                self._cmd(ch, c)
            except CommandError:
                time.sleep(0.2)
                self._cmd(ch, c)          # SIM7600: the first CPCMREG=1 after a cycle fails (CP #121)
        self._audio_on = True
        self.clock = ClockStats()
        if self.config.audio == "serial-pcm":
            if not self.config.audio_port:
                raise LineError(f"{self.name}: audio: serial-pcm needs audio_port (the PCM tty)")
            audio: SerialPcmAudio | UsbAudio = SerialPcmAudio(self.config.audio_port, call, self.clock)
        else:
            audio = UsbAudio(self.config.audio_device, call, self.clock)
        audio.start()
        self.audio = audio
        self._call_audio.append(audio)

    def _audio_off(self, ch: ATChannel) -> None:
        self._stop_audio_stream()
        if self._audio_on:
            self._audio_on = False
            for c in self.dialect.audio_off():
                self._try(ch, c)

    async def _answer(self, call: ModemCall) -> None:
        if call.ended.is_set():
            raise LineError(f"{self.name}: the caller hung up before the answer")
        async with self._op_lock:
            ch = self._channel()
            r = await asyncio.to_thread(self._cmd, ch, "ATA", 20.0, call_finals=True, check=False)
            if r.final != "OK":
                self._end_call_now(call, "caller-gave-up")
                raise LineError(f"{self.name}: answer failed ({r.final})")
            call.answered_at = time.time()
            self._call_audio = []
            await asyncio.to_thread(self._audio_on_cmds, ch, call)
        self._last_poll = time.monotonic()
        self.set_state("in_call", f"answered {call.remote}")
        call.events.put_nowait(LineEvent("answered", {"remote": call.remote, "full_duplex": True}, call.call_id))

    def _hang_up_device(self, ch: ATChannel) -> None:
        try:
            self._audio_off(ch)
            if self._try(ch, "AT+CHUP") is None:
                self._try(ch, "ATH")
        except LineError as exc:
            log.debug("%s: hang-up: %s", self.name, exc)

    async def _send_dtmf(self, call: ModemCall, digits: str) -> None:
        self._check_dtmf(call, digits)
        async with self._op_lock:
            ch = self._channel()

            def go() -> None:
                for d in digits:                     # one character per command (GM)
                    self._cmd(ch, f"AT+VTS={d}", 5.0)
            await asyncio.to_thread(go)

    async def _wait_active(self, timeout_s: float) -> str:
        """Wait for the dialled call to be answered: 'active' or the failure status."""
        deadline = time.monotonic() + timeout_s
        ch = self._channel()
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._active_evt.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
            if self._outcome:
                return self._outcome
            if self._active_evt.is_set():
                return "active"
            r = await asyncio.to_thread(self._try, ch, "AT+CLCC", 3.0)   # no URCs on generic modems
            for c in (parse_clcc(x) for x in (r.lines if r else [])):
                if c and c["dir"] == 0 and c["stat"] == 0 and (self._call_idx in (None, c["id"])):
                    return "active"
        return "no-answer"

    async def dial(self, number: str, timeout_s: float = 60.0) -> Call:
        num = re.sub(r"[\s\-().]", "", number)
        if not re.fullmatch(r"\+?[0-9*#]+", num):
            raise LineError(f"{self.name}: cannot dial {number!r}: expected digits, '*' and '#', "
                            "with an optional leading '+' (spaces, '-', '.', '(' ')' are ignored)")
        if self.call is not None:
            raise LineError(f"{self.name}: line busy with another call")
        call = ModemCall(self, "outbound", remote=num, loop=self._loop)
        self.call, self._call_idx, self._outcome = call, None, None
        self._active_evt = asyncio.Event()
        async with self._op_lock:
            ch = self._channel()
            try:
                r = await asyncio.to_thread(self._cmd, ch, f"ATD{num};", 30.0, call_finals=True, check=False)
                status = "active" if r.final == "OK" else {"BUSY": "busy", "NO ANSWER": "no-answer",
                                                           "NO DIALTONE": "no-network"}.get(r.final, "failed")
                if status == "active":
                    status = await self._wait_active(timeout_s)
            except LineError:
                self.call = None
                raise
            if status != "active":
                self.emit(LineEvent("progress", {"status": status, "number": num}, call.call_id))
                await asyncio.to_thread(self._try, ch, "AT+CHUP")
                self.call = None
                call.mark_ended(status)
                raise LineError(status)
            call.answered_at = time.time()
            self._call_audio = []
            await asyncio.to_thread(self._audio_on_cmds, ch, call)
        self._last_poll = time.monotonic()
        self.set_state("in_call", f"dialled {num}")
        call.events.put_nowait(LineEvent("answered", {"remote": num, "full_duplex": True}, call.call_id))
        return call

    async def _transfer(self, call: ModemCall, target: str, mode: str) -> bool:
        num = re.sub(r"[\s\-().]", "", target or self.config.transfer_number or "")
        if mode != "blind":
            raise LineError(f"{self.name}: GSM lines transfer blind (+CTFR or hold + dial + ECT)")
        if not re.fullmatch(r"\+?[0-9*#]+", num):
            raise LineError(f"{self.name}: cannot transfer to {target!r}: a phone number is needed")
        if call.ended.is_set():
            raise LineError(f"{self.name}: call already ended")

        def event(status: str, detail: str) -> None:
            call.events.put_nowait(LineEvent("transfer", {"target": num, "mode": mode, "status": status,
                                                          "detail": detail}, call.call_id))
        async with self._op_lock:
            ch = self._channel()
            if not call.answered_at:
                event("trying", "+CTFR (deflect)")
                try:
                    await asyncio.to_thread(self._cmd, ch, f'AT+CTFR="{num}"', 10.0)
                except LineError as exc:
                    event("failed", str(exc))
                    return False
                event("ok", "deflected")
                self._end_call_now(call, "transferred")
                return True
            event("trying", "hold (+CHLD=2), dial, explicit call transfer (+CHLD=4)")
            try:
                await asyncio.to_thread(self._audio_off, ch)
                await asyncio.to_thread(self._cmd, ch, "AT+CHLD=2", 10.0)
                self._active_evt = asyncio.Event()
                self._outcome = None
                self._call_idx = None
                r = await asyncio.to_thread(self._cmd, ch, f"ATD{num};", 30.0, call_finals=True, check=False)
                status = await self._wait_second_call(ch, 30.0) if r.final == "OK" else r.final
                if status != "active":
                    raise LineError(f"target {status}")
                await asyncio.to_thread(self._cmd, ch, "AT+CHLD=4", 10.0)
            except LineError as exc:
                event("failed", str(exc))
                await asyncio.to_thread(self._try, ch, "AT+CHLD=1")      # drop the attempt, take the caller back
                try:
                    await asyncio.to_thread(self._audio_on_cmds, ch, call)
                except LineError:
                    pass
                return False
        event("ok", "explicit call transfer")
        self._end_call_now(call, "transferred")
        return True

    async def _wait_second_call(self, ch: ATChannel, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r = await asyncio.to_thread(self._try, ch, "AT+CLCC", 3.0)
            calls = [c for c in (parse_clcc(x) for x in (r.lines if r else [])) if c]
            mo = [c for c in calls if c["dir"] == 0]
            if any(c["stat"] == 0 for c in mo):
                return "active"
            if not mo:
                return self._outcome or "failed"
            await asyncio.sleep(0.2)
        return "no-answer"

    # ---- health ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        ch = self.channel
        drift = self.clock.drift_ppm
        return {
            "name": self.name, "state": self.state, "type": "gsm", "port": self.config.port,
            "dialect": self.dialect.name, "identity": self.identity, "sim": self.sim,
            "registration": self.registration, "registered": self.registered,
            "signal_dbm": self.signal.get("dbm"), "rssi": self.signal.get("rssi"), "operator": self.operator,
            "audio": self.config.audio, "full_duplex": True, "barge_in": True,
            "drift_ppm": round(drift, 1) if drift is not None else None,
            "underruns": self.underruns_total, "calls": self.calls_total, "resets": self.resets,
            "reopens": self.reopens, "stray_lines": ch.stray_lines if ch else None,
            "last_error": self.last_error or None,
        }
