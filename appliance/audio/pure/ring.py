"""Pure-Python twin of native/ring.pyx (same contract; a lock instead of atomics)."""
from __future__ import annotations

import threading

import numpy as np


class RingBuffer:
    """Fixed-capacity int16 ring: writes never block (oldest samples dropped on overflow),
    reads return exactly N samples or nothing."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity!r}")
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._cap = capacity
        self._w = 0
        self._r = 0
        self._overruns = 0
        self._underruns = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def overruns(self) -> int:
        return self._overruns

    @property
    def underruns(self) -> int:
        return self._underruns

    def __len__(self) -> int:
        return self.available()

    def available(self) -> int:
        return self._w - self._r

    def _copy_in(self, pos: int, src: np.ndarray) -> None:
        start = pos % self._cap
        first = min(self._cap - start, len(src))
        self._buf[start:start + first] = src[:first]
        if len(src) > first:
            self._buf[:len(src) - first] = src[first:]

    def _copy_out(self, pos: int, n: int) -> np.ndarray:
        start = pos % self._cap
        first = min(self._cap - start, n)
        if first == n:
            return self._buf[start:start + n].copy()
        return np.concatenate((self._buf[start:start + first], self._buf[:n - first]))

    def write(self, samples) -> int:
        src = np.asarray(samples, dtype=np.int16)
        n = len(src)
        if n == 0:
            return 0
        dropped = 0
        if n > self._cap:
            dropped = n - self._cap
            src = src[dropped:]
            n = self._cap
        with self._lock:
            excess = self._w - self._r + n - self._cap
            if excess > 0:
                self._r += excess
                dropped += excess
            self._copy_in(self._w, src)
            self._w += n
            self._overruns += dropped
        return dropped

    def read(self, n: int):
        out = np.empty(n, dtype=np.int16)
        return out if self.read_into(out) else None

    def read_into(self, out) -> bool:
        n = len(out)
        if n == 0:
            return True
        if n > self._cap:
            raise ValueError(f"cannot read {n} samples from a ring of capacity {self._cap}")
        with self._lock:
            if self._w - self._r < n:
                self._underruns += 1
                return False
            out[:] = self._copy_out(self._r, n)
            self._r += n
        return True

    def peek(self, n: int) -> np.ndarray:
        with self._lock:
            return self._copy_out(self._r, min(n, self._w - self._r))

    def clear(self) -> int:
        with self._lock:
            dropped = self._w - self._r
            self._r = self._w
        return dropped
