# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: libraries = speexdsp
"""Streaming sample-rate conversion bound to libspeexdsp's resampler (windowed-sinc,
proper anti-aliasing). One Resampler per direction per call: it keeps filter state between
frames, so consecutive 20 ms frames join without clicks."""
from libc.stdint cimport int16_t, uint32_t
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "speex/speex_resampler.h":
    ctypedef struct SpeexResamplerState:
        pass
    SpeexResamplerState *speex_resampler_init(uint32_t nb_channels, uint32_t in_rate,
                                              uint32_t out_rate, int quality, int *err)
    void speex_resampler_destroy(SpeexResamplerState *st)
    int speex_resampler_process_int(SpeexResamplerState *st, uint32_t channel_index,
                                    const int16_t *inp, uint32_t *in_len,
                                    int16_t *out, uint32_t *out_len) nogil
    int speex_resampler_skip_zeros(SpeexResamplerState *st)
    int speex_resampler_reset_mem(SpeexResamplerState *st)
    int speex_resampler_get_input_latency(SpeexResamplerState *st)
    const char *speex_resampler_strerror(int err)


cdef class Resampler:
    """Mono int16 resampler. quality 0-10 (speex); 5 is a good default for telephony."""
    cdef SpeexResamplerState *_st
    cdef readonly int in_rate
    cdef readonly int out_rate
    cdef readonly int quality

    def __cinit__(self, int in_rate, int out_rate, int quality=5):
        cdef int err = 0
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if not 0 <= quality <= 10:
            raise ValueError(f"resampler quality must be 0..10, got {quality}")
        self._st = speex_resampler_init(1, in_rate, out_rate, quality, &err)
        if self._st == NULL:
            raise RuntimeError(f"speex resampler init failed: {speex_resampler_strerror(err).decode()}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.quality = quality

    def __dealloc__(self):
        if self._st != NULL:
            speex_resampler_destroy(self._st)

    @property
    def latency_samples(self):
        """Input-side delay of the filter, in input samples."""
        return speex_resampler_get_input_latency(self._st)

    def reset(self):
        speex_resampler_reset_mem(self._st)

    def process(self, const int16_t[::1] samples):
        """Resample one chunk; returns an int16 array (length ~ len * out_rate / in_rate)."""
        cdef uint32_t n = samples.shape[0]
        cdef uint32_t cap = <uint32_t>((<unsigned long long>n * self.out_rate) // self.in_rate + 16)
        cdef cnp.ndarray out = np.empty(cap, dtype=np.int16)
        cdef int16_t[::1] o = out
        cdef uint32_t in_len = n, out_len = cap
        cdef int16_t dummy = 0
        cdef const int16_t *src = &samples[0] if n > 0 else &dummy
        with nogil:
            speex_resampler_process_int(self._st, 0, src, &in_len, &o[0], &out_len)
        return out[:out_len]
