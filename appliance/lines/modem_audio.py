"""Voice data pumps between a V.253 modem and a `Call` (run in the AT channel's reader thread).

Full duplex (+VTR): the modem's 8 kHz crystal is the clock. For every 20 ms frame the modem
sends, one 20 ms frame of agent audio goes back (vgetty's lockstep, MODEMS.md §1.6), after
`prime_frames` of lead. The modem's TX buffer therefore holds a constant lead: no underrun
clicks, no latency creeping up however far its crystal drifts from ours. A `DLE u` (underrun)
re-primes one frame, up to a bound. `ClockStats` measures the drift for health and metrics.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from . import dle, vsm
from .base import Call

SAMPLES_PER_FRAME = 160
FRAME_S = 0.020


class ClockStats:
    """The modem clock's drift relative to ours in ppm (positive: the modem runs fast), from
    frame arrival times against frame index. A frame can arrive late (the host was busy, the
    USB poll came later) but never early, so the fit goes through the earliest arrival of each
    block of BLOCK frames (the lower envelope), which a busy host does not bias; until enough
    blocks exist, a plain least-squares fit of all arrivals is used."""

    WARMUP_FRAMES = 25
    GAP_S = 0.2      # a pause in the stream (leaving +VTR to send DTMF) is cut out of the fit
    BLOCK = 50       # frames per lower-envelope point (1 s)
    MIN_BLOCKS = 5

    def __init__(self) -> None:
        self.frames = 0
        self._t0: float | None = None
        self._n = 0
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self.max_gap_s = 0.0
        self._last: float | None = None
        self._offset = 0.0
        self._blk_min: tuple[float, float] | None = None     # (x, residual) earliest in this block
        self._blk_count = 0
        self._b = [0, 0.0, 0.0, 0.0, 0.0]                   # n, sx, sy, sxx, sxy of block minima

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._last is not None:
            gap = now - self._last
            if gap > self.GAP_S:
                self._offset += gap - FRAME_S
            else:
                self.max_gap_s = max(self.max_gap_s, gap)
        self._last = now
        self.frames += 1
        if self.frames <= self.WARMUP_FRAMES:
            return
        if self._t0 is None:
            self._t0, self._offset = now, 0.0
        x = float(self._n)
        y = now - self._t0 - self._offset
        self._n += 1
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._sxy += x * y
        r = y - x * FRAME_S                      # lateness against the nominal 50 frames/s
        if self._blk_min is None or r < self._blk_min[1]:
            self._blk_min = (x, r)
        self._blk_count += 1
        if self._blk_count == self.BLOCK:
            bx, br = self._blk_min
            b = self._b
            b[0] += 1
            b[1] += bx
            b[2] += br
            b[3] += bx * bx
            b[4] += bx * br
            self._blk_min, self._blk_count = None, 0

    @property
    def last_frame_at(self) -> float | None:
        return self._last

    @property
    def drift_ppm(self) -> float | None:
        nb, sx, sy, sxx, sxy = self._b
        if nb >= self.MIN_BLOCKS:
            den = nb * sxx - sx * sx
            if den > 0:
                slope = FRAME_S + (nb * sxy - sx * sy) / den       # host seconds per modem frame
                if slope > 0:
                    return (FRAME_S / slope - 1.0) * 1e6
        n = self._n
        if n < 100:
            return None
        den = n * self._sxx - self._sx * self._sx
        if den <= 0:
            return None
        slope = (n * self._sxy - self._sx * self._sy) / den       # host seconds per modem frame
        if slope <= 0:
            return None
        return (FRAME_S / slope - 1.0) * 1e6


class VoiceStream:
    """DCE->DTE voice data sink (DataSink for ATChannel). `duplex`: answer each received frame
    with one frame of playout (+VTR); otherwise only receive (+VRX)."""

    MAX_EXTRA_PRIME = 5

    def __init__(self, call: Call, kind: str, write: Callable[[bytes], None],
                 on_events: Callable[[list[str]], None], on_end: Callable[[], None],
                 clock: ClockStats, *, duplex: bool = True, prime_frames: int = 3,
                 ignore_events: str = ""):
        self.call, self.kind, self.write = call, kind, write
        self.on_events, self.on_end, self.clock = on_events, on_end, clock
        self.duplex = duplex
        self.prime_frames = prime_frames
        self.ignore_events = ignore_events
        self.frame_bytes = SAMPLES_PER_FRAME * (2 if kind == "s16le" else 1)
        self.decoder = dle.DLEDecoder()
        self._acc = bytearray()
        self.frames_in = 0
        self.frames_out = 0
        self.underruns = 0
        self.overruns = 0
        self.extra_prime = 0
        self.ended = False
        self.cpu_s = 0.0            # thread CPU spent on DLE framing + codec in this stream

    def prime(self) -> None:
        """Queue the lead before the modem's clock starts pulling."""
        for _ in range(self.prime_frames if self.duplex else 0):
            self._send_frame()

    def stop_tx(self) -> None:
        """No more voice data goes out (the stop code follows: bytes after it would reach the
        modem's command parser). Call with the channel's reader lock held."""
        self.duplex = False

    def _send_frame(self) -> None:
        frame = self.call.next_playout_frame()
        try:
            self.write(dle.shield(vsm.encode(self.kind, frame)))
            self.frames_out += 1
        except Exception:  # noqa: BLE001 - the channel reports a lost port itself
            pass

    def feed(self, data: bytes) -> bytes | None:
        t_cpu = time.thread_time()
        audio, events, rest = self.decoder.feed(data)
        if audio:
            acc = self._acc
            acc += audio
            fb = self.frame_bytes
            while len(acc) >= fb:
                pcm = vsm.decode(self.kind, bytes(acc[:fb]))
                del acc[:fb]
                self.call.rx.write(pcm)
                self.call.rx_written()
                self.frames_in += 1
                self.clock.tick()
                if self.duplex:
                    self._send_frame()
        if events:
            events = [e for e in events if e not in self.ignore_events]
            for e in events:
                if e == "u":
                    self.underruns += 1
                    if self.duplex and self.extra_prime < self.MAX_EXTRA_PRIME:
                        self.extra_prime += 1
                        self._send_frame()
                elif e == "o":
                    self.overruns += 1
            if events:
                self.on_events(events)
        self.cpu_s += time.thread_time() - t_cpu
        if rest is not None:
            self.ended = True
            self.on_end()
            return rest
        return None
