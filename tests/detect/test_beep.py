"""Beep detector: tones of every shape found with their end time; voices, vowels and music are not beeps."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from appliance.audio import pure, ulaw_decode, ulaw_encode
from appliance.detect import beep as beep_mod
from appliance.detect.amd import AmdDetector
from appliance.detect.beep import BeepDetector
from appliance.detect.tones import classify_sequence

RATE = 8000


def ms(n: float) -> int:
    return int(RATE * n / 1000)


def tone(freqs, dur_ms, amp=6000.0):
    t = np.arange(ms(dur_ms)) / RATE
    y = sum(np.sin(2 * np.pi * f * t) for f in freqs) * amp / len(freqs)
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.004)
    return y * ramp


def line(x, noise_rms=60.0, seed=0):
    """Through a noisy µ-law line."""
    x = np.asarray(x, dtype=np.float64) + np.random.default_rng(seed).normal(0, noise_rms, len(x))
    pcm = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm))


def beeps(pcm, **kw):
    d = BeepDetector(**kw)
    out = []
    for i in range(0, len(pcm) - 159, 160):
        r = d.feed(pcm[i:i + 160])
        if r is not None:
            out.append(r)
    return out


@pytest.mark.parametrize("freqs,dur", [((425,), 150), ((440,), 400), ((1000,), 250), ((1400,), 2000),
                                       ((2100,), 600), ((853,), 333), ((440, 620), 500), ((697, 1209), 180)])
def test_tones_found_with_their_end(freqs, dur):
    lead = 437
    x = line(np.concatenate([np.zeros(ms(lead)), tone(freqs, dur), np.zeros(ms(600))]))
    found = beeps(x)
    assert len(found) == 1, found
    assert abs(found[0].end_ms - (lead + dur)) <= 10
    assert abs(found[0].start_ms - lead) <= 15
    for f in freqs:
        assert any(abs(f - g) <= 25 for g in found[0].freqs_hz[0])


def test_multi_tone_sequence_is_one_beep_ending_at_the_last_note():
    x = line(np.concatenate([np.zeros(ms(300)), tone((700,), 120), tone((1000,), 120), tone((1400,), 200),
                             np.zeros(ms(500))]))
    found = beeps(x)
    assert len(found) == 1
    assert len(found[0].freqs_hz) == 3
    assert abs(found[0].end_ms - 740) <= 10


def test_too_short_and_too_long_tones_are_not_beeps():
    short = line(np.concatenate([np.zeros(ms(300)), tone((1000,), 60), np.zeros(ms(400))]))
    long = line(np.concatenate([np.zeros(ms(300)), tone((1000,), 4000), np.zeros(ms(400))]))
    assert beeps(short) == []
    assert beeps(long) == []


def _vowel(f0, dur_ms, vibrato_hz=0.0, formants=((700, 150), (1200, 200))):
    t = np.arange(ms(dur_ms)) / RATE
    phase = 2 * np.pi * f0 * t + vibrato_hz * np.sin(2 * np.pi * 5 * t)
    y = np.zeros_like(t)
    for k in range(1, int(3800 / f0)):
        f = k * f0
        a = sum(np.exp(-((f - fc) / bw) ** 2) for fc, bw in formants) + 0.2
        y += a / k ** 0.5 * np.sin(k * phase)
    return 8000 * y / np.max(np.abs(y))


@pytest.mark.parametrize("f0", [110, 180, 220, 262, 350])
@pytest.mark.parametrize("vibrato", [0.0, 3.0])
def test_sung_and_sustained_vowels_are_not_beeps(f0, vibrato):
    x = line(np.concatenate([np.zeros(ms(200)), _vowel(f0, 1500, vibrato), np.zeros(ms(500))]))
    assert beeps(x) == []


def test_hold_music_is_not_a_beep():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    import amd_corpus
    for seed in range(4):
        m = amd_corpus._music(6000, np.random.default_rng(seed)) * 8000
        assert beeps(line(m, seed=seed)) == [], seed


def test_espeak_speech_and_sustained_aah_are_not_beeps():
    for voice, text in [("en-us+f3", "Hello? Hello, this is Anna speaking. Who is calling, please?"),
                        ("en-gb-x-rp+f2", "Aaaaaaaaaah. Ooooooooh. Laaaaaaa."),
                        ("en-us", "Hi, you've reached Tom. Leave a message after the tone.")]:
        wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "--stdout", text],
                             capture_output=True, check=True).stdout
        pcm22 = np.frombuffer(wav[44:len(wav) - (len(wav) - 44) % 2], dtype="<i2")
        from appliance.audio import Resampler
        pcm = Resampler(22050, RATE).process(pcm22)
        assert beeps(line(pcm.astype(np.float64))) == [], voice


def test_pure_twin_goertzel_gives_the_same_beep(monkeypatch):
    x = line(np.concatenate([np.zeros(ms(250)), tone((1000,), 300), np.zeros(ms(300))]))
    native = beeps(x)
    monkeypatch.setattr(beep_mod, "goertzel_bank", pure.goertzel_bank)
    twin = beeps(x)
    assert len(native) == len(twin) == 1
    assert abs(native[0].end_ms - twin[0].end_ms) < 1.0


def test_sit_and_busy_tones_are_classified():
    sit = line(np.concatenate([np.zeros(ms(300)), tone((913.8,), 274), tone((1370.6,), 274), tone((1776.7,), 380),
                               np.zeros(ms(600))]))
    found = beeps(sit)
    assert [classify_sequence(s) for s in found] == ["sit"]
    busy = line(np.concatenate([np.zeros(ms(300)), tone((480, 620), 500), np.zeros(ms(600))]))
    assert [classify_sequence(s) for s in beeps(busy)] == ["busy"]
    # The AMD reports a SIT as unknown (nobody to talk to, no voicemail).
    det = AmdDetector()
    res = None
    for i in range(0, len(sit) - 159, 160):
        res = res or det.feed(sit[i:i + 160])
    assert res is not None and res.label == "unknown" and res.cause == "sit_tone"
