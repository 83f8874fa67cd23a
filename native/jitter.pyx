# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Adaptive jitter buffer with packet-loss concealment (compiled twin of
appliance/lines/sip/jitter_pure.py; same arithmetic in the same order, see there for the design)."""
from libc.stdint cimport int16_t, int64_t
from libc.string cimport memcpy, memset
import numpy as np
cimport numpy as cnp

cnp.import_array()

DEF HIST_BINS = 32
cdef double FORGET = 0.995
cdef double QUANTILE = 0.95
cdef double BASE_CREEP_MS = 0.05
cdef double PLC_FADE = 0.6
cdef int PLC_MAX = 5

OK, CONCEALED, SILENCE = 0, 1, 2
PUT_OK, PUT_LATE, PUT_DUPLICATE, PUT_RESYNC = 0, 1, 2, 3


cdef class JitterBuffer:
    """put(index, pcm, arrival_ms) from the network; get(out) once per frame from the clock."""
    cdef readonly int frame_samples, capacity_frames, min_frames, max_frames
    cdef readonly double frame_ms
    cdef cnp.ndarray _slots_arr, _index_arr, _last_arr
    cdef int16_t[:, ::1] _slots
    cdef int64_t[::1] _index
    cdef int16_t[::1] _last
    cdef double _hist[HIST_BINS]
    cdef bint _started, _have_base
    cdef int64_t _play, _highest
    cdef double _base
    cdef int _plc_run, _over_ticks
    cdef public int target_frames
    cdef public long received, late, duplicates, concealed, dropped, stretched, resyncs

    def __init__(self, int frame_samples=160, int capacity_frames=64, int min_frames=1,
                 int max_frames=15, double frame_ms=20.0):
        if frame_samples <= 0 or capacity_frames < 4:
            raise ValueError("frame_samples must be > 0 and capacity_frames >= 4")
        if not (0 <= min_frames <= max_frames < capacity_frames):
            raise ValueError("need 0 <= min_frames <= max_frames < capacity_frames")
        self.frame_samples = frame_samples
        self.capacity_frames = capacity_frames
        self.min_frames = min_frames
        self.max_frames = max_frames
        self.frame_ms = frame_ms
        self._slots_arr = np.zeros((capacity_frames, frame_samples), dtype=np.int16)
        self._index_arr = np.full(capacity_frames, -1, dtype=np.int64)
        self._last_arr = np.zeros(frame_samples, dtype=np.int16)
        self._slots = self._slots_arr
        self._index = self._index_arr
        self._last = self._last_arr
        self.reset()

    def reset(self):
        cdef int i
        for i in range(self.capacity_frames):
            self._index[i] = -1
        for i in range(HIST_BINS):
            self._hist[i] = 0.0
        memset(&self._last[0], 0, self.frame_samples * sizeof(int16_t))
        self._started = False
        self._play = 0
        self._highest = -1
        self._base = 0.0
        self._have_base = False
        self._plc_run = 0
        self._over_ticks = 0
        self.target_frames = self.min_frames + 1
        self.received = self.late = self.duplicates = 0
        self.concealed = self.dropped = self.stretched = self.resyncs = 0

    def put(self, int64_t index, const int16_t[::1] pcm, double arrival_ms):
        if pcm.shape[0] != self.frame_samples:
            raise ValueError(f"a frame is {self.frame_samples} samples, got {pcm.shape[0]}")
        cdef double rel = arrival_ms - index * self.frame_ms
        cdef int b, k, ret, slot
        if index < 0:
            self.late += 1
            return PUT_LATE
        if not self._have_base or rel < self._base:
            self._base = rel
            self._have_base = True
        else:
            self._base += BASE_CREEP_MS
        b = <int>((rel - self._base) / self.frame_ms)
        if b < 0:
            b = 0
        if b >= HIST_BINS:
            b = HIST_BINS - 1
        for k in range(HIST_BINS):
            self._hist[k] *= FORGET
        self._hist[b] += 1.0 - FORGET
        self._update_target()
        if self._started and index < self._play:
            self.late += 1
            return PUT_LATE
        if self._started and index >= self._play + self.capacity_frames:
            self._restart()
            ret = PUT_RESYNC
        elif self._highest >= 0 and index <= self._highest - self.capacity_frames:
            self._restart()
            ret = PUT_RESYNC
        else:
            ret = PUT_OK
        slot = <int>(index % self.capacity_frames)
        if self._index[slot] == index:
            self.duplicates += 1
            return PUT_DUPLICATE
        memcpy(&self._slots[slot, 0], &pcm[0], self.frame_samples * sizeof(int16_t))
        self._index[slot] = index
        if index > self._highest:
            self._highest = index
        self.received += 1
        return ret

    cdef void _restart(self):
        cdef int i
        for i in range(self.capacity_frames):
            self._index[i] = -1
        self._started = False
        self._highest = -1
        self.resyncs += 1

    cdef void _update_target(self):
        cdef double total = 0.0, acc = 0.0
        cdef int k, q = 0, t
        for k in range(HIST_BINS):
            total += self._hist[k]
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

    @property
    def buffered_frames(self):
        """Frames between the playout point and the newest frame received (the added delay)."""
        cdef int64_t n
        if not self._started:
            return 0 if self._highest < 0 else 1
        n = self._highest - self._play + 1
        return n if n > 0 else 0

    @property
    def delay_ms(self):
        return self.buffered_frames * self.frame_ms

    cdef int64_t _lowest(self):
        cdef int64_t low = -1, v
        cdef int i
        for i in range(self.capacity_frames):
            v = self._index[i]
            if v >= 0 and (low < 0 or v < low):
                low = v
        return low

    def get(self, int16_t[::1] out):
        """Fill `out` (frame_samples int16) with the next frame. Returns OK, CONCEALED or SILENCE."""
        if out.shape[0] != self.frame_samples:
            raise ValueError(f"a frame is {self.frame_samples} samples, got {out.shape[0]}")
        cdef int n = self.frame_samples, slot, i
        cdef int64_t low, ahead
        if not self._started:
            if self._highest < 0:
                memset(&out[0], 0, n * sizeof(int16_t))
                return SILENCE
            low = self._lowest()
            if low < 0 or self._highest - low + 1 < self.target_frames:
                memset(&out[0], 0, n * sizeof(int16_t))
                return SILENCE
            self._started = True
            self._play = low
        ahead = self._highest - self._play + 1
        if ahead > self.target_frames + 1:
            self._over_ticks += 1
        else:
            self._over_ticks = 0
        if self._over_ticks >= 10:
            self._over_ticks = 0
            slot = <int>(self._play % self.capacity_frames)
            if self._index[slot] == self._play:
                self._index[slot] = -1
            self._play += 1
            self.dropped += 1
        slot = <int>(self._play % self.capacity_frames)
        if self._index[slot] == self._play:
            memcpy(&out[0], &self._slots[slot, 0], n * sizeof(int16_t))
            memcpy(&self._last[0], &self._slots[slot, 0], n * sizeof(int16_t))
            self._index[slot] = -1
            self._play += 1
            self._plc_run = 0
            return OK
        if self._highest < self._play:
            self.stretched += 1
        else:
            self._play += 1
        self.concealed += 1
        self._plc_run += 1
        if self._plc_run > PLC_MAX:
            memset(&out[0], 0, n * sizeof(int16_t))
            memset(&self._last[0], 0, n * sizeof(int16_t))
            if self._highest < self._play:
                self._started = False
        else:
            for i in range(n):
                self._last[i] = <int16_t>(<double>self._last[i] * PLC_FADE)
                out[i] = self._last[i]
        return CONCEALED

    def stats(self):
        return {"received": self.received, "late": self.late, "duplicates": self.duplicates,
                "concealed": self.concealed, "dropped": self.dropped, "stretched": self.stretched,
                "resyncs": self.resyncs, "target_ms": self.target_frames * self.frame_ms,
                "delay_ms": self.delay_ms}
