"""AT command channel over pyserial (`serial_for_url`: a device, a pty, `loop://`, `socket://`).

Layering (STYLE.md): transport (pyserial) -> this channel -> V.253 / 27.007 line + dialect.

- One command at a time: `command("AT+CSQ")` waits for its final result code (OK, ERROR,
  +CME/+CMS ERROR, or the call results NO CARRIER/BUSY/... when asked) and returns the
  information lines in between.
- Unsolicited result codes (RING, +CLIP, NMBR=, +CREG:, NO CARRIER, ...) go to `on_urc`, never
  into a command's response: a line that starts with a known URC prefix is a URC unless it
  carries the pending command's own prefix (`AT+CLCC` owns `+CLCC:` lines).
- Echo: a line equal to the pending command is the modem echoing it (echo is on after ATZ).
- Stray bytes: only printable ASCII survives; lines that are then empty are dropped.
- Data mode: `command(..., data_sink=sink)` switches the reader to the sink on CONNECT, in the
  reader thread, so no voice byte is ever parsed as text; the sink hands back the bytes after
  `DLE ETX` and the channel parses lines again.
- A vanished port (USB unplug) fails the pending command with `ModemGone` and calls `on_lost`.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import LineError

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096


class ModemTimeout(LineError):
    """The modem did not give a final result code in time (it may be wedged)."""


class ModemGone(LineError):
    """The serial port vanished (USB unplug) or could not be opened."""


class CommandError(LineError):
    """The modem answered ERROR / +CME ERROR / +CMS ERROR."""

    def __init__(self, command: str, final: str, lines: list[str] | None = None):
        self.command, self.final, self.lines = command, final, list(lines or [])
        super().__init__(f"{command!r} -> {final}")


ERROR_FINALS = ("ERROR", "+CME ERROR", "+CMS ERROR")
CALL_FINALS = ("NO CARRIER", "BUSY", "NO DIALTONE", "NO DIAL TONE", "NO ANSWER", "VCON")
# Lines that are events whenever they do not belong to the pending command (MODEMS.md 1.5, 2.1-2.2)
URC_PREFIXES = (
    "RING", "+CRING", "+CLIP", "+CCWA", "+CSSI", "+CSSU", "+CLCC:", "+CREG:", "+CEREG:", "+CGREG:",
    "DRON", "DROF",
    "NO CARRIER", "BUSY", "NO DIALTONE", "NO DIAL TONE", "NO ANSWER",
    "VOICE CALL:", "MISSED_CALL", "+RXDTMF", "+DTMF:", "+QTONEDET", "+QIND", "^", "RDY",
    "+CPIN: ", "SMS DONE", "PB DONE", "+CMTI", "+CFUN:", "+CUSD", "*ECAV", "HANGUP:", "+WIND",
)
_CID_RE = re.compile(r"^(NMBR|NAME|DATE|TIME|MESG|DDN_NMBR|NDID|CALLER NUMBER|CALLER NAME)\s*[=:]")
_PREFIX_RE = re.compile(r"^AT([+^#*$%][A-Z0-9]+)", re.IGNORECASE)
_ASCII_PRINTABLE = bytes(range(0x20, 0x7F))
_DELETE_NONPRINT = bytes(b for b in range(256) if b not in _ASCII_PRINTABLE)


class DataSink(Protocol):
    def feed(self, data: bytes) -> bytes | None:
        """Consume data-mode bytes; return None to stay in data mode, else the bytes after the end."""


@dataclass
class Response:
    command: str
    final: str
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.final == "OK" or self.final.startswith("CONNECT") or self.final == "VCON"

    def first(self, prefix: str) -> str | None:
        """Value of the first line starting with `prefix` (prefix removed, stripped)."""
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        return None


def is_caller_id_line(line: str) -> bool:
    """`NMBR = 123`, `DATE=1125`, ... (formatted +VCID output, MODEMS.md §1.5)."""
    return _CID_RE.match(line) is not None


def clean_line(raw: bytes) -> str:
    """Printable ASCII of one raw line (stray bytes and shielded codes dropped)."""
    return raw.translate(None, _DELETE_NONPRINT).decode("ascii").strip()


def response_prefix(command: str) -> str | None:
    """`AT+CLCC`, `AT+CREG?`, `AT+VSM=?` -> `+CLCC:`, `+CREG:`, `+VSM:`."""
    m = _PREFIX_RE.match(command.strip())
    return (m.group(1).upper() + ":") if m else None


class LineSplitter:
    """Splits a byte stream into lines on CR/LF. In command mode a DLE code (`DLE R` ring in
    voice mode, `DLE b` ...) is reported separately. Bounded: an endless line is cut at
    MAX_LINE_BYTES. Any byte sequence is accepted."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.unpaired_cr = False    # the last line ended in CR at the end of the buffer: an LF may follow

    def next_item(self) -> tuple[str, str] | None:
        """('line', text) or ('dle', code) or None when more bytes are needed."""
        buf = self.buf
        while buf:
            # skip leading line terminators
            k = 0
            while k < len(buf) and buf[k] in (0x0D, 0x0A):
                k += 1
            if k:
                del buf[:k]
                continue
            if buf[0] == 0x10:
                if len(buf) < 2:
                    return None
                code = buf[1]
                del buf[:2]
                if code in (0x10, 0x03):      # stray shielded data / end marker: ignore
                    continue
                return ("dle", chr(code))
            cr = buf.find(b"\r")
            lf = buf.find(b"\n")
            ends = [p for p in (cr, lf) if p >= 0]
            dle = buf.find(b"\x10")
            if dle >= 0 and (not ends or dle < min(ends)):
                raw = bytes(buf[:dle])
                del buf[:dle]
                text = clean_line(raw)
                if text:
                    return ("line", text)
                continue
            if not ends:
                if len(buf) > MAX_LINE_BYTES:
                    raw = bytes(buf)
                    buf.clear()
                    text = clean_line(raw)
                    if text:
                        return ("line", text)
                return None
            end = min(ends)
            raw = bytes(buf[:end])
            crlf = buf[end] == 0x0D and end + 1 < len(buf) and buf[end + 1] == 0x0A
            self.unpaired_cr = buf[end] == 0x0D and end + 1 == len(buf)
            del buf[:end + (2 if crlf else 1)]
            text = clean_line(raw)
            if text:
                return ("line", text)
        return None


