"""Shared plumbing of the modem emulators: a pty the DTE opens like a USB serial device, with
USB unplug/replug, DTR-drop detection (the DTE closing the port), Hayes command-line
collection with per-character echo, and a far-end telephone party that speaks and listens.

Nothing here knows V.253 or 27.007; see voice_modem_emulator.py and gsm_modem_emulator.py,
whose emulators share `ModemEmulator` (lifecycle, USB faults, the far end, the clock thread).
"""
from __future__ import annotations

import errno
import heapq
import itertools
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable

import numpy as np


class PtyEndpoint:
    """The device side of a pty. `path` is what the DTE opens (a stable symlink if `link`).

    The DTE closing the port is seen as EIO/POLLHUP on the master: `on_dtr_drop()` is called,
    as a real modem sees DTR fall. `unplug()` closes the master (the DTE's reads fail, like a
    USB serial device vanishing) and removes the link; `replug()` makes a new pty behind it.
    """

    def __init__(self, on_bytes: Callable[[bytes], None], on_dtr_drop: Callable[[], None] | None = None,
                 on_dtr_rise: Callable[[], None] | None = None, link: str | None = None, name: str = "pty"):
        self.on_bytes, self.link, self.name = on_bytes, link, name
        self.on_dtr_drop = on_dtr_drop or (lambda: None)
        self.on_dtr_rise = on_dtr_rise or (lambda: None)
        self.master: int | None = None
        self.slave_path = ""
        self.dte_open = False
        self.dropped_writes = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._wlock = threading.Lock()

    @property
    def path(self) -> str:
        return self.link or self.slave_path

    def start(self) -> None:
        self._open()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-pty", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)           # all 256 byte values pass, no echo, no CR/LF mapping
        os.set_blocking(master, False)
        self.slave_path = os.ttyname(slave)
        os.close(slave)             # the DTE's open/close must be visible to us
        self.dte_open = False
        self.master = master
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, self.link)

    def unplug(self) -> None:
        """USB unplug: the device node disappears under the DTE."""
        with self._wlock:
            m, self.master = self.master, None
            if self.link:
                try:
                    os.unlink(self.link)
                except FileNotFoundError:
                    pass
            if m is not None:
                os.close(m)
        self.dte_open = False

    def replug(self) -> None:
        with self._wlock:
            if self.master is None:
                self._open()

    def stop(self) -> None:
        self._stop = True
        self.unplug()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def write(self, data: bytes) -> bool:
        """Write to the DTE; data the DTE does not drain is dropped (a modem's buffer overflows)."""
        with self._wlock:
            m = self.master
            if m is None or not data:
                return False
            view = memoryview(data)
            deadline = time.monotonic() + 0.2
            while view:
                try:
                    n = os.write(m, view)
                    view = view[n:]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        self.dropped_writes += 1
                        return False
                    time.sleep(0.002)
                except OSError:
                    return False
            return True

    def _loop(self) -> None:
        poller_for: int | None = None
        poller = select.poll()
        while not self._stop:
            m = self.master
            if m is None:
                time.sleep(0.02)
                continue
            if poller_for != m:
                poller = select.poll()
                poller.register(m, select.POLLIN)
                poller_for = m
            try:
                ev = poller.poll(20)
            except (OSError, ValueError):
                continue
            if not ev:
                if not self.dte_open:
                    self.dte_open = True
                    self.on_dtr_rise()
                continue
            _, flags = ev[0]
            if flags & select.POLLHUP and not flags & select.POLLIN:
                self._dropped()
                time.sleep(0.02)
                continue
            try:
                data = os.read(m, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self._dropped()
                    time.sleep(0.02)
                continue
            if data:
                if not self.dte_open:
                    self.dte_open = True
                    self.on_dtr_rise()
                self.on_bytes(data)

    def _dropped(self) -> None:
        if self.dte_open:
            self.dte_open = False
            self.on_dtr_drop()


class HayesLineCollector:
    """Collects command lines from DTE bytes, echoing each character when echo is on."""

    def __init__(self, echo: Callable[[bytes], None]):
        self.echo_fn = echo
        self.echo = True
        self.buf = bytearray()
        self.dropped = 0          # command lines that had junk before their "AT"

    def feed(self, data: bytes) -> list[str]:
        lines = []
        for b in data:
            if self.echo:
                self.echo_fn(bytes([b]))
            if b == 0x0D:
                # a Hayes parser hunts for "AT": bytes before it (voice data the DTE still sent
                # after leaving voice mode, line noise) are dropped
                raw = bytes(self.buf)
                self.buf.clear()
                tail = raw[max((i for i, c in enumerate(raw) if not 0x20 <= c < 0x7F), default=-1) + 1:]
                text = tail.decode("latin-1").strip()
                at = text.upper().find("AT")
                if at >= 0:
                    lines.append(text[at:])
                    if at > 0 or len(tail) < len(raw.strip()):
                        self.dropped += 1
            elif b == 0x08:
                del self.buf[-1:]
            elif b == 0x0A:
                continue
            elif len(self.buf) < 1024:
                self.buf.append(b)
        return lines


class Scheduler:
    """Timed actions run by the emulator's clock thread (ring cadence, DTMF, call progress)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def at(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), fn))

    def clear(self) -> None:
        with self._lock:
            self._heap.clear()

    def run_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()


class FarEnd:
    """The telephone party at the other end of the line: what it says, what it heard.

    Both streams are indexed by the emulator's own sample clock, so the mouth-to-ear delay of
    the DTE path is `heard index - said index` with no wall clock involved.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._say = bytearray()          # PCM16 queued to speak
        self.said_samples = 0            # samples emitted towards the DTE so far
        self.heard: list[np.ndarray] = []
        self.heard_samples = 0
        self.say_marks: list[int] = []   # said-sample index where each say() began
        self.dtmf_sent = ""
        self.dtmf_heard = ""             # digits the DTE sent (+VTS)
        self.flash_count = 0
        self.transferred_to: str | None = None
        self.dialled = ""
        self.hung_up = False

    def say(self, pcm: np.ndarray) -> None:
        with self._lock:
            self.say_marks.append(self.said_samples + len(self._say) // 2)
            self._say += np.asarray(pcm, dtype="<i2").tobytes()

    def next_frame(self, n: int) -> np.ndarray:
        with self._lock:
            take = bytes(self._say[:2 * n])
            del self._say[:2 * n]
            self.said_samples += n
        out = np.zeros(n, dtype=np.int16)
        if take:
            out[:len(take) // 2] = np.frombuffer(take, dtype="<i2")
        return out

    def hear(self, pcm: np.ndarray) -> None:
        with self._lock:
            self.heard.append(np.asarray(pcm, dtype=np.int16).copy())
            self.heard_samples += len(pcm)

    def heard_audio(self) -> np.ndarray:
        with self._lock:
            return np.concatenate(self.heard) if self.heard else np.zeros(0, dtype=np.int16)


def tone(freq_hz: float, ms: float, amplitude: float = 8000.0, rate: int = 8000) -> np.ndarray:
    """A sine burst (test signal)."""
    t = np.arange(int(rate * ms / 1000)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


class ModemEmulator:
    """What both modem emulators share: the AT pty (and any more ptys the device has), start/stop,
    the wedge/unplug/replug/inject faults, the far end and a clock thread running `_clock_loop`.

    A subclass sets PROFILES and NAME and provides `_on_bytes`, `_on_dtr_drop`, `_power_on`
    (power-up / ATZ / DTR-drop state) and `_clock_loop` (which runs until `_stop`).
    """

    PROFILES: dict = {}
    NAME = "modem"

    def __init__(self, profile: str, link: str | None, *, drift_ppm: float, ring_period_s: float,
                 response_delay_s: float, seed: int, dial_answer_s: float):
        if profile not in self.PROFILES:
            raise ValueError(f"unknown profile {profile!r}: expected one of {sorted(self.PROFILES)}")
        self.profile = self.PROFILES[profile]
        self.drift_ppm, self.ring_period_s = drift_ppm, ring_period_s
        self.response_delay_s, self.dial_answer_s = response_delay_s, dial_answer_s
        self.rng = random.Random(seed)
        self.far = FarEnd()
        self.sched = Scheduler()
        self._lock = threading.RLock()
        self.pty = PtyEndpoint(self._on_bytes, self._on_dtr_drop, self._on_dtr_rise, link=link, name=self.NAME)
        self.lines = HayesLineCollector(self.pty.write)
        self.wedged = False
        self._stop = False

    def _ptys(self) -> list[PtyEndpoint]:
        """Every port of the device, the AT port first."""
        return [self.pty]

    def _on_dtr_rise(self) -> None:
        pass

    # ---- lifecycle -----------------------------------------------------------------
    @property
    def port(self) -> str:
        return self.pty.path

    def start(self):
        for p in self._ptys():
            p.start()
        threading.Thread(target=self._clock_loop, name=f"{self.NAME}-clock", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop = True
        for p in self._ptys():
            p.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- faults ------------------------------------------------------------------------
    def wedge(self) -> None:
        """The modem stops answering (firmware hang) until DTR drops."""
        self.wedged = True

    def unplug(self) -> None:
        """USB unplug: the ports close under the DTE mid-whatever."""
        with self._lock:
            for p in self._ptys():
                p.unplug()
            self.far.hung_up = True
            self._power_on()

    def replug(self) -> None:
        with self._lock:
            self.far = FarEnd()
            self._power_on()
            for p in reversed(self._ptys()):
                p.replug()

    def inject(self, data: bytes) -> None:
        """Stray bytes from the modem (line noise on a real serial link)."""
        self.pty.write(data)
