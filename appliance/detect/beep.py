"""Voicemail beep detection on 20 ms frames, with the native Goertzel bank.

A frame is *tonal* when one or two spectral peaks (400–2100 Hz) hold most of its power. A run of
tonal frames at a stable frequency is a tone piece; pieces separated by short gaps form a sequence
(single beeps, dual-tone beeps, and short multi-tone jingles such as "boo-dee-beep"). A sequence is
a beep when its tone time is between `beep_min_ms` and `beep_max_ms` (longer tonal runs are music)
and its pieces hold a steady level (a voice that is briefly tonal swells and fades).

Sung or sustained vowels are harmonic: their power is spread over many harmonics of a low
fundamental, so no one or two peaks hold most of it and the frames are not tonal. Music is caught
by the same purity test (chords, timbres with overtones) and, for pure-tone melodies, by length.

The end of a beep is refined below frame resolution: the frame in which the tone stops still
carries it for part of its length, and the Goertzel power at the tone frequency grows with the
square of that part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..audio import goertzel_bank

FRAME_MS = 20
# The analysis grid: 25 Hz steps over the band where voicemail beeps live, plus the band below
# so the power of low fundamentals (voices) counts against purity.
GRID_HZ = np.arange(100.0, 2200.0 + 1e-9, 25.0)
BEEP_LO_HZ, BEEP_HI_HZ = 375.0, 2150.0
_BEEP_MASK = (GRID_HZ >= BEEP_LO_HZ) & (GRID_HZ <= BEEP_HI_HZ)
_FULL_SCALE_SQ = 32768.0 * 32768.0
# A beep holds its level; speech that happens to be tonal for a moment swells and fades.
STEADY_DB = 1.5


@dataclass(frozen=True, slots=True)
class ToneFrame:
    """Analysis of one frame: the strongest peak, an optional second peak, and purity."""

    level_dbfs: float
    f1_hz: float
    f2_hz: float | None
    purity: float          # share of the frame's power in the one or two peaks
    tonal: bool


@dataclass
class ToneSegment:
    """A finished tone sequence; times are audio ms from the start of the stream."""

    start_ms: float
    end_ms: float
    tone_ms: float                          # time actually tonal (sum of its pieces)
    freqs_hz: list[tuple[float, ...]] = field(default_factory=list)   # per piece: (f1,) or (f1, f2)
    pieces_ms: list[tuple[float, float]] = field(default_factory=list)
    steady: list[bool | None] = field(default_factory=list)   # per piece; None: too short to judge

    @property
    def is_beep_like(self) -> bool:
        """Shaped like a beep: steady pieces, and distinct notes rather than a glide.

        Every piece long enough to judge holds a steady level (and one at least could be judged);
        in a multi-tone sequence every piece lasts 50 ms or more and each note differs from the
        one before by more than 60 Hz (a voice glides through neighbouring frequencies)."""
        judged = [s for s in self.steady if s is not None]
        if not judged or not all(judged):
            return False
        if len(self.freqs_hz) > 1:
            if any(e - s < 50.0 for s, e in self.pieces_ms):
                return False
            for a, b in zip(self.freqs_hz, self.freqs_hz[1:], strict=False):
                if any(abs(fa - fb) <= 60.0 for fa in a for fb in b):
                    return False
        return True

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


def analyse_frame(frame: np.ndarray, sample_rate: int = 8000, purity_min: float = 0.6) -> ToneFrame:
    """Tone analysis of one PCM16 frame (20 ms at 8 kHz)."""
    x = np.ascontiguousarray(frame, dtype=np.int16)
    ms = float(np.dot(x.astype(np.float64), x.astype(np.float64))) / max(1, len(x))
    level = 10.0 * math.log10(ms / _FULL_SCALE_SQ) if ms > 1.0 else -120.0
    if level < -50.0:
        return ToneFrame(level, 0.0, None, 0.0, False)
    # Goertzel output reads as squared amplitude; a sine of amplitude A has mean square A^2/2.
    total = 2.0 * ms / _FULL_SCALE_SQ
    power = goertzel_bank(x, GRID_HZ, sample_rate)
    band = np.where(_BEEP_MASK, power, 0.0)
    i1 = int(np.argmax(band))
    p1 = float(band[i1])
    # Second peak: outside the first peak's main lobe (±75 Hz at 20 ms).
    masked = band.copy()
    masked[max(0, i1 - 3): i1 + 4] = 0.0
    i2 = int(np.argmax(masked))
    p2 = float(masked[i2])
    single = p1 / total
    dual = (p1 + p2) / total
    f2: float | None = None
    purity = single
    if p2 >= 0.2 * p1 and dual > single + 0.15:
        purity, f2 = dual, float(GRID_HZ[i2])
    tonal = purity >= purity_min and not _harmonic(x, float(GRID_HZ[i1]), float(np.median(power)), f2, sample_rate)
    return ToneFrame(level, float(GRID_HZ[i1]), f2, min(purity, 1.5), tonal)


def _harmonic(x: np.ndarray, f1: float, noise_p: float, f2: float | None, sample_rate: int) -> bool:
    """True if the peak at f1 looks like one harmonic of a voice or instrument.

    If f1 = k·f0 for a small k, the neighbouring harmonics (k±1)·f0 carry power too; a beep's
    neighbours are empty (G.711 distortion stays below -30 dB). Only neighbours in the phone band
    (>= 280 Hz) count, and only above the frame's noise floor (`noise_p`, the median bin power):
    line noise is strongest down there and the band edge removes a voice's fundamental anyway."""
    cands = []
    for k in (1, 2, 3, 4):
        for m in (k - 1, k + 1):
            f = f1 * m / k
            if 280.0 <= f <= 0.45 * sample_rate and abs(f - f1) > 105.0 and (f2 is None or abs(f - f2) > 105.0):
                cands.append(f)
    if not cands:
        return False
    # Hann window: its sidelobes (-31 dB) stay well under the -14 dB threshold, so a pure
    # tone's own leakage never reads as a neighbouring harmonic.
    xw = np.ascontiguousarray(x * _hann(len(x)), dtype=np.int16)
    p = goertzel_bank(xw, np.array([f1, *cands], dtype=np.float64), sample_rate)
    return bool(np.max(p[1:]) >= max(0.04 * p[0], 4.0 * noise_p))