@dataclass
class _Pending:
    command: str
    prefix: str | None
    call_finals: bool
    data_sink: DataSink | None
    done: threading.Event = field(default_factory=threading.Event)
    lines: list[str] = field(default_factory=list)
    final: str | None = None
    error: Exception | None = None


class ATChannel:
    """A serial AT command channel with a reader thread. Thread-safe `command()`."""

    def __init__(self, port: str, baudrate: int = 115200, *, on_urc: Callable[[str], None] | None = None,
                 on_dle: Callable[[str], None] | None = None, on_lost: Callable[[str], None] | None = None,
                 extra_urcs: Iterable[str] = (), command_delay_s: float = 0.0, open_delay_s: float = 0.1,
                 name: str = "modem"):
        self.port, self.baudrate, self.name = port, baudrate, name
        self.on_urc = on_urc or (lambda line: None)
        self.on_dle = on_dle or (lambda code: None)
        self.on_lost = on_lost or (lambda reason: None)
        self.urc_prefixes = tuple(URC_PREFIXES) + tuple(extra_urcs)
        self.command_delay_s = command_delay_s
        self.open_delay_s = open_delay_s
        self.serial = None
        self.lost_reason: str | None = None
        self.stray_lines = 0
        self.timeouts = 0
        self._splitter = LineSplitter()
        self._sink: DataSink | None = None
        self._skip_lf = False
        self._pending: _Pending | None = None
        self._cmd_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._reader: threading.Thread | None = None
        self._closing = False
        self._last_cmd_at = 0.0

    # ---- open / close ---------------------------------------------------------------
    def open(self) -> None:
        """Open the port (DTR rises), wait `open_delay_s` and drop whatever the modem said on open
        (some modems send a stray OK when DTR rises: MODEMS.md §3)."""
        import serial

        try:
            self.serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05,
                                                write_timeout=2.0, do_not_open=False)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemGone(f"{self.name}: cannot open {self.port}: {exc}") from exc
        self.lost_reason = None
        self._closing = False
        self._splitter = LineSplitter()
        self._sink = None
        self._skip_lf = False
        if self.open_delay_s:
            time.sleep(self.open_delay_s)
        try:
            self.serial.reset_input_buffer()
        except Exception:  # noqa: BLE001 - loop:// and sockets may not support it
            pass
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-at-reader", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Close the port (on a real modem this drops DTR: the modem hangs up and resets)."""
        self._closing = True
        ser, self.serial = self.serial, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        self._fail_pending(ModemGone(f"{self.name}: port closed"))

    @property
    def is_open(self) -> bool:
        return self.serial is not None and self.lost_reason is None

    @property
    def in_data_mode(self) -> bool:
        return self._sink is not None

    @property
    def data_sink(self) -> DataSink | None:
        return self._sink

    # ---- commands -------------------------------------------------------------------
    def command(self, command: str, timeout_s: float = 2.0, *, call_finals: bool = False,
                data_sink: DataSink | None = None, check: bool = True) -> Response:
        """Send `command` + CR and wait for its final result. `call_finals`: NO CARRIER/BUSY/...
        end this command (ATD, ATA). `data_sink`: on CONNECT the reader feeds the sink.
        Raises CommandError (if `check`), ModemTimeout, ModemGone."""
        return self._transact(command, (command + "\r").encode("ascii"), timeout_s, call_finals, data_sink, check)

    def send_raw_expect(self, raw: bytes, timeout_s: float = 2.0, label: str = "<raw>",
                        check: bool = True) -> Response:
        """Write raw bytes (e.g. `DLE ^` to leave duplex) and wait for the next final result."""
        return self._transact(label, raw, timeout_s, False, None, check)

    def _transact(self, label: str, raw: bytes, timeout_s: float, call_finals: bool,
                  data_sink: DataSink | None, check: bool) -> Response:
        with self._cmd_lock:
            if not self.is_open:
                raise ModemGone(f"{self.name}: {self.lost_reason or 'port not open'}")
            if self.command_delay_s:
                wait = self._last_cmd_at + self.command_delay_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            pending = _Pending(label, response_prefix(label), call_finals, data_sink)
            with self._state_lock:
                self._pending = pending
                if self._sink is None and self._splitter.buf:
                    # an unterminated stray fragment cannot belong to a reply to what we send now
                    self.stray_lines += 1
                    self._splitter.buf.clear()
            try:
                self.write(raw)
                if not pending.done.wait(timeout_s):
                    self.timeouts += 1
                    raise ModemTimeout(f"{self.name}: no answer to {label!r} within {timeout_s:.1f} s")
            finally:
                with self._state_lock:
                    if self._pending is pending:
                        self._pending = None
                self._last_cmd_at = time.monotonic()
            if pending.error is not None:
                raise pending.error
            resp = Response(label, pending.final or "", pending.lines)
            if check and resp.final.startswith(ERROR_FINALS):
                raise CommandError(label, resp.final, resp.lines)
            return resp

    def write(self, data: bytes) -> None:
        """Write bytes (commands or shielded voice data). Raises ModemGone if the port is gone."""
        ser = self.serial
        if ser is None:
            raise ModemGone(f"{self.name}: port not open")
        try:
            with self._write_lock:
                ser.write(data)
        except Exception as exc:  # noqa: BLE001 - SerialException, SerialTimeoutException, OSError
            import serial

            if isinstance(exc, serial.SerialTimeoutException):
                raise ModemTimeout(f"{self.name}: write timed out (modem not draining)") from exc
            self._lost(f"write failed: {exc}")
            raise ModemGone(f"{self.name}: {exc}") from exc

    # ---- reader thread --------------------------------------------------------------
    def _read_loop(self) -> None:
        ser = self.serial
        while not self._closing and ser is not None:
            try:
                data = ser.read(max(1, min(ser.in_waiting, 4096)))
            except Exception as exc:  # noqa: BLE001 - SerialException / OSError on unplug
                if not self._closing:
                    self._lost(f"read failed: {exc}")
                return
            if data:
                try:
                    with self._state_lock:
                        self._handle(data)
                except Exception:  # noqa: BLE001 - a parser bug must not kill the reader
                    log.exception("%s: error handling %r", self.name, data[:64])

    def _handle(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            if self._skip_lf:
                self._skip_lf = False
                if data[:1] == b"\n":
                    data = data[1:]
                    if not data:
                        return
            rest = sink.feed(data)
            if rest is None:
                return
            self._sink = None
            data = rest
        self._splitter.buf += data
        while True:
            item = self._splitter.next_item()
            if item is None:
                return
            kind, text = item
            if kind == "dle":
                self._dispatch(self.on_dle, text)
                continue
            if self._on_line(text):
                # CONNECT into data mode: the rest of the buffer is voice data (CONNECT's own
                # CR LF is not: an LF still to come after a CR that ended a read is dropped)
                rest = bytes(self._splitter.buf)
                self._splitter.buf.clear()
                if not rest and self._splitter.unpaired_cr:
                    self._skip_lf = True
                sink = self._sink
                if rest and sink is not None:
                    more = sink.feed(rest)
                    if more is not None:
                        self._sink = None
                        self._splitter.buf += more
                        continue
                return

    def _on_line(self, line: str) -> bool:
        """Route one line. Returns True when it switched the channel into data mode."""
        with self._state_lock:
            p = self._pending
        if p is None:
            if self._is_urc(line) or line.startswith("+"):
                self._dispatch(self.on_urc, line)
            else:
                self.stray_lines += 1
                log.debug("%s: stray line %r", self.name, line)
            return False
        upper = line.upper()
        if upper == p.command.upper() or (p.command.upper().startswith("AT") and upper.endswith(p.command.upper())):
            return False   # echo
        if p.prefix and upper.startswith(p.prefix):
            p.lines.append(line)
            return False
        if upper == "OK" or upper.startswith(ERROR_FINALS):
            self._complete(p, line)
            return False
        if upper.startswith("CONNECT") and p.data_sink is not None:
            self._sink = p.data_sink
            self._complete(p, line)
            return True
        if p.call_finals and (upper.startswith(CALL_FINALS) or upper.startswith("CONNECT")):
            self._complete(p, line)
            return False
        if self._is_urc(line):
            self._dispatch(self.on_urc, line)
            return False
        p.lines.append(line)
        return False

    def _is_urc(self, line: str) -> bool:
        return line.startswith(self.urc_prefixes) or is_caller_id_line(line)

    def _complete(self, p: _Pending, final: str) -> None:
        p.final = final
        p.done.set()

    def _dispatch(self, fn: Callable[[str], None], arg: str) -> None:
        try:
            fn(arg)
        except Exception:  # noqa: BLE001
            log.exception("%s: event handler failed on %r", self.name, arg)

    def _fail_pending(self, exc: Exception) -> None:
        with self._state_lock:
            p = self._pending
        if p is not None and not p.done.is_set():
            p.error = exc
            p.done.set()

    def _lost(self, reason: str) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        self._sink = None
        self._fail_pending(ModemGone(f"{self.name}: {reason}"))
        ser, self.serial = self.serial, None
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001
                pass
        self._dispatch(self.on_lost, reason)

    @property
    def reader_lock(self) -> threading.RLock:
        """Held while the reader thread handles received bytes (and a data sink's replies)."""
        return self._state_lock

    def leave_data_mode(self) -> None:
        """Forget the data sink (after the modem ended data mode in a way we saw)."""
        self._sink = None
