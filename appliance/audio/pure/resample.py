"""Pure-Python/numpy twin of native/resample.pyx: a streaming polyphase windowed-sinc resampler.

Not bit-identical to libspeexdsp (a different filter), but a proper anti-aliasing filter with the
same streaming contract: state is kept between chunks so frames join without clicks."""
from __future__ import annotations

from math import gcd

import numpy as np

_TAPS = 64          # filter length per output-rate period
_ROLLOFF = 0.85     # cut-off as a fraction of the lower Nyquist frequency
_BETA = 8.6         # Kaiser window: ~80 dB stop-band


class Resampler:
    def __init__(self, in_rate: int, out_rate: int, quality: int = 5):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        if not 0 <= quality <= 10:
            raise ValueError(f"resampler quality must be 0..10, got {quality}")
        self.in_rate, self.out_rate, self.quality = in_rate, out_rate, quality
        g = gcd(in_rate, out_rate)
        self._L, self._M = out_rate // g, in_rate // g
        L, M = self._L, self._M
        per_phase = int(np.ceil(_TAPS * max(1.0, M / L)))
        n = per_phase * L
        fc = _ROLLOFF * min(in_rate, out_rate) / 2 / (L * in_rate)  # cycles per upsampled sample
        k = np.arange(n) - (n - 1) / 2
        h = L * 2 * fc * np.sinc(2 * fc * k) * np.kaiser(n, _BETA)
        # phases[p][j] = h[p + j*L]; stored reversed so a dot with ascending input works.
        self._phases = np.ascontiguousarray(h.reshape(per_phase, L).T[:, ::-1])
        self._per_phase = per_phase
        self.reset()

    @property
    def latency_samples(self) -> int:
        return self._per_phase // 2

    def reset(self) -> None:
        self._hist = np.zeros(self._per_phase - 1, dtype=np.float64)
        self._t = 0

    def process(self, samples) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float64)
        n = len(x)
        buf = np.concatenate((self._hist, x))
        L, M, P = self._L, self._M, self._per_phase
        out = []
        t = self._t
        while t // L < n:
            base, phase = divmod(t, L)
            out.append(float(np.dot(self._phases[phase], buf[base:base + P])))
            t += M
        self._t = t - n * L
        self._hist = buf[len(buf) - (P - 1):] if P > 1 else buf[:0]
        y = np.rint(np.asarray(out, dtype=np.float64))
        return np.clip(y, -32768, 32767).astype(np.int16)
