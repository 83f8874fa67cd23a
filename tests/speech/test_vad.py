"""Silero VAD on phone-band audio (8 kHz, noise, G.711 µ-law) built from real and synthetic speech:
the segments it finds must match where the speech is, judged by the clean signal's energy."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.detect.vad import Vad, speech_spans
from appliance.speech import corpus
from appliance.speech.config import VadConfig


def _check_spans(found, reference, start_tol_ms=200, end_tol_ms=400):
    """Every found span lies on speech, and each reference span is found with its edges in tolerance."""
    for a, b in found:
        assert any(a < rb and b > ra for ra, rb in reference), \
            f"VAD span {a:.0f}-{b:.0f} ms is in a pause: {reference}"
    for ra, rb in reference:
        hits = [(a, b) for a, b in found if a < rb and b > ra]
        assert hits, f"speech at {ra:.0f}-{rb:.0f} ms not found (found {found})"
        a, b = hits[0][0], hits[-1][1]
        assert ra - start_tol_ms <= a <= ra + start_tol_ms, f"start {a} vs {ra}"
        assert rb - end_tol_ms <= b <= rb + end_tol_ms, f"end {b} vs {rb}"


def test_real_speech_phrases_at_phone_band(speech_models):
    """A human reading Dickens, through noise (15 dB SNR) and µ-law: pauses of 300 ms and more
    separate segments, as the configured min_silence asks."""
    clean = corpus.load_clip("two_cities")
    line = corpus.to_line(clean, 15.0, np.random.default_rng(7))
    reference = corpus.energy_spans(clean, merge_ms=300)
    found = speech_spans(line, 8000, VadConfig(min_silence_ms=300))
    assert len(reference) >= 10
    _check_spans(found, reference)
    assert abs(len(found) - len(reference)) <= 2


def test_real_speech_short_clips(speech_models):
    rng = np.random.default_rng(3)
    for u in [u for u in corpus.real_set(20.0) if u.source in ("real:hello_world", "real:counting",
                                                                 "real:quick_brown_fox")]:
        found = speech_spans(u.pcm, 8000)
        assert len(found) == 1, (u.text, found)
        _check_spans(found, [u.speech_ms])
    hiss = (rng.standard_normal(24000) * 300).astype(np.int16)
    noise = corpus.to_line(hiss, None, rng)
    assert speech_spans(noise, 8000) == []


def test_synthetic_utterances_padded_with_noise(tts):
    for u in corpus.make_set(tts, n=3, snr_db=15.0, lead_ms=700, tail_ms=1000):
        found = speech_spans(u.pcm, 8000)
        assert len(found) == 1, found
        _check_spans(found, [u.speech_ms])


def test_events_timestamps_and_frame_sizes(speech_models):
    u = corpus.real_set(20.0)[0]            # "Hello world."
    cfg = VadConfig(min_speech_ms=150, min_silence_ms=300)
    v = Vad(cfg, 8000)
    assert v.window_samples == 256
    events = []
    for i in range(0, len(u.pcm), 160):     # 20 ms frames, as from the line
        events += v.feed(u.pcm[i:i + 160])
    kinds = [e.kind for e in events]
    assert kinds == ["speech_start", "speech_end"]
    start, end = events
    assert start.at_ms >= start.t_ms + 150 - 32 and end.at_ms >= end.t_ms + 300 - 32   # decided live, later
    # odd-sized chunks give the same decisions as 20 ms frames
    v2 = Vad(cfg, 8000)
    events2, i = [], 0
    for n in [7, 333, 160, 1000, 1] * 200:
        if i >= len(u.pcm):
            break
        events2 += v2.feed(u.pcm[i:i + n])
        i += n
    assert events2 == events
    assert Vad(cfg, 16000).window_samples == 512
    with pytest.raises(ValueError, match="8000 or 16000"):
        Vad(cfg, 11025)
    with pytest.raises(TypeError, match="int16"):
        v.feed(np.zeros(160, np.float32))


def test_thresholds_from_config(speech_models):
    """min_silence decides whether a short pause splits speech; a high threshold hears less."""
    clean = corpus.load_clip("beckett")           # six short phrases, 0.6-1 s pauses
    line = corpus.to_line(clean, 20.0, np.random.default_rng(5))
    split = speech_spans(line, 8000, VadConfig(min_silence_ms=300))
    merged = speech_spans(line, 8000, VadConfig(min_silence_ms=1500))
    assert len(split) >= 5 and len(merged) < len(split)
    strict = speech_spans(line, 8000, VadConfig(threshold=0.95, min_silence_ms=300))
    assert sum(b - a for a, b in strict) < sum(b - a for a, b in split)
