"""Pure-Python twin of native/jitter.pyx: an adaptive jitter buffer with loss concealment.

Frames are addressed by index (RTP timestamp / samples per frame, unwrapped by the caller).
The target delay follows the 95th percentile of each packet's relative delay (arrival time minus
its media time, above the fastest packet seen), kept as a histogram with exponential forgetting
(NetEq's idea, much simplified). The playout point moves by whole frames: it holds (stretches by
one concealed frame) when the buffer runs dry and skips a frame when the buffer holds more than
the target, so the added delay tracks the network.

Both implementations run the same arithmetic in the same order; tests check they agree exactly.
"""
from __future__ import annotations

import numpy as np

OK, CONCEALED, SILENCE = 0, 1, 2
PUT_OK, PUT_LATE, PUT_DUPLICATE, PUT_RESYNC = 0, 1, 2, 3

HIST_BINS = 32
FORGET = 0.995           # per packet: the histogram remembers roughly the last 200 packets (4 s)
QUANTILE = 0.95
BASE_CREEP_MS = 0.05     # the fastest-path estimate rises slowly so a route change is followed
PLC_FADE = 0.6           # each concealed frame is the last good one scaled down once more
PLC_MAX = 5              # after this many concealed frames in a row: silence


class JitterBuffer:
    """put(index, pcm, arrival_ms) from the network; get(out) once per frame from the clock."""

    def __init__(self, frame_samples: int = 160, capacity_frames: int = 64, min_frames: int = 1,
                 max_frames: int = 15, frame_ms: float = 20.0):
        if frame_samples <= 0 or capacity_frames < 4:
            raise ValueError("frame_samples must be > 0 and capacity_frames >= 4")
        if not 0 <= min_frames <= max_frames < capacity_frames:
            raise ValueError("need 0 <= min_frames <= max_frames < capacity_frames")
        self.frame_samples = frame_samples
        self.capacity_frames = capacity_frames
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.frame_ms = frame_ms
        self._slots = np.zeros((capacity_frames, frame_samples), dtype=np.int16)
        self._index = np.full(capacity_frames, -1, dtype=np.int64)
        self._last = np.zeros(frame_samples, dtype=np.int16)
        self._hist = np.zeros(HIST_BINS, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self._index[:] = -1
        self._hist[:] = 0.0
        self._last[:] = 0
        self._started = False
        self._play = 0            # index of the next frame to play
        self._highest = -1        # highest index received
        self._base = 0.0          # relative delay of the fastest packet (ms)
        self._have_base = False
        self._plc_run = 0
        self._over_ticks = 0
        self.target_frames = self.min_frames + 1
        self.received = self.late = self.duplicates = 0
        self.concealed = self.dropped = self.stretched = self.resyncs = 0

    # ---- network side --------------------------------------------------------------------
    def put(self, index: int, pcm, arrival_ms: float) -> int:
        if len(pcm) != self.frame_samples:
            raise ValueError(f"a frame is {self.frame_samples} samples, got {len(pcm)}")
        rel = arrival_ms - index * self.frame_ms
        if index < 0:
            self.late += 1
            return PUT_LATE
        if not self._have_base or rel < self._base:
            self._base = rel
            self._have_base = True
        else:
            self._base += BASE_CREEP_MS
        b = int((rel - self._base) / self.frame_ms)
        if b < 0:
            b = 0
        if b >= HIST_BINS:
            b = HIST_BINS - 1
        self._hist *= FORGET
        self._hist[b] += 1.0 - FORGET
        self._update_target()
        if self._started and index < self._play:
            self.late += 1
            return PUT_LATE
        if self._started and index >= self._play + self.capacity_frames:
            self._restart()                    # a jump (new stream, long gap): start over
            ret = PUT_RESYNC
        elif self._highest >= 0 and index <= self._highest - self.capacity_frames:
            self._restart()
            ret = PUT_RESYNC
        else:
            ret = PUT_OK
        slot = index % self.capacity_frames
        if self._index[slot] == index:
            self.duplicates += 1
            return PUT_DUPLICATE
        self._slots[slot, :] = pcm
        self._index[slot] = index
        if index > self._highest:
            self._highest = index
        self.received += 1
        return ret

    def _restart(self) -> None:
        self._index[:] = -1
        self._started = False
        self._highest = -1
        self.resyncs += 1

    def _update_target(self) -> None:
        total = 0.0
        for k in range(HIST_BINS):
            total += self._hist[k]
        acc = 0.0
        q = 0
        for k in range(HIST_BINS):
            acc += self._hist[k]
            q = k
            if acc >= QUANTILE * total:
                break
        t = q + 1
        if t < self.min_frames:
            t = self.min_frames
        if t > self.max_frames:
            t = self.max_frames
        self.target_frames = t

    # ---- clock side ----------------------------------------------------------------------
    @property
    def buffered_frames(self) -> int:
        """Frames between the playout point and the newest frame received (the added delay)."""
        if not self._started:
            return 0 if self._highest < 0 else 1
        n = self._highest - self._play + 1
        return n if n > 0 else 0

    @property
    def delay_ms(self) -> float:
        return self.buffered_frames * self.frame_ms

    def _lowest(self) -> int:
        low = -1
        for i in range(self.capacity_frames):
            v = self._index[i]
            if v >= 0 and (low < 0 or v < low):
                low = v
        return low

    def get(self, out) -> int:
        """Fill `out` (frame_samples int16) with the next frame. Returns OK, CONCEALED or SILENCE."""
        if not self._started:
            if self._highest < 0:
                out[:] = 0
                return SILENCE
            low = self._lowest()
            if low < 0 or self._highest - low + 1 < self.target_frames:
                out[:] = 0
                return SILENCE
            self._started = True
            self._play = low
        # too much buffered for a while: skip one frame (shrink the delay)
        ahead = self._highest - self._play + 1
        if ahead > self.target_frames + 1:
            self._over_ticks += 1
        else:
            self._over_ticks = 0
        if self._over_ticks >= 10:
            self._over_ticks = 0
            slot = self._play % self.capacity_frames
            if self._index[slot] == self._play:
                self._index[slot] = -1
            self._play += 1
            self.dropped += 1
        slot = self._play % self.capacity_frames
        if self._index[slot] == self._play:
            out[:] = self._slots[slot]
            self._last[:] = self._slots[slot]
            self._index[slot] = -1
            self._play += 1
            self._plc_run = 0
            return OK
        # missing: conceal. If nothing newer arrived, hold the playout point (the buffer grows).
        if self._highest < self._play:
            self.stretched += 1
        else:
            self._play += 1
        self.concealed += 1
        self._plc_run += 1
        if self._plc_run > PLC_MAX:
            out[:] = 0
            self._last[:] = 0
            if self._highest < self._play:
                self._started = False     # the far end went quiet: buffer up afresh when it resumes
        else:
            self._last[:] = (self._last.astype(np.float64) * PLC_FADE).astype(np.int16)
            out[:] = self._last
        return CONCEALED

    def stats(self) -> dict:
        return {"received": self.received, "late": self.late, "duplicates": self.duplicates,
                "concealed": self.concealed, "dropped": self.dropped, "stretched": self.stretched,
                "resyncs": self.resyncs, "target_ms": self.target_frames * self.frame_ms,
                "delay_ms": self.delay_ms}
