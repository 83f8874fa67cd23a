# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Single-producer / single-consumer ring buffer of int16 samples.

One thread writes (serial, RTP or sound-device reader), another reads (the asyncio loop).
The hot path takes no lock: positions are monotonic 64-bit counters updated with atomic
loads/stores/CAS (gcc/clang builtins, fine on x86_64 and aarch64). A write never blocks:
on overflow the producer advances the read position past the oldest samples (counted as an
overrun). A reader that raced with such a drop notices that its CAS failed and retries, so it
never returns torn data.
"""
from libc.stdint cimport int16_t, uint64_t
from libc.string cimport memcpy
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t rb_load(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void rb_store(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int rb_cas(uint64_t *p, uint64_t expected, uint64_t desired) {
        return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline void rb_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
    """
    uint64_t rb_load(uint64_t *p) nogil
    void rb_store(uint64_t *p, uint64_t v) nogil
    int rb_cas(uint64_t *p, uint64_t expected, uint64_t desired) nogil
    void rb_add(uint64_t *p, uint64_t v) nogil


cdef inline void _copy_in(int16_t *buf, uint64_t cap, uint64_t pos, const int16_t *src, uint64_t n) noexcept nogil:
    cdef uint64_t start = pos % cap
    cdef uint64_t first = cap - start
    if first > n:
        first = n
    memcpy(buf + start, src, first * sizeof(int16_t))
    if n > first:
        memcpy(buf, src + first, (n - first) * sizeof(int16_t))


cdef inline void _copy_out(const int16_t *buf, uint64_t cap, uint64_t pos, int16_t *dst, uint64_t n) noexcept nogil:
    cdef uint64_t start = pos % cap
    cdef uint64_t first = cap - start
    if first > n:
        first = n
    memcpy(dst, buf + start, first * sizeof(int16_t))
    if n > first:
        memcpy(dst + first, buf, (n - first) * sizeof(int16_t))


cdef class RingBuffer:
    """Fixed-capacity int16 ring buffer; see the module docstring for the threading contract."""
    cdef int16_t[::1] _buf
    cdef uint64_t _cap
    cdef uint64_t _w
    cdef uint64_t _r
    cdef uint64_t _overruns
    cdef uint64_t _underruns

    def __cinit__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive number of samples, got {capacity!r}")
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._cap = capacity
        self._w = 0
        self._r = 0
        self._overruns = 0
        self._underruns = 0

    @property
    def capacity(self):
        return self._cap

    @property
    def overruns(self):
        """Samples dropped (oldest first) because a write found the buffer full."""
        return rb_load(&self._overruns)

    @property
    def underruns(self):
        """Reads that asked for more samples than were buffered."""
        return rb_load(&self._underruns)

    def __len__(self):
        return self.available()

    cpdef Py_ssize_t available(self):
        cdef uint64_t w = rb_load(&self._w)
        cdef uint64_t r = rb_load(&self._r)
        return <Py_ssize_t>(w - r) if w > r else 0

    cpdef Py_ssize_t write(self, const int16_t[::1] samples):
        """Append samples; never blocks. Returns the number of old samples dropped."""
        cdef Py_ssize_t n = samples.shape[0]
        if n == 0:
            return 0
        cdef const int16_t *src = &samples[0]
        cdef int16_t *buf = &self._buf[0]
        cdef uint64_t cap = self._cap
        cdef uint64_t w, r, m, dropped = 0, need
        with nogil:
            m = n
            if m > cap:
                # Only the newest `cap` samples can survive.
                dropped = m - cap
                src = src + dropped
                m = cap
            w = self._w  # producer owns _w
            while True:
                r = rb_load(&self._r)
                if w - r + m <= cap:
                    break
                need = w - r + m - cap
                if rb_cas(&self._r, r, r + need):
                    dropped += need
                    break
            _copy_in(buf, cap, w, src, m)
            rb_store(&self._w, w + m)
            if dropped:
                rb_add(&self._overruns, dropped)
        return <Py_ssize_t>dropped

    cpdef object read(self, Py_ssize_t n):
        """Return exactly n samples as a new int16 array, or None (an underrun) if fewer are buffered."""
        cdef cnp.ndarray out = np.empty(n, dtype=np.int16)
        if self.read_into(out):
            return out
        return None

    cpdef bint read_into(self, int16_t[::1] out):
        """Fill `out` completely and return True, or return False (an underrun) and consume nothing."""
        cdef uint64_t n = out.shape[0]
        if n == 0:
            return True
        if n > self._cap:
            raise ValueError(f"cannot read {n} samples from a ring of capacity {self._cap}")
        cdef int16_t *dst = &out[0]
        cdef int16_t *buf = &self._buf[0]
        cdef uint64_t cap = self._cap
        cdef uint64_t w, r
        cdef bint ok = False
        with nogil:
            while True:
                r = rb_load(&self._r)
                w = rb_load(&self._w)
                if w - r < n:
                    rb_add(&self._underruns, 1)
                    break
                _copy_out(buf, cap, r, dst, n)
                # If the producer dropped old samples meanwhile, our copy may be torn: retry.
                if rb_cas(&self._r, r, r + n):
                    ok = True
                    break
        return ok

    cpdef object peek(self, Py_ssize_t n):
        """Return up to n of the oldest samples without consuming them."""
        cdef uint64_t w, r, avail
        cdef cnp.ndarray out
        cdef int16_t[::1] view
        while True:
            r = rb_load(&self._r)
            w = rb_load(&self._w)
            avail = w - r
            if <uint64_t>n < avail:
                avail = n
            out = np.empty(avail, dtype=np.int16)
            if avail == 0:
                return out
            view = out
            _copy_out(&self._buf[0], self._cap, r, &view[0], avail)
            if rb_load(&self._r) == r:
                return out

    cpdef Py_ssize_t clear(self):
        """Drop everything buffered (consumer side: barge-in flushes playout). Returns samples dropped."""
        cdef uint64_t w, r
        while True:
            r = rb_load(&self._r)
            w = rb_load(&self._w)
            if rb_cas(&self._r, r, w):
                return <Py_ssize_t>(w - r)
