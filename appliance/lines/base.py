"""The one interface every line adapter implements.

A `Line` is a phone line (a SIP account/ATA, a voice modem, a GSM modem, the simulated line).
It produces `Call` objects: inbound ones announced by a RING event, outbound ones from `dial()`.

Audio contract (all lines): 8 kHz mono PCM16, 20 ms frames (160 samples).
- `call.rx`: the line's reader (any thread) writes decoded far-end audio, then calls
  `call.rx_written()`; the session awaits `call.read_frame()`.
- `call.tx`: the session writes agent audio; the line's clock pulls exactly one frame per
  20 ms via `call.next_playout_frame()`, which returns silence when nothing is queued and
  records what was really sent (the echo reference, `call.ref`) and how much agent audio
  actually reached the line (`call.played_samples`: barge-in truncation uses it).
- `call.flush_playout()`: barge-in / hang-up: drop queued agent audio at once.

Events (`LineEvent`) are urgent and never queue behind audio: they arrive on
`line.events()` (line-wide: ring, state) and `call.events` (in-call: dtmf, hangup, transfer).
"""
from __future__ import annotations

import asyncio
import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal

import numpy as np

from ..audio import SAMPLES_PER_FRAME, AudioFrame, RingBuffer
from ..errors import LineError

EventType = Literal[
    "ring",          # inbound call offered: data {caller_id, call}
    "answered",      # call connected (either direction)
    "dtmf",          # data {digit, duration_ms}
    "hangup",        # far end or line ended the call: data {cause}
    "transfer",      # data {target, mode, status: 'trying'|'ok'|'failed', detail}
    "state",         # line state changed: data {state, detail}
    "progress",      # outbound call progress: data {status: 'ringing'|'busy'|'no-answer'|...}
    "metrics",       # line-level call metrics (RTCP loss/jitter, modem drift): data {...}
]
LineState = Literal["down", "idle", "ringing", "in_call", "error"]

_ids = itertools.count(1)


@dataclass(frozen=True)
class LineEvent:
    type: EventType
    data: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LineCapabilities:
    full_duplex: bool = True       # False: barge-in impossible (half-duplex voice modem)
    caller_id: bool = True
    dtmf_in: bool = True
    dtmf_out: bool = True
    transfer_blind: bool = False
    transfer_warm: bool = False
    outbound: bool = True


