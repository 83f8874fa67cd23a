# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""ITU-T G.711 µ-law and A-law, bit-exact with the reference (and with sox).

Encoders work on the 14-bit (µ-law) and 13-bit (A-law) values the standard defines; the 16-bit
input is rounded to that width (half up, clipped), exactly as sox does. Decoders return 16-bit
PCM. Encoding is one lookup in a 65,536-entry table per sample.
"""
from libc.stdint cimport int16_t, uint8_t
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef uint8_t ULAW_ENC[65536]   # index: the sample as uint16
cdef uint8_t ALAW_ENC[65536]
cdef int16_t ULAW_DEC[256]
cdef int16_t ALAW_DEC[256]


cdef int _seg(int val, const int *table, int size) noexcept nogil:
    cdef int i
    for i in range(size):
        if val <= table[i]:
            return i
    return size


cdef int _SEG_U[8]
cdef int _SEG_A[8]


cdef uint8_t _lin14_to_ulaw(int pcm) noexcept nogil:
    cdef int mask, seg
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    if pcm > 8159:
        pcm = 8159
    pcm += 0x21  # bias (33) in the 14-bit domain
    seg = _seg(pcm, _SEG_U, 8)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    return <uint8_t>(((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask)


cdef uint8_t _lin13_to_alaw(int pcm) noexcept nogil:
    cdef int mask, seg, aval
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _seg(pcm, _SEG_A, 8)
    if seg >= 8:
        return <uint8_t>(0x7F ^ mask)
    aval = seg << 4
    if seg < 2:
        aval |= (pcm >> 1) & 0x0F
    else:
        aval |= (pcm >> seg) & 0x0F
    return <uint8_t>(aval ^ mask)


cdef int16_t _ulaw_to_lin(uint8_t u) noexcept nogil:
    cdef int t
    u = ~u
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return <int16_t>((0x84 - t) if (u & 0x80) else (t - 0x84))


cdef int16_t _alaw_to_lin(uint8_t a) noexcept nogil:
    cdef int t, seg
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return <int16_t>(t if (a & 0x80) else -t)


cdef void _init_tables() noexcept:
    cdef int i, v
    cdef int su[8]
    cdef int sa[8]
    su[:] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]
    sa[:] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]
    for i in range(8):
        _SEG_U[i] = su[i]
        _SEG_A[i] = sa[i]
    for i in range(65536):
        v = i - 65536 if i >= 32768 else i
        ULAW_ENC[i] = _lin14_to_ulaw(min((v + 2) >> 2, 8191))
        ALAW_ENC[i] = _lin13_to_alaw(min((v + 4) >> 3, 4095))
    for i in range(256):
        ULAW_DEC[i] = _ulaw_to_lin(<uint8_t>i)
        ALAW_DEC[i] = _alaw_to_lin(<uint8_t>i)


_init_tables()


def ulaw_encode(const int16_t[::1] pcm):
    """PCM16 samples (int16 array) -> µ-law bytes."""
    cdef Py_ssize_t i, n = pcm.shape[0]
    out = bytearray(n)
    cdef uint8_t[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ULAW_ENC[<unsigned short>pcm[i]]
    return bytes(out)


def alaw_encode(const int16_t[::1] pcm):
    """PCM16 samples (int16 array) -> A-law bytes."""
    cdef Py_ssize_t i, n = pcm.shape[0]
    out = bytearray(n)
    cdef uint8_t[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ALAW_ENC[<unsigned short>pcm[i]]
    return bytes(out)


def ulaw_decode(const uint8_t[::1] data):
    """µ-law bytes -> int16 numpy array."""
    cdef Py_ssize_t i, n = data.shape[0]
    cdef cnp.ndarray out = np.empty(n, dtype=np.int16)
    cdef int16_t[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ULAW_DEC[data[i]]
    return out


def alaw_decode(const uint8_t[::1] data):
    """A-law bytes -> int16 numpy array."""
    cdef Py_ssize_t i, n = data.shape[0]
    cdef cnp.ndarray out = np.empty(n, dtype=np.int16)
    cdef int16_t[::1] o = out
    with nogil:
        for i in range(n):
            o[i] = ALAW_DEC[data[i]]
    return out
