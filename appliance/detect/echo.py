"""Line echo: cancel the agent's own voice coming back from the line, and never take it for the caller.

Three pieces, used per 20 ms frame in this order:

- `EchoCanceller(tail_ms, sample_rate)`: `process(mic, ref) -> clean`. `ref` is the frame we played
  (the playout reference), `mic` the frame received at the same time. A bulk delay estimator
  (GCC-PHAT between mic and ref over the last second) finds the line's round-trip delay, up to
  `max_delay_ms`, and delays the reference by it so that the adaptive filter only has to model the
  `tail_ms` of dispersion after it. The adaptive filter is libspeexdsp's MDF with its residual echo
  suppressor (`appliance._native.echo`), or its numpy twin (`appliance.audio.pure.echo`) when
  APPLIANCE_NO_EXTENSIONS=1 or the extension is not built.
- `EchoGate`: `update(mic_raw, mic_clean, ref)` every frame, then `speech_is_caller(vad_is_speech)`
  says whether the VAD's speech is the caller (True) or can be explained by our own echo (False).
  Barge-in must use it: echo alone never counts; caller speech over echo (double talk) does.
- `EchoPath`: a simulated line echo (delay, hybrid dispersion, attenuation, noise, G.711) for tests,
  benchmarks and the simulated line.

Measured by `tools/bench_echo.py` (espeak-ng agent voice, delays 20-200 ms, echo return loss 6/12/20
dB, 10 s per case): speex ERLE 23.7-29.2 dB (median 26.2, residual 0.24 % of the echo power against
100 % without a canceller), 21.9 dB or more after double talk; the numpy twin 16.7-21.2 dB. On echo
alone the gate let through no caller frame in any case (the VAD alone: 51 false barge-ins); with the
caller talking over the agent it paused playout 12/12 after P50 160 / P95 200 ms of speech (the VAD
on the caller alone: 180 ms) and the caller lost 0.5 dB through the canceller. Without a canceller
the gate is safe but deaf: no double talk passes unless the caller is louder than our own voice.
"""
from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio import LINE_RATE, SAMPLES_PER_FRAME, ulaw_decode, ulaw_encode
from ..audio.pure import echo as _pure_echo
from .config import EchoConfig

NATIVE_IMPORT_ERROR: str | None = None
try:
    from .._native import echo as _native_echo
except ImportError as exc:   # not built: the twin still works
    _native_echo = None
    NATIVE_IMPORT_ERROR = f"{exc} (build it with `python setup.py build_ext --inplace`)"

FORCED_PURE = os.environ.get("APPLIANCE_NO_EXTENSIONS", "") not in ("", "0")
IMPLEMENTATION = "pure" if (FORCED_PURE or _native_echo is None) else "compiled"


def core_class(implementation: str | None = None):
    """The adaptive filter class: 'compiled' (speex) or 'pure' (numpy); default: the selected one."""
    impl = implementation or IMPLEMENTATION
    if impl == "compiled":
        if _native_echo is None:
            raise ImportError(f"compiled echo canceller unavailable: {NATIVE_IMPORT_ERROR}")
        return _native_echo.EchoCanceller
    if impl == "pure":
        return _pure_echo.EchoCanceller
    raise ValueError(f"unknown implementation {impl!r}: expected 'compiled' or 'pure'")


