"""Call-progress and signalling tones, recognised from the tone sequences `beep.py` finds.

- SIT (special information tones, ITU-T E.180 / Telcordia): three rising tones of about
  914/985, 1371/1429 and 1777 Hz, 274 or 380 ms each: "the number cannot be reached".
- Fax CNG (T.30): 1100 Hz for 0.5 s, repeated every 3.5 s: a fax machine answered.
- Busy / reorder (North American precise tones): 480 + 620 Hz bursts.
Everything else that passed the beep detector's tests is a voicemail beep.
"""
from __future__ import annotations

from .beep import ToneSegment

_SIT_BANDS = ((880.0, 1010.0), (1340.0, 1460.0), (1740.0, 1810.0))


def _near(f: float, target: float, tol: float) -> bool:
    return abs(f - target) <= tol


def is_sit(seq: ToneSegment) -> bool:
    """Three consecutive single tones, rising through the three SIT bands, each 200–450 ms."""
    if len(seq.freqs_hz) != 3:
        return False
    for (lo, hi), freqs, (s, e) in zip(_SIT_BANDS, seq.freqs_hz, seq.pieces_ms, strict=True):
        if not (lo <= freqs[0] <= hi) or not (200.0 <= e - s <= 450.0):
            return False
    return True


def is_cng(seq: ToneSegment) -> bool:
    """One 1100 Hz tone of 0.4–0.7 s."""
    return (len(seq.freqs_hz) == 1 and len(seq.freqs_hz[0]) == 1 and _near(seq.freqs_hz[0][0], 1100.0, 30.0)
            and 400.0 <= seq.duration_ms <= 700.0)


def is_busy(seq: ToneSegment) -> bool:
    """A 480 + 620 Hz dual tone of 0.2–0.6 s (busy: 0.5 s on, reorder: 0.25 s on)."""
    if len(seq.freqs_hz) != 1 or len(seq.freqs_hz[0]) != 2:
        return False
    lo, hi = sorted(seq.freqs_hz[0])
    return _near(lo, 480.0, 30.0) and _near(hi, 620.0, 30.0) and 200.0 <= seq.duration_ms <= 600.0


def classify_sequence(seq: ToneSegment) -> str:
    """'sit', 'cng', 'busy' or 'beep' for a finished tone sequence."""
    if is_sit(seq):
        return "sit"
    if is_cng(seq):
        return "cng"
    if is_busy(seq):
        return "busy"
    return "beep"
