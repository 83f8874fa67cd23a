"""A phone-band speech set made on the box, for tests and `appliance bench speech`.

Utterances typical of calls are spoken by the installed Piper voice at a few speeds, taken to the
line: resampled to 8 kHz, band-limited noise added at a given SNR, and through G.711 µ-law, then
padded with silence. Each utterance carries its reference text and where the speech really is
(from the clean signal), so VAD spans and STT word error rate can be checked.

Caveat: it is one synthetic voice (the same one the box speaks with). Whisper does worse on robotic
voices and on some real callers; the figures are a regression baseline, not a promise about people.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .normalize import _ONES as _NORM_ONES
from .normalize import _TENS as _NORM_TENS
from .normalize import normalize

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "speech"

SENTENCES = [
    "Hi, I'd like to book an appointment for next Tuesday.",
    "Can you tell me your opening hours?",
    "My name is Sarah Johnson and I'm calling about my order.",
    "I need to speak to someone about a billing problem.",
    "Yes, that works for me.",
    "No, I don't think so.",
    "Could you repeat that please?",
    "I'm calling to cancel my reservation for tonight.",
    "What is the address of your office?",
    "The package never arrived and I want a refund.",
    "Please put me through to the manager.",
    "I would like to change my delivery address.",
    "Is the doctor available on Friday morning?",
    "Thank you very much, goodbye.",
    "I have a question about the price of the repair.",
    "My account number is four five six seven.",
    "Can I pay by credit card over the phone?",
    "The heating in my apartment stopped working yesterday.",
    "I'll be there in about twenty minutes.",
    "Do you deliver to the north side of town?",
    "Sorry, I didn't catch that.",
    "I want to make a complaint about the service.",
    "How long will the wait be?",
    "Let me check my calendar and call you back.",
]


@dataclass
class Utterance:
    text: str
    pcm: np.ndarray            # int16 8 kHz, line audio (noise, µ-law), padded
    speech_ms: tuple[float, float]   # where speech is, from the clean signal
    source: str = "piper"      # "piper" (synthetic) or "real:<clip>" (a human recording)


def words(text: str) -> list[str]:
    """Lower-case words for WER: punctuation dropped; numbers, written or spoken, become their
    digits, one word per digit. Whisper writes "one two three four" as "1-2-3-4" or "1234" and
    "twenty" as "20"; what a phone agent needs from either is the same digits, so both compare as
    1 2 3 4 (and "twenty" as 2 0)."""
    # Whisper writes "3:30 pm" as "330 PM": score it as the time it is
    text = re.sub(r"\b(\d{1,2})(\d{2})\s*([ap]\.?m\b)", r"\1:\2 \3", text, flags=re.I)
    t = normalize(text).lower().replace("-", " ")
    return _numbers_as_digits(re.findall(r"[a-z0-9']+", t))


# the number words the TTS normaliser writes (normalize.number_words), read back
_SMALL = {w: i for i, w in enumerate(_NORM_ONES)}              # zero .. nineteen
_TENS = {w: 10 * i for i, w in enumerate(_NORM_TENS) if w}     # twenty .. ninety
_SCALES = {"thousand": 1000, "million": 1000000}


def _numbers_as_digits(tokens: list[str]) -> list[str]:
    """Runs of number words -> the digits of each number ("one two" is 1 2, "twenty one" 2 1,
    "four thousand five hundred" 4 5 0 0)."""
    out: list[str] = []
    total, cur, last = 0, 0, None     # last: kind of the previous number word, None outside a number

    def flush():
        nonlocal total, cur, last
        if last is not None:
            out.extend(str(total + cur))
        total, cur, last = 0, 0, None

    for tok in tokens:
        if tok in _SMALL and _SMALL[tok] < 10:
            if last in ("ones", "teen"):
                flush()
            cur, last = cur + _SMALL[tok], "ones"
        elif tok in _SMALL or tok in _TENS:
            if last in ("ones", "teen", "tens"):
                flush()
            cur, last = cur + (_SMALL.get(tok) or _TENS[tok]), "teen" if tok in _SMALL else "tens"
        elif tok == "hundred":
            cur, last = (cur or 1) * 100, "hundred"
        elif tok in _SCALES and last is not None:
            total, cur, last = total + (cur or 1) * _SCALES[tok], 0, "scale"
        elif tok.isdigit():
            flush()
            out.extend(tok)
        else:
            flush()
            out.append(tok)
    flush()
    return out


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference words), both normalised the same way."""
    r = words(ref)
    return edit_distance(r, words(hyp)), len(r)


def edit_distance(r, h) -> int:
    """Levenshtein distance between two sequences (of words, or the letters of a string)."""
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev = cur
    return d[len(h)]


def _speech_bounds(clean: np.ndarray, rate: int) -> tuple[int, int]:
    """First and last sample of the clean signal above -40 dBFS in 10 ms frames."""
    hop = rate // 100
    n = len(clean) // hop
    if n == 0:
        return 0, len(clean)
    frames = clean[:n * hop].astype(np.float32).reshape(n, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) / 32768.0**2 + 1e-12)
    on = np.nonzero(db > -40)[0]
    if len(on) == 0:
        return 0, 0
    return int(on[0] * hop), int((on[-1] + 1) * hop)


