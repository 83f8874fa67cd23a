"""Pure numpy twin of native/echo.pyx: a partitioned-block frequency-domain NLMS echo canceller.

Same contract as the speex binding (frame in, frame out, `reset`, `linear_output`), not the same
numbers: speex's MDF adds its own step-size control. This one is a PBFDAF (one partition per frame,
overlap-save, gradient constraint, per-bin power normalisation) run as two filters: the background
filter adapts on every frame, the foreground filter (the one whose output is used) copies it only
while it cancels better, and the background falls back to the foreground when it diverges (double
talk). Neither filter learns while an adaptive Geigel test says double talk (the mic louder than
the loudest echo seen for what we played): without it a caller talking over a weak echo dragged
the filter off (ERLE after double talk -4.9 dB at 20 ms / 20 dB ERL in tools/bench_echo.py; 34 dB
with it). Residual echo suppression is a frame gain from the echo estimate's share of the residual.
"""
from __future__ import annotations

import numpy as np

_MU = 0.35            # NLMS step
_POWER_SMOOTH = 0.6   # per-bin input power smoothing (per frame)
_ERR_SMOOTH = 0.7     # error power smoothing for the two-path decision
_LEAK = 0.35          # residual echo as a share of the echo estimate, for the suppressor
_ERL_DECAY = 0.98     # per frame: the double-talk test's echo level forgets old peaks in ~1 s


class EchoCanceller:
    """process(mic, ref) -> cleaned mic, frame_size int16 samples each (see native/echo.pyx)."""

    def __init__(self, frame_size: int, filter_length: int, sample_rate: int = 8000,
                 residual_suppression: bool = True, denoise: bool = False,
                 echo_suppress_db: int = -40, echo_suppress_active_db: int = -15):
        if frame_size <= 0 or filter_length < frame_size:
            raise ValueError(f"need 0 < frame_size <= filter_length, got {frame_size}, {filter_length}")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self.frame_size = frame_size
        self.filter_length = filter_length
        self.sample_rate = sample_rate
        self.residual_suppression = residual_suppression
        self.denoise = denoise   # accepted for parity; the twin does not denoise
        self._floor = 10.0 ** (echo_suppress_db / 20.0)
        self._partitions = -(-filter_length // frame_size)
        self.reset()

    def reset(self) -> None:
        n, k = self.frame_size, self._partitions
        self._x_prev = np.zeros(n)
        self._X = np.zeros((k, n + 1), dtype=np.complex128)        # newest partition first
        self._W_bg = np.zeros((k, n + 1), dtype=np.complex128)
        self._W_fg = np.zeros((k, n + 1), dtype=np.complex128)
        self._P = np.full(n + 1, 1.0)
        self._e_bg = self._e_fg = 1.0
        self._better_frames = 0
        self._gain = 1.0
        self._ref_pows = [0.0] * (self._partitions + 1)
        self._erl_max = 1.0        # highest mic/ref power ratio seen without double talk (starts at 0 dB)
        self.double_talk = False
        self._linear = np.zeros(n, dtype=np.int16)

    @property
    def linear_output(self) -> np.ndarray:
        return self._linear.copy()

    def _filter(self, W: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.fft.irfft((W * self._X).sum(axis=0))[self.frame_size:]
        return d - y, y

    def process(self, mic, ref) -> np.ndarray:
        n = self.frame_size
        d = np.asarray(mic, dtype=np.float64)
        x = np.asarray(ref, dtype=np.float64)
        if d.shape != (n,) or x.shape != (n,):
            raise ValueError(f"echo canceller takes frames of {n} samples, got mic {d.size}, ref {x.size}")
        self._X = np.roll(self._X, 1, axis=0)
        self._X[0] = np.fft.rfft(np.concatenate((self._x_prev, x)))
        self._x_prev = x

        e_fg, y_fg = self._filter(self._W_fg, d)
        e_bg, _ = self._filter(self._W_bg, d)

        # NLMS update of the background filter, normalised per bin by the far-end power
        self._P = _POWER_SMOOTH * self._P + (1 - _POWER_SMOOTH) * (np.abs(self._X[0]) ** 2)
        ref_power = float(np.dot(x, x)) / n
        # double talk: the mic louder than the loudest echo seen for what we played in the filter's
        # span (an adaptive Geigel test). Then neither filter learns: the caller is not echo.
        self._ref_pows = [ref_power] + self._ref_pows[:-1]
        ref_win = max(self._ref_pows)
        self.double_talk = False
        if ref_win > 1e3:
            ratio = float(np.dot(d, d)) / n / ref_win
            self.double_talk = ratio > 2.0 * self._erl_max
            if not self.double_talk:
                self._erl_max = max(ratio, self._erl_max * _ERL_DECAY)
        if ref_power > 1.0 and not self.double_talk:   # nothing to learn from silence or the caller
            E = np.fft.rfft(np.concatenate((np.zeros(n), e_bg)))
            norm = self._partitions * self._P + 1e-3 * (2 * n) ** 2 + 1e3
            G = _MU * np.conj(self._X) * (E / norm)
            g = np.fft.irfft(G, axis=1)
            g[:, n:] = 0.0                    # gradient constraint: keep the filter causal and linear
            self._W_bg += np.fft.rfft(g, axis=1)

        # two-path control: adopt the background filter when it is steadily better, undo it if it diverged
        pd = float(np.dot(d, d)) + 1.0
        self._e_fg = _ERR_SMOOTH * self._e_fg + (1 - _ERR_SMOOTH) * float(np.dot(e_fg, e_fg))
        self._e_bg = _ERR_SMOOTH * self._e_bg + (1 - _ERR_SMOOTH) * float(np.dot(e_bg, e_bg))
        if self._e_bg < 0.9 * self._e_fg and not self.double_talk:
            self._better_frames += 1
            if self._better_frames >= 2:
                self._W_fg = self._W_bg.copy()
                self._e_fg = self._e_bg
        else:
            self._better_frames = 0
            if self._e_bg > 4.0 * self._e_fg and self._e_bg > 0.5 * pd:
                self._W_bg = self._W_fg.copy()
                self._e_bg = self._e_fg

        out = e_fg
        self._linear = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        if self.residual_suppression:
            # share of the residual that is probably echo: leak * echo estimate vs what is left
            echo = _LEAK * float(np.dot(y_fg, y_fg))
            resid = float(np.dot(out, out)) + 1.0
            target = max(self._floor, 1.0 - echo / resid)
            # fast attack, slower release, so the caller's first syllable is not swallowed
            self._gain = target if target < self._gain else 0.5 * self._gain + 0.5 * target
            out = out * self._gain
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)
