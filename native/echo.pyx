# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: libraries = speexdsp
"""Acoustic/line echo cancellation bound to libspeexdsp: the MDF adaptive filter
(speex_echo_cancellation) and, optionally, the preprocessor's residual echo suppression
(and noise suppression) driven by the canceller's state.

The pure twin is appliance/audio/pure/echo.py (a partitioned-block frequency-domain NLMS with the
same contract). Bulk delay alignment lives above both, in appliance/detect/echo.py."""
from libc.stdint cimport int16_t, int32_t
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "speex/speex_echo.h":
    ctypedef struct SpeexEchoState:
        pass
    SpeexEchoState *speex_echo_state_init(int frame_size, int filter_length)
    void speex_echo_state_destroy(SpeexEchoState *st)
    void speex_echo_cancellation(SpeexEchoState *st, const int16_t *rec, const int16_t *play, int16_t *out) nogil
    void speex_echo_state_reset(SpeexEchoState *st)
    int speex_echo_ctl(SpeexEchoState *st, int request, void *ptr)
    int SPEEX_ECHO_SET_SAMPLING_RATE

cdef extern from "speex/speex_preprocess.h":
    ctypedef struct SpeexPreprocessState:
        pass
    SpeexPreprocessState *speex_preprocess_state_init(int frame_size, int sampling_rate)
    void speex_preprocess_state_destroy(SpeexPreprocessState *st)
    int speex_preprocess_run(SpeexPreprocessState *st, int16_t *x) nogil
    int speex_preprocess_ctl(SpeexPreprocessState *st, int request, void *ptr)
    int SPEEX_PREPROCESS_SET_DENOISE
    int SPEEX_PREPROCESS_SET_ECHO_STATE
    int SPEEX_PREPROCESS_SET_ECHO_SUPPRESS
    int SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE


cdef class EchoCanceller:
    """One direction of one call. process(mic, ref) -> cleaned mic, frame_size int16 samples each.

    filter_length: samples of echo tail the adaptive filter models (tail_ms * rate / 1000).
    residual_suppression: run speex's residual echo suppressor after the linear filter.
    denoise: also let the preprocessor suppress stationary noise."""
    cdef SpeexEchoState *_echo
    cdef SpeexPreprocessState *_pre
    cdef readonly int frame_size
    cdef readonly int filter_length
    cdef readonly int sample_rate
    cdef readonly bint residual_suppression
    cdef readonly bint denoise
    cdef cnp.ndarray _linear

    def __cinit__(self, int frame_size, int filter_length, int sample_rate=8000,
                  bint residual_suppression=True, bint denoise=False,
                  int echo_suppress_db=-40, int echo_suppress_active_db=-15):
        if frame_size <= 0 or filter_length < frame_size:
            raise ValueError(f"need 0 < frame_size <= filter_length, got {frame_size}, {filter_length}")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self._echo = speex_echo_state_init(frame_size, filter_length)
        if self._echo == NULL:
            raise MemoryError("speex_echo_state_init failed")
        cdef int rate = sample_rate
        speex_echo_ctl(self._echo, SPEEX_ECHO_SET_SAMPLING_RATE, &rate)
        cdef int flag
        cdef int level
        self._pre = NULL
        if residual_suppression or denoise:
            self._pre = speex_preprocess_state_init(frame_size, sample_rate)
            if self._pre == NULL:
                raise MemoryError("speex_preprocess_state_init failed")
            flag = 1 if denoise else 0
            speex_preprocess_ctl(self._pre, SPEEX_PREPROCESS_SET_DENOISE, &flag)
            if residual_suppression:
                speex_preprocess_ctl(self._pre, SPEEX_PREPROCESS_SET_ECHO_STATE, <void *>self._echo)
                level = echo_suppress_db
                speex_preprocess_ctl(self._pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, &level)
                level = echo_suppress_active_db
                speex_preprocess_ctl(self._pre, SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, &level)
        self.frame_size = frame_size
        self.filter_length = filter_length
        self.sample_rate = sample_rate
        self.residual_suppression = residual_suppression
        self.denoise = denoise
        self._linear = np.zeros(frame_size, dtype=np.int16)

    def __dealloc__(self):
        if self._pre != NULL:
            speex_preprocess_state_destroy(self._pre)
        if self._echo != NULL:
            speex_echo_state_destroy(self._echo)

    def reset(self):
        """Forget the echo path (a new call, or the bulk delay moved)."""
        speex_echo_state_reset(self._echo)

    @property
    def linear_output(self):
        """The last frame after the adaptive filter, before residual suppression."""
        return self._linear.copy()

    def process(self, const int16_t[::1] mic, const int16_t[::1] ref):
        """Cancel the echo of `ref` (what was played) from `mic` (what came back); returns int16."""
        if mic.shape[0] != self.frame_size or ref.shape[0] != self.frame_size:
            raise ValueError(f"echo canceller takes frames of {self.frame_size} samples, got mic {mic.shape[0]}, ref {ref.shape[0]}")
        cdef cnp.ndarray[cnp.int16_t, ndim=1] out = np.empty(self.frame_size, dtype=np.int16)
        cdef int16_t[::1] o = out
        cdef int16_t[::1] lin = self._linear
        cdef int i
        with nogil:
            speex_echo_cancellation(self._echo, &mic[0], &ref[0], &o[0])
            for i in range(self.frame_size):
                lin[i] = o[i]
            if self._pre != NULL:
                speex_preprocess_run(self._pre, &o[0])
        return out
