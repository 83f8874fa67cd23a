"""The whisper-ct2 engine: Whisper's log-mel features computed here, byte-level detokenising, the
cut window (utterance + 10 s of silence), silence rejection, and the sherpa-onnx Whisper engine
that stays selectable."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from appliance.speech import corpus
from appliance.speech.ct2whisper import MAX_FRAMES, PAD_FRAMES, detokenize, log_mel, mel_filters


def test_mel_filters_are_slaney_triangles():
    f = mel_filters()
    assert f.shape == (80, 201)
    assert (f >= 0).all()
    peaks = f.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[0] <= 1 and peaks[-1] >= 190
    # Slaney normalisation: each triangle's area in Hz (bins are 40 Hz wide) is about 1
    areas = f.sum(axis=1) * 40.0
    assert np.allclose(areas[5:], 1.0, atol=0.15), areas


def test_log_mel_tone_lands_in_its_band_and_padding_is_silence():
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)     # 1 s of 1 kHz
    feats = log_mel(tone)
    assert feats.shape == (80, 100 + PAD_FRAMES)
    mid = feats[:, 50]
    band = mid.argmax()
    centre_hz = np.argmax(mel_filters()[band]) * 40.0
    assert abs(centre_hz - 1000) <= 80, centre_hz
    # padding frames are silence: Whisper's floor, 8 (log10) below the loudest value, scaled
    floor = feats.max() - 2.0
    assert np.allclose(feats[:, 110:], floor, atol=1e-5)
    assert feats[:, 50].max() - floor > 1.5
    # never more than Whisper's 30 s window
    assert log_mel(np.zeros(16000 * 40, np.float32)).shape[1] == MAX_FRAMES


def test_detokenize_reads_byte_level_bpe():
    assert detokenize(["ĠHello", ",", "Ġworld", "."]) == "Hello, world."
    assert detokenize(["<|endoftext|>", "ĠI", "'m", "Ġfine"]) == "I'm fine"
    assert detokenize(["Ġcaf", "Ã©"]) == "café"


def test_ct2_engine_on_phone_band_speech_and_silence(stt):
    assert stt.name.startswith("whisper-ct2:")
    real = {u.text: u for u in corpus.real_set(20.0)}
    u = real["The quick brown fox jumps over the lazy dog."]
    e, n = corpus.wer(u.text, stt.transcribe(u.pcm, 8000))
    assert e <= 1, stt.transcribe(u.pcm, 8000)
    noise = corpus.to_line(np.zeros(8000 * 2, np.int16), 30.0, np.random.default_rng(3))
    assert stt.transcribe(noise, 8000) == ""


def test_sherpa_whisper_engine_stays_selectable(speech_models, tts):
    from appliance.speech.config import SpeechConfig, SttConfig
    from appliance.speech.registry import ModelRegistry
    from appliance.speech.stt import create_stt

    cfg = SpeechConfig(stt=SttConfig(engine="whisper", model="whisper-tiny.en"))
    ModelRegistry.from_config(cfg).fetch("whisper-tiny.en", progress=False)
    engine = create_stt(cfg)
    assert engine.name == "whisper:whisper-tiny.en"
    u = corpus.make_set(tts, n=1)[0]
    e, n = corpus.wer(u.text, engine.transcribe(u.pcm, 8000))
    assert e / n <= 0.25
    with pytest.raises(Exception, match="whisper-ct2 model"):
        create_stt(dataclasses.replace(cfg, stt=SttConfig(engine="whisper", model="whisper-tiny.en-ct2")))


def test_whisper_text_drops_sound_tags_and_silence_answers():
    from appliance.speech.stt import whisper_text

    assert whisper_text(" (wind blowing)") == ""
    assert whisper_text(" [MUSIC] Hello there.") == "Hello there."
    assert whisper_text(" Thank you.") == ""           # Whisper's usual answer to near-silence
    assert whisper_text(" Thank you, that's all.") == "Thank you, that's all."
    assert whisper_text(" Thank you.", noise=frozenset({""})) == "Thank you."


def test_ct2_keeps_a_real_thank_you_and_drops_a_cough(stt, tts):
    """The no-speech probability, not a word list, decides: "Thank you." is a caller's words."""
    rng = np.random.default_rng(5)
    said = tts.synthesize_to_array("Thank you.", 8000)
    line = corpus.to_line(np.concatenate((np.zeros(2000, np.int16), said, np.zeros(2000, np.int16))), 20.0, rng)
    assert corpus.words(stt.transcribe(line, 8000)) == ["thank", "you"]
    for _ in range(3):
        noise = corpus.to_line(np.zeros(8000, np.int16), 20.0, rng)
        noise[3000:4600] += (rng.standard_normal(1600) * 3000 * np.hanning(1600)).astype(np.int16)
        assert stt.transcribe(noise, 8000) == ""