_HANN: dict[int, np.ndarray] = {}


def _hann(n: int) -> np.ndarray:
    if n not in _HANN:
        _HANN[n] = np.hanning(n + 2)[1:-1]
    return _HANN[n]


def _same_tone(a: ToneFrame, b: ToneFrame, tol_hz: float = 25.0) -> bool:
    fa = sorted(f for f in (a.f1_hz, a.f2_hz) if f is not None)
    fb = sorted(f for f in (b.f1_hz, b.f2_hz) if f is not None)
    if abs(fa[0] - fb[0]) <= tol_hz or (len(fb) > 1 and abs(fa[0] - fb[1]) <= tol_hz):
        return True
    return len(fa) > 1 and any(abs(fa[1] - f) <= tol_hz for f in fb)


class BeepDetector:
    """Streaming beep detector. `feed(frame)` returns a `ToneSegment` once a beep has ended.

    Frames are 20 ms of PCM16 at `sample_rate` (8 kHz on a line). `min_tone_ms` counts tonal
    time over the whole sequence; `gap_ms` is the longest silence allowed inside a sequence.
    `last_sequence` holds every tonal sequence that ended (beep or not), for tone classifiers.
    """

    def __init__(self, sample_rate: int = 8000, *, min_tone_ms: float = 130.0, max_tone_ms: float = 2500.0,
                 gap_ms: float = 80.0, purity_min: float = 0.6):
        self.sample_rate = sample_rate
        self.min_tone_ms = min_tone_ms
        self.max_tone_ms = max_tone_ms
        self.gap_ms = gap_ms
        self.purity_min = purity_min
        self.t_ms = 0.0
        self.last_sequence: ToneSegment | None = None
        self._seq: ToneSegment | None = None
        self._piece_ref: ToneFrame | None = None
        self._piece_start = 0.0
        self._piece_power = 0.0        # mean Goertzel power of the piece's tone frames, for refinement
        self._piece_frames = 0
        self._piece_ps: list[float] = []
        self._last_p = 0.0
        self._last_start = 0.0
        self._last_tonal_end = 0.0
        self._pending_end: float | None = None
        self._prev_frame: np.ndarray | None = None
        self._prev_tonal = False

    @property
    def in_tone(self) -> bool:
        """True while a tonal sequence is open (the AMD excludes those frames from speech)."""
        return self._seq is not None

    def _refine(self, frame: np.ndarray, ref: ToneFrame, mean_power: float) -> float:
        """Fraction (0..1) of `frame` that still carries the tone `ref`."""
        if mean_power <= 0.0:
            return 0.0
        freqs = np.array([f for f in (ref.f1_hz, ref.f2_hz) if f is not None], dtype=np.float64)
        p = float(np.sum(goertzel_bank(np.ascontiguousarray(frame, dtype=np.int16), freqs, self.sample_rate)))
        return float(min(1.0, math.sqrt(max(0.0, p / mean_power))))

    def _piece_end(self, frame: np.ndarray, start: float) -> float:
        """End time of the open piece, given the first non-tonal frame after it (which starts at `start`)."""
        frame_ms = 1000.0 * len(frame) / self.sample_rate
        mean = self._piece_power / max(1, self._piece_frames)
        frac = self._refine(frame, self._piece_ref, mean)
        if frac < 0.15 and self._piece_frames >= 3:
            # The tone may have stopped inside the last tonal frame already.
            mean_before = (self._piece_power - self._last_p) / (self._piece_frames - 1)
            frac_last = math.sqrt(max(0.0, self._last_p / mean_before)) if mean_before > 0 else 1.0
            if frac_last < 0.95:
                return self._last_start + frac_last * frame_ms
        return start + frac * frame_ms

    def _close_piece(self, end_ms: float) -> None:
        assert self._seq is not None and self._piece_ref is not None
        ref = self._piece_ref
        freqs = (ref.f1_hz,) if ref.f2_hz is None else (ref.f1_hz, ref.f2_hz)
        self._seq.freqs_hz.append(freqs)
        self._seq.pieces_ms.append((self._piece_start, end_ms))
        inner = self._piece_ps[1:-1]
        self._seq.steady.append(_steady(inner))
        self._seq.tone_ms += end_ms - self._piece_start
        self._seq.end_ms = end_ms
        self._piece_ref = None
        self._pending_end = None

    def feed(self, frame: np.ndarray) -> ToneSegment | None:
        """Analyse one frame; return the beep that just ended, if one did."""
        start = self.t_ms
        n = len(frame)
        self.t_ms += 1000.0 * n / self.sample_rate
        tf = analyse_frame(frame, self.sample_rate, self.purity_min)
        p_ref = 0.0
        result = None
        if tf.tonal:
            if self._piece_ref is not None and (self._pending_end is not None or not _same_tone(self._piece_ref, tf)):
                # A new note of a multi-tone sequence, or the same note after a real break.
                self._close_piece(self._pending_end if self._pending_end is not None else start)
            if self._piece_ref is None:
                if self._seq is None:
                    # Refine the start with the previous, partly tonal frame.
                    lead = 0.0
                    if self._prev_frame is not None and not self._prev_tonal:
                        lead = self._refine(self._prev_frame, tf, tf_power(frame, tf, self.sample_rate))
                    s = start - lead * 1000.0 * n / self.sample_rate
                    self._seq = ToneSegment(start_ms=s, end_ms=s, tone_ms=0.0)
                    self._piece_start = s
                else:
                    self._piece_start = start
                self._piece_ref = tf
                self._piece_power = 0.0
                self._piece_frames = 0
                self._piece_ps = []
            p_ref = tf_power(frame, self._piece_ref, self.sample_rate)
            self._piece_power += p_ref
            self._piece_frames += 1
            self._piece_ps.append(p_ref)
            self._last_p, self._last_start = p_ref, start
            self._last_tonal_end = self.t_ms
            if self._seq.tone_ms + (self.t_ms - self._piece_start) > self.max_tone_ms * 1.5:
                pass  # keep tracking: it is music; discarded when it ends
        elif self._seq is not None:
            if self._piece_ref is not None and self._pending_end is None:
                p_now = tf_power(frame, self._piece_ref, self.sample_rate)
                p_mid = float(np.median(self._piece_ps))
                if self._piece_frames >= 3 and p_mid > 0 and abs(10.0 * math.log10(max(p_now, 1e-12) / p_mid)) <= 1.0:
                    # The tone goes on at its level; noise made this frame look impure.
                    self._last_tonal_end = self.t_ms
                else:
                    self._pending_end = self._piece_end(frame, start)
            if self.t_ms - self._last_tonal_end >= self.gap_ms:
                if self._piece_ref is not None:
                    self._close_piece(self._pending_end)
                seq, self._seq = self._seq, None
                self.last_sequence = seq
                if self.min_tone_ms <= seq.tone_ms <= self.max_tone_ms and seq.is_beep_like:
                    result = seq
        self._prev_frame = np.array(frame, copy=True)
        self._prev_tonal = tf.tonal
        return result


def _steady(inner: list[float]) -> bool | None:
    """Level steady within STEADY_DB (None: too few frames to say). Long pieces may have a few
    noisy frames: their 10th to 90th percentile range is used."""
    if len(inner) < 1:
        return None
    db = 10.0 * np.log10(np.maximum(np.asarray(inner), 1e-12))
    lo, hi = (np.percentile(db, 10), np.percentile(db, 90)) if len(db) >= 8 else (db.min(), db.max())
    return bool(hi - lo <= STEADY_DB)


def tf_power(frame: np.ndarray, ref: ToneFrame, sample_rate: int) -> float:
    """Goertzel power of `frame` at the tone frequencies of `ref`."""
    freqs = np.array([f for f in (ref.f1_hz, ref.f2_hz) if f is not None], dtype=np.float64)
    return float(np.sum(goertzel_bank(np.ascontiguousarray(frame, dtype=np.int16), freqs, sample_rate)))