class Call(ABC):
    """One call on a line. Subclasses implement the line-specific actions."""

    #: capacity of rx/tx rings in samples (10 s): enough for a whole TTS sentence queued ahead.
    RING_SAMPLES = 8000 * 10

    def __init__(self, line: Line, direction: Literal["inbound", "outbound"], remote: str = "",
                 call_id: str | None = None, loop: asyncio.AbstractEventLoop | None = None):
        self.line = line
        self.direction = direction
        self.remote = remote                     # caller id (inbound) or dialled number (outbound)
        self.call_id = call_id or f"{line.name}-{int(time.time())}-{next(_ids)}"
        self.rx = RingBuffer(self.RING_SAMPLES)
        self.tx = RingBuffer(self.RING_SAMPLES)
        self.ref = RingBuffer(self.RING_SAMPLES)  # what was really sent, frame-aligned with rx
        self.events: asyncio.Queue[LineEvent] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.end_cause: str | None = None
        self.answered_at: float | None = None
        self.played_samples = 0        # agent (non-silence) samples that reached the line
        self.sent_frames = 0           # every frame clocked out, silence included
        self.playout_underruns = 0     # frames that had only part of a frame queued (a click)
        self._loop = loop or asyncio.get_event_loop()
        self._rx_ready = asyncio.Event()
        self._rx_frame = np.empty(SAMPLES_PER_FRAME, dtype=np.int16)
        self._frames_read = 0

    # ---- audio, line side -------------------------------------------------------------
    def rx_written(self) -> None:
        """Called by the line after writing to rx, from any thread."""
        if asyncio._get_running_loop() is self._loop:  # on the loop (RTP): no self-pipe wake-up
            self._rx_ready.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._rx_ready.set)
        except RuntimeError:  # loop closed at shutdown
            pass

    def next_playout_frame(self) -> np.ndarray:
        """The line's clock takes one 20 ms frame of agent audio (silence if none)."""
        frame = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        avail = self.tx.available()
        if avail >= SAMPLES_PER_FRAME:
            self.tx.read_into(frame)
            self.played_samples += SAMPLES_PER_FRAME
        elif avail > 0:
            part = self.tx.read(avail)
            if part is not None:
                frame[:len(part)] = part
                self.played_samples += len(part)
                self.playout_underruns += 1
        self.ref.write(frame)
        self.sent_frames += 1
        return frame

    # ---- audio, session side ----------------------------------------------------------
    async def read_frame(self, timeout: float | None = None) -> AudioFrame | None:
        """Next 20 ms of far-end audio, or None once the call has ended."""
        while True:
            if self.rx.read_into(self._rx_frame):
                ts = self._frames_read * 20.0
                self._frames_read += 1
                return AudioFrame(self._rx_frame.copy(), 8000, ts)
            if self.ended.is_set():
                return None
            self._rx_ready.clear()
            if self.rx.available() >= SAMPLES_PER_FRAME:
                continue
            # mark_ended() sets _rx_ready too, so one event covers both. asyncio.timeout, not
            # wait_for: on 3.11 wait_for wraps the wait in a new Task, one per 20 ms frame.
            if timeout is None:
                await self._rx_ready.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await self._rx_ready.wait()
                except TimeoutError:
                    raise TimeoutError(f"no audio from the line within {timeout:g} s") from None

    def read_reference(self) -> np.ndarray | None:
        """The 20 ms of agent audio sent while the matching rx frame was received (echo reference)."""
        return self.ref.read(SAMPLES_PER_FRAME)

    def play(self, pcm: np.ndarray) -> None:
        """Queue agent audio (8 kHz PCM16) for playout."""
        self.tx.write(np.ascontiguousarray(pcm, dtype=np.int16))

    def flush_playout(self) -> int:
        """Drop queued agent audio at once (barge-in, hang-up). Returns samples dropped."""
        return self.tx.clear()

    @property
    def queued_playout_ms(self) -> float:
        return self.tx.available() / 8.0

    # ---- control ----------------------------------------------------------------------
    def mark_ended(self, cause: str) -> None:
        """Line side: the call is over (far-end hang-up, line loss). Idempotent."""
        if self.ended.is_set():
            return
        self.end_cause = cause
        self.ended.set()
        self.events.put_nowait(LineEvent("hangup", {"cause": cause}, self.call_id))
        self._rx_ready.set()

    @abstractmethod
    async def answer(self) -> None:
        """Take an inbound call off hook."""

    @abstractmethod
    async def hangup(self, cause: str = "local") -> None:
        """End the call from our side. Must be safe to call twice and after a remote hang-up."""

    async def send_dtmf(self, digits: str) -> None:
        raise LineError(f"{self.line.name}: this line cannot send DTMF")

    async def transfer(self, target: str, mode: Literal["blind", "warm"] = "blind",
                       briefing: str | None = None) -> bool:
        """Hand the call to `target` (a number or SIP URI). Returns True once the line reports
        success; the call normally ends afterwards. Lines without transfer raise LineError."""
        raise LineError(f"{self.line.name}: this line cannot transfer calls")


class Line(ABC):
    """A phone line. `start()` brings it up; `events()` yields ring/state events."""

    capabilities = LineCapabilities()

    def __init__(self, name: str):
        self.name = name
        self.state: LineState = "down"
        self._events: asyncio.Queue[LineEvent] = asyncio.Queue()

    def set_state(self, state: LineState, detail: str = "") -> None:
        if state != self.state:
            self.state = state
            self._events.put_nowait(LineEvent("state", {"state": state, "detail": detail}))

    async def events(self) -> AsyncIterator[LineEvent]:
        while True:
            yield await self._events.get()

    def emit(self, event: LineEvent) -> None:
        self._events.put_nowait(event)

    @abstractmethod
    async def start(self) -> None:
        """Open the device / bind sockets / register. Raise LineError with a clear reason."""

    @abstractmethod
    async def stop(self) -> None:
        """End calls and release the device. Safe to call twice."""

    @abstractmethod
    async def dial(self, number: str, timeout_s: float = 60.0) -> Call:
        """Place a call; returns once answered. Raises LineError('busy'|'no-answer'|...)."""

    def health(self) -> dict[str, Any]:
        """Line facts for the health report (state, signal, registration, ...)."""
        return {"name": self.name, "state": self.state}
