"""What the two AT-command lines share: the V.253 voice modem (`modem.VoiceModemLine`) and the
27.007 cellular modem (`gsm.GsmLine`).

Both own one serial `ATChannel` whose reader thread hands unsolicited results and a lost device
to the event loop; both are supervised (the port reopened while the device is away, a modem that
stops answering reset: port closed for >= 0.5 s, reopened, initialised again); both run one call
at a time, serialising commands with `_op_lock`. The subclasses say how to open and initialise
their modem (`_open_and_init`), what state an opened modem is in (`_opened_state`), what their
supervision checks (`_supervise`), how a call ends (`_end_call_now`) and how the device hangs up
(`_hang_up_device`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..errors import LineError
from .at import ATChannel, CommandError, ModemGone, ModemTimeout, Response
from .base import Line
from .modem_audio import ClockStats

if TYPE_CHECKING:
    from .modem import ModemCall

log = logging.getLogger(__name__)

DTMF_DIGITS = "0123456789*#ABCD"


class AtLine(Line):
    def __init__(self, config):
        super().__init__(config.name)
        self.config = config
        self.identity: dict[str, str] = {}
        self.channel: ATChannel | None = None
        self.call: ModemCall | None = None
        self.clock = ClockStats()
        self.resets = self.reopens = self.calls_total = self.underruns_total = 0
        self.last_error = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._op_lock = asyncio.Lock()
        self._supervisor: asyncio.Task | None = None
        self._bg_tasks: set[asyncio.Task] = set()
        self._stopping = False
        self._ring_count = 0
        self._ring_emitted = False
        self._probe_failures = 0
        self._outage_logged = False

    # ---- the subclass's part -------------------------------------------------------------
    def _open_and_init(self) -> None:
        """Worker thread: make the port's ATChannel and `_open_channel` it."""
        raise NotImplementedError

    def _opened_state(self, why: str | None = None) -> None:
        """The line's state once the modem is open and initialised (`why`: reopened)."""
        self.set_state("idle", why or f"modem on {self.config.port}")

    async def _supervise(self) -> None:
        raise NotImplementedError

    def _end_call_now(self, call: ModemCall, cause: str) -> None:
        raise NotImplementedError

    def _hang_up_device(self, ch: ATChannel) -> None:
        """Worker thread: leave the call's audio and go on hook (errors logged, not raised)."""
        raise NotImplementedError

    def _before_close(self) -> None:
        """Loop thread, on stop: before the port closes."""

    def _on_urc(self, line: str) -> None:
        raise NotImplementedError

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        try:
            await asyncio.to_thread(self._open_and_init)
        except LineError as exc:
            self.set_state("error", str(exc))
            raise
        self._opened_state()
        self._supervisor = asyncio.ensure_future(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        if self.call is not None and not self.call.ended.is_set():
            try:
                await self._hangup(self.call, "shutdown")
            except LineError:
                pass
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._supervisor = None
        self._before_close()
        ch, self.channel = self.channel, None
        if ch is not None:
            await asyncio.to_thread(ch.close)
        self.set_state("down", "stopped")

    def _init(self, ch: ATChannel) -> None:
        """Worker thread: bring the modem on an opened port to a known state."""
        raise NotImplementedError

    def _open_channel(self, ch: ATChannel) -> None:
        """Worker thread: open `ch` and initialise the modem on it; it becomes `self.channel`."""
        ch.open()
        try:
            self._init(ch)
        except Exception:
            ch.close()
            raise
        self.channel = ch
        self._probe_failures = 0

    def _sync(self, ch: ATChannel) -> None:
        """A bare AT until the modem answers (its first may meet autobaud or a half-sent line)."""
        for attempt in range(3):
            try:
                self._cmd(ch, "AT", 1.0)
                return
            except (ModemTimeout, CommandError):
                if attempt == 2:
                    raise ModemTimeout(f"{self.name}: no answer to AT on {self.config.port}") from None

    def _cmd(self, ch: ATChannel, command: str, timeout_s: float | None = None, **kw) -> Response:
        return ch.command(command, timeout_s or self.config.command_timeout_s, **kw)

    def _try(self, ch: ATChannel, command: str, timeout_s: float | None = None) -> Response | None:
        try:
            return self._cmd(ch, command, timeout_s)
        except CommandError:
            return None

    def _identify(self, ch: ATChannel, commands: tuple[str, ...]) -> str:
        """Ask the identification commands; keep what each answered in `identity`, return it all."""
        ident = {}
        for c in commands:
            r = self._try(ch, c)
            if r is not None and r.lines:
                ident[c] = " ".join(r.lines)
        self.identity = ident
        return " ".join(ident.values())

    def _channel(self) -> ATChannel:
        ch = self.channel
        if ch is None or not ch.is_open:
            raise ModemGone(f"{self.name}: modem not available ({self.last_error or 'down'})")
        return ch

    # ---- supervision: reopen, reset --------------------------------------------------------
    async def _reopen(self) -> None:
        if self.channel is not None:
            ch, self.channel = self.channel, None
            await asyncio.to_thread(ch.close)
        try:
            await asyncio.to_thread(self._open_and_init)
        except LineError as exc:
            self.last_error = str(exc)
            if not self._outage_logged:
                log.warning("%s: device unavailable (%s); retrying every %.1f s", self.name, exc,
                            self.config.reopen_interval_s)
                self._outage_logged = True
            return
        self.reopens += 1
        self._outage_logged = False
        log.warning("%s: modem back on %s", self.name, self.config.port)
        self._opened_state("device reopened")

    async def _reset(self, why: str) -> None:
        """Wedged modem: close the port (DTR drops for >= 0.5 s), reopen and initialise."""
        self.resets += 1
        self.last_error = why
        self.set_state("error", why)
        if self.call is not None:
            self._end_call_now(self.call, "modem-reset")
        ch, self.channel = self.channel, None
        if ch is not None:
            await asyncio.to_thread(ch.close)
        await asyncio.sleep(0.5)
        self._probe_failures = 0
        await self._reopen()

    # ---- events from the reader thread -------------------------------------------------------
    def _spawn(self, coro) -> None:
        """Run a background step, keeping a reference until it is done (the loop holds only weak ones)."""
        task = asyncio.ensure_future(coro)
        self._bg_tasks.add(task)
        task.add_done_callback(self._bg_tasks.discard)

    def _post(self, fn, *args) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    def _urc_from_thread(self, line: str) -> None:
        self._post(self._on_urc, line)

    def _lost_from_thread(self, reason: str) -> None:
        self._post(self._on_lost, reason)

    def _on_lost(self, reason: str) -> None:
        self.last_error = f"device lost: {reason}"
        log.warning("%s: %s", self.name, self.last_error)
        if self.call is not None:
            self._end_call_now(self.call, "line-lost")
        self.set_state("down", self.last_error)

    # ---- call actions --------------------------------------------------------------------------
    async def _hangup(self, call: ModemCall, cause: str = "local") -> None:
        if call.ended.is_set() and self.call is not call:
            return
        self._end_call_now(call, cause)
        ch = self.channel
        if ch is not None and ch.is_open:
            async with self._op_lock:
                await asyncio.to_thread(self._hang_up_device, ch)

    def _check_dtmf(self, call: ModemCall, digits: str) -> None:
        bad = [d for d in digits if d not in DTMF_DIGITS]
        if bad:
            raise LineError(f"{self.name}: cannot send DTMF {''.join(bad)!r}: digits are 0-9 * # A-D")
        if call.ended.is_set():
            raise LineError(f"{self.name}: call already ended")
