"""Pure-Python twin of native/tones.pyx."""
from __future__ import annotations

import math

import numpy as np


def goertzel_bank(frame, freqs_hz, sample_rate: int) -> np.ndarray:
    samples = [int(s) for s in np.asarray(frame, dtype=np.int16)]
    n = len(samples)
    out = np.zeros(len(freqs_hz), dtype=np.float64)
    if n == 0:
        return out
    scale = (2.0 / n) ** 2 / (32768.0 * 32768.0)
    for k, f in enumerate(freqs_hz):
        coeff = 2.0 * math.cos(2.0 * math.pi * float(f) / sample_rate)
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
        out[k] = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * scale
    return out


def energy_dbfs(frame) -> float:
    samples = [int(s) for s in np.asarray(frame, dtype=np.int16)]
    if not samples:
        return -120.0
    rms = math.sqrt(sum(x * x for x in samples) / len(samples)) / 32768.0
    return -120.0 if rms <= 1e-6 else 20.0 * math.log10(rms)