def to_line(pcm8k: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """Add phone-band noise at `snr_db` (relative to the speech's RMS) and pass through µ-law."""
    from ..audio import ulaw_decode, ulaw_encode

    x = pcm8k.astype(np.float64)
    if snr_db is not None:
        active = x[np.abs(x) > 100]
        rms = np.sqrt(np.mean(active**2)) if len(active) else 1000.0
        noise = rng.standard_normal(len(x) + 64)
        noise = np.convolve(noise, np.ones(4) / 2.0, mode="same")[:len(x)]     # a little coloured
        noise *= rms / (10 ** (snr_db / 20)) / (np.sqrt(np.mean(noise**2)) + 1e-9)
        x = x + noise
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def make_set(tts, n: int = 12, snr_db: float | None = 20.0, seed: int = 1, lead_ms: int = 400,
             tail_ms: int = 900, speeds=(0.9, 1.0, 1.15)) -> list[Utterance]:
    """`n` line-audio utterances spoken by `tts` (a speech.tts.Tts)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        clean = tts.synthesize_to_array(text, 8000, speed=speeds[i % len(speeds)])
        a, b = _speech_bounds(clean, 8000)
        clean = clean[a:b]
        pad_a, pad_b = np.zeros(lead_ms * 8, np.int16), np.zeros(tail_ms * 8, np.int16)
        line = to_line(np.concatenate((pad_a, clean, pad_b)), snr_db, rng)
        out.append(Utterance(text, line, (float(lead_ms), lead_ms + len(clean) / 8.0)))
    return out


# ---- real human speech (appliance/data/speech, see clips.json there) ---------------------------

def clips() -> dict:
    """The real-speech clips' metadata (clips.json)."""
    return json.loads((DATA_DIR / "clips.json").read_text())["clips"]


def load_clip(name: str) -> np.ndarray:
    """A real-speech clip as int16 8 kHz PCM (the files are G.711 µ-law WAVs)."""
    from .wavio import read_wav

    meta = clips()[name]
    return read_wav(str(DATA_DIR / meta["file"]), 8000)


def energy_spans(pcm: np.ndarray, rate: int = 8000, below_peak_db: float = 30.0, merge_ms: int = 250,
                 min_ms: int = 80) -> list[tuple[float, float]]:
    """Speech spans of a clean recording by frame energy alone (10 ms frames above the loudest frame
    minus `below_peak_db`; gaps shorter than `merge_ms` bridged; blips shorter than `min_ms`
    dropped). An independent reference for the VAD: no model involved."""
    hop = rate // 100
    n = len(pcm) // hop
    if n == 0:
        return []
    frames = pcm[:n * hop].astype(np.float64).reshape(n, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) / 32768.0**2 + 1e-12)
    on = db > max(db.max() - below_peak_db, -55.0)
    spans: list[list[int]] = []
    for i in np.nonzero(on)[0]:
        if spans and i - spans[-1][1] <= merge_ms // 10:
            spans[-1][1] = i + 1
        else:
            spans.append([int(i), int(i) + 1])
    return [(a * 10.0, b * 10.0) for a, b in spans if (b - a) * 10 >= min_ms]


def real_set(snr_db: float | None = 20.0, seed: int = 2, lead_ms: int = 400, tail_ms: int = 900) -> list[Utterance]:
    """Every utterance of the real-speech clips, cut at the middle of the pauses around it, padded
    with silence, with noise at `snr_db` and through µ-law."""
    rng = np.random.default_rng(seed)
    out = []
    for name, meta in clips().items():
        pcm = load_clip(name)
        utts = meta["utterances"]
        for k, u in enumerate(utts):
            if "ms" in u:
                a, b = u["ms"]
                prev_end = utts[k - 1]["ms"][1] if k else 0
                next_start = utts[k + 1]["ms"][0] if k + 1 < len(utts) else len(pcm) / 8
                lo, hi = max(a - 300, (prev_end + a) / 2), min(b + 300, (b + next_start) / 2)
                cut = pcm[int(lo * 8):int(hi * 8)]
            else:
                cut = pcm
            spans = energy_spans(cut)
            if not spans:
                continue
            pad_a, pad_b = np.zeros(lead_ms * 8, np.int16), np.zeros(tail_ms * 8, np.int16)
            line = to_line(np.concatenate((pad_a, cut, pad_b)), snr_db, rng)
            out.append(Utterance(u["text"], line, (lead_ms + spans[0][0], lead_ms + spans[-1][1]), f"real:{name}"))
    return out


def phone_set(tts, n_synthetic: int = 8, snr_db: float | None = 20.0) -> list[Utterance]:
    """The benchmark's phone-band set: `n_synthetic` Piper utterances and all real-speech ones."""
    return make_set(tts, n=n_synthetic, snr_db=snr_db) + real_set(snr_db)
