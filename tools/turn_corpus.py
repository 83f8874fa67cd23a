#!/usr/bin/env python3
"""Labelled phone-band turn corpus for endpointing: complete turns vs turns with a mid-turn pause.

Each item is one caller turn as the line delivers it: 8 kHz, band-limited by G.711 µ-law, with line
noise. A *complete* turn is one utterance followed by silence. An *incomplete* turn is part A, a
pause (the caller hesitates mid number, mid spelling, on a filler, mid sentence), then part B: an
endpointer that ends the turn during that pause has cut the caller off.

Voices: espeak-ng (two variants) and, when the speech engineer's Piper voice loads
(`appliance.speech.tts.create_tts()`), the Piper voice as well.

    python tools/turn_corpus.py OUT_DIR [--voices espeak,espeak-f,piper] [--seed 1]

writes OUT_DIR/NNN.wav (8 kHz PCM16, already µ-law round-tripped), OUT_DIR/NNN.clean16k.wav (the
same turn before the line: 16 kHz, no noise) and OUT_DIR/labels.json:
[{"file", "kind": "complete"|"incomplete", "voice", "text_a", "text_b", "speech_start_ms",
  "pause_start_ms", "pause_end_ms", "speech_end_ms", "duration_ms"}], times in audio ms.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.audio import Resampler, ulaw_decode, ulaw_encode  # noqa: E402

RATE = 8000          # the line
CLEAN_RATE = 16000   # the voices render here; the clean copy stays at this rate

# (part A, part B): the caller pauses after A. Lower case, no punctuation: what a streaming
# recognizer shows as the partial transcript.
INCOMPLETE = [
    ("my phone number is five five five", "zero one two three"),
    ("you can reach me on oh seven seven", "double oh nine one two"),
    ("my last name is spelled s m", "i t h"),
    ("i'd like to book an appointment for um", "next tuesday"),
    ("i was calling because", "i have a toothache"),
    ("can you tell me", "when you close today"),
    ("the address is forty two", "baker street"),
    ("i wanted to ask about", "the price of a cleaning"),
    ("so", "i need to reschedule my appointment"),
    ("it's about my appointment and", "i can't make it on friday"),
    ("my date of birth is the third of", "march nineteen eighty five"),
    ("could i book something for", "thursday morning"),
    ("my email is john dot", "smith at example dot com"),
    ("i'm calling from", "the pharmacy on main street"),
    ("yes and also", "can you send me a reminder"),
    ("the reference number is a b", "seven four two"),
    ("i think", "it was last wednesday"),
    ("well the thing is", "my insurance changed"),
    ("i'd like to speak to", "doctor patel please"),
    ("my card number ends in four four", "one nine"),
]

COMPLETE = [
    "what time do you close today?",
    "i'd like to book an appointment please.",
    "my phone number is five five five zero one two three.",
    "yes, that's right.",
    "can i speak to someone please?",
    "thank you, goodbye.",
    "no.",
    "tuesday at ten works for me.",
    "are you open on saturdays?",
    "my name is john smith.",
    "i need to cancel my appointment.",
    "how much does a cleaning cost?",
    "that's all, thanks.",
    "could you call me back tomorrow morning?",
    "i have a terrible toothache.",
    "sure.",
    "my date of birth is the third of march nineteen eighty five.",
    "do you take new patients?",
    "i'll be there at half past two.",
    "is doctor patel in today?",
]

PAUSES_MS = (500, 700, 900, 1100)
LEAD_MS, TRAIL_MS = 400, 2500


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return data, w.getframerate()


def _resample(pcm: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return pcm.astype(np.int16)
    rs = Resampler(rate, to)
    # speex delays by its filter latency: drop it so that labels stay aligned
    out = rs.process(np.concatenate((pcm.astype(np.int16), np.zeros(rate // 10, dtype=np.int16))))
    lat = int(round(rs.latency_samples * to / rate))
    return out[lat:lat + int(len(pcm) * to / rate)]


def _trim(pcm: np.ndarray, floor: int = 200) -> np.ndarray:
    """Cut synthesizer silence at both ends, so the labels are the speech."""
    idx = np.flatnonzero(np.abs(pcm.astype(np.int32)) > floor)
    return pcm[idx[0]:idx[-1] + 1] if len(idx) else pcm[:0]


class Espeak:
    def __init__(self, voice: str = "en-us", speed: int = 165):
        self.voice, self.speed = voice, speed
        self.name = f"espeak:{voice}:{speed}"

    def say(self, text: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/s.wav"
            subprocess.run(["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-w", path, text],
                           check=True, capture_output=True)
            pcm, rate = _read_wav(path)
        return _trim(_resample(pcm, rate, CLEAN_RATE))


class Piper:
    def __init__(self):
        from appliance.speech.tts import create_tts

        self._tts = create_tts()
        self.name = "piper:" + getattr(self._tts, "voice", "voice")

    def say(self, text: str) -> np.ndarray:
        return _trim(self._tts.synthesize_to_array(text, sample_rate=CLEAN_RATE))


def split_sentence(voice, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Part A and part B cut from ONE rendition of "A B", so A keeps mid-sentence prosody.

    Synthesizing A alone would give it a sentence-final fall, and a prosody-aware model would
    rightly hear a finished turn. The cut is the quietest 10 ms within -200..+150 ms of where A
    alone ends (the voices speak at a steady rate)."""
    full = voice.say(f"{a} {b}")
    a_len = len(voice.say(a))
    hop = CLEAN_RATE // 100
    lo = max(hop, a_len - CLEAN_RATE // 5)
    hi = min(len(full) - hop, a_len + CLEAN_RATE * 15 // 100)
    if hi <= lo:
        return full[:a_len], full[a_len:]
    starts = np.arange(lo, hi, hop // 2)
    energy = [float(np.sum(full[s:s + hop].astype(np.float64) ** 2)) for s in starts]
    cut = int(starts[int(np.argmin(energy))]) + hop // 2
    return full[:cut], _trim(full[cut:], floor=120)


def make_voices(names: list[str]) -> list:
    voices = []
    for name in names:
        if name == "espeak":
            voices.append(Espeak("en-us", 165))
        elif name == "espeak-f":
            voices.append(Espeak("en-us+f3", 150))
        elif name == "piper":
            try:
                voices.append(Piper())
            except Exception as exc:   # the voice is optional: say so and go on
                print(f"turn_corpus: Piper voice unavailable ({exc}); espeak only", file=sys.stderr)
        else:
            raise SystemExit(f"unknown voice {name!r}: expected espeak, espeak-f or piper")
    return voices


def _line(pcm: np.ndarray, rng: np.random.Generator, level_dbfs: float, noise_dbfs: float) -> np.ndarray:
    """Level, line noise, µ-law round trip."""
    x = pcm.astype(np.float64)
    rms = np.sqrt(np.mean(x[np.abs(x) > 100] ** 2)) if np.any(np.abs(x) > 100) else 1.0
    x *= 32768.0 * 10 ** (level_dbfs / 20) / rms
    x += rng.standard_normal(len(x)) * 32768.0 * 10 ** (noise_dbfs / 20)
    y = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(y))


def generate(out_dir: str | Path, voice_names: list[str] | None = None, seed: int = 1) -> list[dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = []
    ms = lambda n: 1000.0 * n / CLEAN_RATE  # noqa: E731
    voices = make_voices(voice_names or ["espeak", "espeak-f", "piper"])
    k = 0
    for voice in voices:
        for i, (a, b) in enumerate(INCOMPLETE):
            pa, pb = split_sentence(voice, a, b)
            pause = PAUSES_MS[(i + k) % len(PAUSES_MS)]
            lead = np.zeros(LEAD_MS * CLEAN_RATE // 1000, np.int16)
            gap = np.zeros(pause * CLEAN_RATE // 1000, np.int16)
            trail = np.zeros(TRAIL_MS * CLEAN_RATE // 1000, np.int16)
            pcm = np.concatenate((lead, pa, gap, pb, trail))
            s0 = len(lead)
            labels.append(dict(kind="incomplete", text_a=a, text_b=b, speech_start_ms=ms(s0),
                               pause_start_ms=ms(s0 + len(pa)), pause_end_ms=ms(s0 + len(pa) + len(gap)),
                               speech_end_ms=ms(s0 + len(pa) + len(gap) + len(pb)), pcm=pcm, voice=voice.name))
        for text in COMPLETE:
            pa = voice.say(text)
            lead = np.zeros(LEAD_MS * CLEAN_RATE // 1000, np.int16)
            trail = np.zeros(TRAIL_MS * CLEAN_RATE // 1000, np.int16)
            pcm = np.concatenate((lead, pa, trail))
            s0 = len(lead)
            labels.append(dict(kind="complete", text_a=text, text_b="", speech_start_ms=ms(s0),
                               pause_start_ms=None, pause_end_ms=None, speech_end_ms=ms(s0 + len(pa)),
                               pcm=pcm, voice=voice.name))
        k += 1
    for n, item in enumerate(labels):
        clean = item.pop("pcm")
        item["clean_file"] = f"{n:03d}.clean16k.wav"
        _write(out / item["clean_file"], clean, CLEAN_RATE)
        pcm = _line(_resample(clean, CLEAN_RATE, RATE), rng, level_dbfs=float(rng.uniform(-26, -16)), noise_dbfs=float(rng.uniform(-62, -50)))
        item["file"] = f"{n:03d}.wav"
        item["duration_ms"] = 1000.0 * len(pcm) / RATE
        _write(out / item["file"], pcm, RATE)
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def _write(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype(np.int16).tobytes())


def load_clean(corpus_dir: str | Path, item: dict) -> np.ndarray:
    """The clean 16 kHz rendition of an item (before the line): for comparing the band's effect."""
    return _read_wav(str(Path(corpus_dir) / item["clean_file"]))[0]


def load(corpus_dir: str | Path) -> list[tuple[dict, np.ndarray]]:
    """(label, int16 pcm) pairs of a generated corpus."""
    root = Path(corpus_dir)
    items = json.loads((root / "labels.json").read_text())
    return [(it, _read_wav(str(root / it["file"]))[0]) for it in items]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--voices", default="espeak,espeak-f,piper", help="comma-separated: espeak, espeak-f, piper")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    labels = generate(args.out_dir, args.voices.split(","), args.seed)
    kinds = {k: sum(1 for it in labels if it["kind"] == k) for k in ("complete", "incomplete")}
    print(f"wrote {len(labels)} turns to {args.out_dir} ({kinds['complete']} complete, {kinds['incomplete']} incomplete; "
          f"voices: {', '.join(sorted({it['voice'] for it in labels}))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