def _dbfs(x: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (-120 for digital silence)."""
    if len(x) == 0:
        return -120.0
    p = float(np.mean(np.asarray(x, dtype=np.float64) ** 2))
    return 10.0 * math.log10(p / (32768.0 ** 2)) if p > 1e-3 else -120.0


# ---- bulk delay ---------------------------------------------------------------------------------

class DelayEstimator:
    """Round-trip delay of the echo (ms) from GCC-PHAT of mic against ref over the last `window_ms`.

    Re-estimated every `every_frames` frames while we play (`every_frames_locked` once a delay is
    adopted: 25 halves the cost but let a moved path go uncancelled long enough, ~1 s, for the speex
    filter to half-learn it and the gate to take a few frames of it for the caller); a new delay is
    adopted only when two consecutive estimates agree within 2 ms and the correlation peak stands
    out clearly."""

    def __init__(self, max_delay_ms: int = 300, sample_rate: int = LINE_RATE, window_ms: int = 1000,
                 every_frames: int = 10, min_peak_ratio: float = 6.0, every_frames_locked: int = 10):
        self.sample_rate = sample_rate
        self.max_lag = int(max_delay_ms * sample_rate / 1000)
        self.window = int(window_ms * sample_rate / 1000)
        self.every_frames = every_frames
        self.every_frames_locked = every_frames_locked
        self.min_peak_ratio = min_peak_ratio
        n = self.window + self.max_lag
        # the lags searched (0..max_lag) never wrap around once the FFT holds the whole reference
        self._nfft = 1 << (n - 1).bit_length()
        self._ref = np.zeros(n, dtype=np.float64)
        self._mic = np.zeros(self.window, dtype=np.float64)
        self._active = deque(maxlen=max(1, self.window // SAMPLES_PER_FRAME))
        self._frames = 0
        self._candidate: int | None = None
        self.delay_samples: int | None = None
        self.moving = False   # the last clear estimate disagrees with the adopted delay: the path moved
        self.peak_ratio = 0.0

    @property
    def delay_ms(self) -> float | None:
        return None if self.delay_samples is None else 1000.0 * self.delay_samples / self.sample_rate

    def reset(self) -> None:
        self.__init__(self.max_lag * 1000 // self.sample_rate, self.sample_rate,
                      self.window * 1000 // self.sample_rate, self.every_frames, self.min_peak_ratio,
                      self.every_frames_locked)

    def update(self, mic: np.ndarray, ref: np.ndarray) -> bool:
        """Add one frame pair; True when the adopted delay changed on this frame."""
        k = len(mic)
        self._ref[:-k] = self._ref[k:]
        self._ref[-k:] = ref
        self._mic[:-k] = self._mic[k:]
        self._mic[-k:] = mic
        self._active.append(_dbfs(ref) > -50.0)
        self._frames += 1
        every = self.every_frames if self.delay_samples is None else self.every_frames_locked
        if self._frames % every or sum(self._active) < 0.5 * len(self._active) or self.max_lag == 0:
            return False
        return self._estimate()

    def _estimate(self) -> bool:
        R = np.fft.rfft(self._ref, self._nfft)
        M = np.fft.rfft(self._mic, self._nfft)
        cross = M * np.conj(R)
        cross /= np.abs(cross) + 1e-9
        cc = np.fft.irfft(cross, self._nfft)
        # mic[t] ~ ref_window[t + max_lag - d]: lag L = d - max_lag sits at index L mod nfft
        lags = np.arange(-self.max_lag, 1)
        vals = cc[lags % self._nfft]
        best = int(np.argmax(vals))
        spread = float(np.std(vals)) + 1e-12
        self.peak_ratio = float((vals[best] - np.mean(vals)) / spread)
        if self.peak_ratio < self.min_peak_ratio:
            return False
        d = int(lags[best]) + self.max_lag
        self.moving = self.delay_samples is not None and abs(d - self.delay_samples) > 16
        if self._candidate is not None and abs(d - self._candidate) <= 16:
            self._candidate = d
            if self.delay_samples is None or abs(d - self.delay_samples) > 16:
                self.delay_samples = d
                self.moving = False
                return True
        else:
            self._candidate = d
        return False


# ---- canceller ----------------------------------------------------------------------------------

class EchoCanceller:
    """Cancels the echo of what we played (`ref`) from what the line returns (`mic`), 20 ms at a time."""

    def __init__(self, tail_ms: int = 128, sample_rate: int = LINE_RATE, *, max_delay_ms: int | None = None,
                 residual_suppression: bool | None = None, denoise: bool | None = None,
                 config: EchoConfig | None = None, implementation: str | None = None):
        cfg = config or EchoConfig(tail_ms=tail_ms)
        self.config = cfg
        self.tail_ms = tail_ms if config is None else cfg.tail_ms
        self.sample_rate = sample_rate
        self.frame_size = sample_rate * 20 // 1000
        self.max_delay_ms = cfg.max_delay_ms if max_delay_ms is None else max_delay_ms
        rs = cfg.residual_suppression if residual_suppression is None else residual_suppression
        dn = cfg.denoise if denoise is None else denoise
        filter_length = max(self.frame_size, int(self.tail_ms * sample_rate / 1000))
        self.implementation = implementation or IMPLEMENTATION
        self._core = core_class(self.implementation)(self.frame_size, filter_length, sample_rate, rs, dn)
        self._delay = DelayEstimator(self.max_delay_ms, sample_rate)
        # the reference, delayed by the adopted bulk delay (less a margin for pre-echo dispersion)
        self._ref_hist = np.zeros(int(self.max_delay_ms * sample_rate / 1000) + self.frame_size, dtype=np.int16)
        self._shift = 0
        self.frames = 0
        self.generation = 0   # bumped whenever the adaptive filter starts over (the gate relearns)

    @property
    def delay_ms(self) -> float | None:
        """The bulk echo delay found, if any (ms)."""
        return self._delay.delay_ms

    @property
    def path_moving(self) -> bool:
        """The echo's delay seems to have moved and the filter has not caught up yet."""
        return self._delay.moving

    @property
    def linear_output(self) -> np.ndarray:
        return self._core.linear_output

    def reset(self) -> None:
        """A new call: forget the echo path and the delay."""
        self._core.reset()
        self._delay.reset()
        self._ref_hist[:] = 0
        self._shift = 0
        self.frames = 0
        self.generation += 1

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """int16[160] received, int16[160] played at the same time -> int16[160] with the echo removed."""
        mic = np.ascontiguousarray(mic, dtype=np.int16)
        ref = np.ascontiguousarray(ref, dtype=np.int16)
        n = self.frame_size
        if mic.shape != (n,) or ref.shape != (n,):
            raise ValueError(f"echo canceller takes frames of {n} samples, got mic {mic.size}, ref {ref.size}")
        self.frames += 1
        if self.max_delay_ms > 0:
            self._ref_hist[:-n] = self._ref_hist[n:]
            self._ref_hist[-n:] = ref
            if self._delay.update(mic, ref):
                margin = int(0.008 * self.sample_rate)   # keep a little pre-echo inside the filter
                new_shift = max(0, self._delay.delay_samples - margin)
                if new_shift != self._shift:
                    self._shift = new_shift
                    self._core.reset()   # the old filter models a path that moved
                    self.generation += 1
            end = len(self._ref_hist) - self._shift
            ref = np.ascontiguousarray(self._ref_hist[end - n:end])
        return np.asarray(self._core.process(mic, ref), dtype=np.int16)


# ---- gate ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateState:
    """What the gate saw on the last frame (for logs and the timeline)."""

    ref_dbfs: float        # loudest playout in the window the echo can come from
    clean_dbfs: float      # the cleaned mic
    raw_dbfs: float        # the mic before cancellation
    echo_ratio_db: float   # tracked upper level of clean relative to ref while only echo comes back
    threshold_dbfs: float  # clean must exceed this (with VAD speech) to count as the caller
    ref_active: bool
    erle_db: float         # tracked echo return loss enhancement (median raw - clean) while only echo comes back
    coherence: float | None = None   # echo coherence of a frame loud enough to be the caller (see EchoGate)


class EchoGate:
    """Tells the caller's speech from our own echo.

    While nothing was played in the last `max_delay_ms` + tail, VAD speech is the caller's. While we
    play, VAD speech counts only if the cleaned mic is louder than what our echo could explain:
    `ref level + echo ratio + margin`. The echo ratio is the highest (clean - ref) in dB over the last
    `_HISTORY` frames in which we played and the mic did not sound like the caller (a short window, so
    that it follows the canceller as it converges; the highest, so that echo peaks stay under it).
    Until `_MIN_LEARNED` such frames are seen (and again whenever the canceller starts over, e.g. when
    the line's delay moved) it is 0 dB: echo as loud as what we play, so only a caller louder than our
    own voice counts. It drops to the canceller's real residual within about half a second of playout.

    Level alone cannot tell an echo the canceller has stopped cancelling (the line's delay moved, the
    filter is relearning) from the caller. So a frame above the threshold must also be incoherent
    with what we played: the peak normalised cross-correlation of the last 160 ms of cleaned mic with
    the playout over all echo delays must stay under `_COHERENCE` (uncancelled echo measured 0.47-0.74
    on the simulated line, double talk 0.11-0.44, 5th-95th percentiles, tools/bench_echo.py cases).

    After two consecutive frames above the threshold, VAD speech stays the caller's for
    `_HANGOVER_FRAMES` frames even if the level dips under it (syllable gaps under our echo); the
    hangover only extends frames that passed, so echo alone still never counts. `speech_is_caller` keeps no state: it may be asked
    more than once per frame (debounced and raw VAD verdicts)."""

    _HISTORY = 50           # frames (1 s) of echo ratios kept
    _MIN_LEARNED = 25       # frames (0.5 s) of playout before the learned ratio is trusted
    _HANGOVER_FRAMES = 3
    _VAD_LAG_FRAMES = 10    # the VAD still says speech this long (200 ms) after the echo stopped
    _COHERENCE = 0.45
    _COHERENCE_MS = 160

    def __init__(self, config: EchoConfig | None = None, canceller: EchoCanceller | None = None,
                 sample_rate: int = LINE_RATE):
        self.config = config or EchoConfig()
        self.canceller = canceller
        frame_ms = 20
        span = int((self.config.max_delay_ms + (canceller.tail_ms if canceller else self.config.tail_ms)) / frame_ms) + 2
        self._ref_db = deque([-120.0] * span, maxlen=span)
        rate = canceller.sample_rate if canceller is not None else sample_rate
        self._clean_hist = np.zeros(self._COHERENCE_MS * rate // 1000)
        self._ref_hist = np.zeros(span * frame_ms * rate // 1000 + len(self._clean_hist))
        n = len(self._ref_hist) + len(self._clean_hist)
        self._nfft = 1 << (n - 1).bit_length()
        self._ratios: deque[float] = deque(maxlen=self._HISTORY)
        self._erles: deque[float] = deque(maxlen=self._HISTORY)
        self.reset_statistics()
        self.state: GateState | None = None

    def reset_statistics(self) -> None:
        """Forget what the echo looked like (the canceller started over): back to 0 dB."""
        self._ratios.clear()
        self._erles.clear()
        self._ratio_q = 0.0     # highest clean - ref (dB) in recent echo frames
        self._erle_q = 0.0      # median of raw - clean (dB) in echo frames
        self._noise_db = -120.0
        self._hang = 0
        self._above = 0
        self._passed = False
        self._since_active = 10 ** 6
        self._generation = self.canceller.generation if self.canceller is not None else 0

    def reset(self) -> None:
        self._ref_db.extend([-120.0] * self._ref_db.maxlen)
        self._clean_hist[:] = 0
        self._ref_hist[:] = 0
        self.reset_statistics()
        self.state = None

    def _coherence(self) -> float:
        """Peak normalised cross-correlation of the recent cleaned mic with the playout, over every lag
        the echo can have (0..max delay + tail)."""
        c, r = self._clean_hist, self._ref_hist
        w, n = len(c), self._nfft
        xc = np.fft.irfft(np.fft.rfft(r, n) * np.conj(np.fft.rfft(c, n)), n)[:len(r) - w + 1]
        cum = np.concatenate(([0.0], np.cumsum(r * r)))
        seg = cum[w:] - cum[:-w]
        denom = np.sqrt(np.maximum(seg, 0.0) * float(np.dot(c, c))) + 1e-6
        return float(np.max(np.abs(xc) / denom))

    def _ref_window_db(self) -> float:
        """Loudest playout frame that can still be coming back now: around the bulk delay if known."""
        d = self.canceller.delay_ms if self.canceller is not None else None
        hist = list(self._ref_db)          # oldest first; hist[-1] is this frame
        if d is None:
            return max(hist)
        tail = self.canceller.tail_ms if self.canceller else self.config.tail_ms
        lo = int(max(0.0, d - 40.0) // 20)
        hi = int((d + tail + 40.0) // 20) + 1
        sel = hist[max(0, len(hist) - hi):len(hist) - lo]
        return max(sel) if sel else max(hist)

    def update(self, mic_raw: np.ndarray, mic_clean: np.ndarray, ref: np.ndarray) -> None:
        """One frame: what the line returned, the canceller's output, and what we played."""
        cfg = self.config
        if self.canceller is not None and (self.canceller.generation != self._generation
                                           or (self.canceller.path_moving and self._ratios)):
            self.reset_statistics()   # the filter starts over or is about to: echo may be loud again
        self._ref_db.append(_dbfs(ref))
        k = len(ref)
        self._ref_hist[:-k] = self._ref_hist[k:]
        self._ref_hist[-k:] = ref
        self._clean_hist[:-k] = self._clean_hist[k:]
        self._clean_hist[-k:] = mic_clean
        ref_db = self._ref_window_db()
        clean_db = _dbfs(mic_clean)
        raw_db = _dbfs(mic_raw)
        active = ref_db > cfg.ref_active_dbfs
        self._since_active = 0 if active else self._since_active + 1
        # noise floor of the cleaned signal: follows dips at once, rises slowly (1 dB/s)
        self._noise_db = clean_db if clean_db < self._noise_db else self._noise_db + 0.02
        threshold = -120.0
        if not active and self._since_active <= self._VAD_LAG_FRAMES:
            # our echo has stopped but the VAD's window and hangover may still be on it: only sound
            # above the caller floor and the noise counts
            active = True
            threshold = max(cfg.caller_floor_dbfs, self._noise_db + cfg.gate_margin_db)
        elif active:
            threshold = max(cfg.caller_floor_dbfs, self._noise_db + cfg.gate_margin_db,
                            ref_db + self._ratio_q + cfg.gate_margin_db)
            # learn from frames loud enough that the residual is echo, not line noise, and that do not
            # already look like the caller (double talk would teach the gate to ignore the caller)
            if ref_db > cfg.ref_active_dbfs + 15.0 and clean_db <= threshold:
                self._ratios.append(clean_db - ref_db)
                self._erles.append(raw_db - clean_db)
                if len(self._ratios) >= self._MIN_LEARNED:
                    self._ratio_q = min(0.0, max(self._ratios))
                    self._erle_q = float(np.median(self._erles))
        coherence = None
        passed = active and clean_db > threshold
        if passed and self._ratios:   # loud enough for the caller, while echo can be there: is it ours?
            coherence = self._coherence()
            passed = coherence < self._COHERENCE
        self._above = self._above + 1 if passed else 0
        if self._above >= 2:
            self._hang = self._HANGOVER_FRAMES
        elif coherence is not None and not passed:
            self._hang = 0        # our own echo came through: no hangover across it
        else:
            self._hang = max(0, self._hang - 1)
        self._passed = passed
        self.state = GateState(ref_db, clean_db, raw_db, self._ratio_q, threshold, active, self._erle_q, coherence)

    def speech_is_caller(self, vad_is_speech: bool) -> bool:
        """True if the VAD's speech on this frame is the caller's and not only our echo (after `update`)."""
        if not vad_is_speech:
            return False
        st = self.state
        if st is None or not st.ref_active:
            return True
        return self._passed or self._hang > 0


# ---- simulated line echo --------------------------------------------------------------------------

class EchoPath:
    """A line's echo of what we play: bulk delay, a short dispersive hybrid response, attenuation
    (echo return loss, dB), additive noise and G.711 µ-law on the way back. Frame in, frame out."""

    def __init__(self, delay_ms: float = 60.0, erl_db: float = 12.0, noise_dbfs: float = -60.0,
                 ulaw: bool = True, sample_rate: int = LINE_RATE, seed: int = 0):
        rng = np.random.default_rng(seed)
        d = int(delay_ms * sample_rate / 1000)
        # hybrid: a decaying, sign-alternating few-ms response (a band-pass-ish FIR), unit energy
        taps = int(0.006 * sample_rate)
        h = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 4))
        h[0] = abs(h[0]) + 1.0
        h -= h.mean() / 2   # a little DC rejection, as a line transformer does
        h /= np.sqrt(np.sum(h ** 2))
        self.h = np.concatenate((np.zeros(d), h)) * 10.0 ** (-erl_db / 20.0)
        self.noise_rms = 32768.0 * 10.0 ** (noise_dbfs / 20.0)
        self.ulaw = ulaw
        self._hist = np.zeros(len(self.h) - 1)
        self._rng = rng

    def process(self, played: np.ndarray, caller: np.ndarray | None = None) -> np.ndarray:
        """What the mic receives while `played` goes out and the caller says `caller` (both int16)."""
        x = np.asarray(played, dtype=np.float64)
        buf = np.concatenate((self._hist, x))
        echo = np.convolve(buf, self.h, mode="valid")
        self._hist = buf[len(buf) - len(self._hist):] if len(self._hist) else buf[:0]
        y = echo + self._rng.standard_normal(len(x)) * self.noise_rms
        if caller is not None:
            y = y + np.asarray(caller, dtype=np.float64)
        out = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
        return ulaw_decode(ulaw_encode(out)) if self.ulaw else out
