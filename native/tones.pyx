# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Tone analysis on PCM16 frames: a Goertzel filter bank and frame energy."""
from libc.math cimport cos, log10, sqrt, M_PI
from libc.stdint cimport int16_t
import numpy as np
cimport numpy as cnp

cnp.import_array()


def goertzel_bank(const int16_t[::1] frame, const double[::1] freqs_hz, int sample_rate):
    """Normalised power of each frequency over the frame.

    Returns a float64 array; a full-scale sine at exactly that frequency gives about 1.0
    (power is |X(f)|^2 scaled by (2/N)^2 / 32768^2, so it reads as squared amplitude)."""
    cdef Py_ssize_t n = frame.shape[0], k, i, nf = freqs_hz.shape[0]
    cdef cnp.ndarray out = np.empty(nf, dtype=np.float64)
    cdef double[::1] o = out
    cdef double coeff, s0, s1, s2, p, scale
    if n == 0:
        out[:] = 0.0
        return out
    scale = (2.0 / n) * (2.0 / n) / (32768.0 * 32768.0)
    with nogil:
        for k in range(nf):
            coeff = 2.0 * cos(2.0 * M_PI * freqs_hz[k] / sample_rate)
            s1 = 0.0
            s2 = 0.0
            for i in range(n):
                s0 = frame[i] + coeff * s1 - s2
                s2 = s1
                s1 = s0
            p = s1 * s1 + s2 * s2 - coeff * s1 * s2
            o[k] = p * scale
    return out


def energy_dbfs(const int16_t[::1] frame):
    """RMS level of the frame in dBFS (full-scale sine = -3.01 dBFS); -120.0 for digital silence."""
    cdef Py_ssize_t n = frame.shape[0], i
    cdef double acc = 0.0, rms
    if n == 0:
        return -120.0
    with nogil:
        for i in range(n):
            acc += <double>frame[i] * frame[i]
    rms = sqrt(acc / n) / 32768.0
    if rms <= 1e-6:
        return -120.0
    return 20.0 * log10(rms)
