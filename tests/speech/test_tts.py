"""The Piper voice through sherpa-onnx: intelligible at 8 kHz (checked by the STT), streamed per
sentence, and stopped within one callback when cancelled."""
from __future__ import annotations

import threading

import numpy as np

from appliance.speech import corpus


def test_tts_at_8k_is_understood_by_the_stt(tts, stt):
    text = "Your appointment is on Tuesday at 3:30 pm."
    audio = tts.synthesize_to_array(text, 8000)
    assert audio.dtype == np.int16 and 1.5 < len(audio) / 8000 < 6.0
    line = corpus.to_line(np.concatenate((audio, np.zeros(4000, np.int16))), 25.0, np.random.default_rng(0))
    heard = stt.transcribe(line, 8000)
    errors, n = corpus.wer(text, heard)
    assert errors / n <= 0.25, (heard, errors, n)
    heard_words = corpus.words(heard)
    for word in ("appointment", "tuesday"):
        assert word in heard_words, heard
    assert "3 3 0" in " ".join(heard_words), heard      # the time, however Whisper writes it


def test_streams_sentence_by_sentence_in_small_chunks(tts):
    chunks = []
    text = "Hello there. How are you today? Goodbye."
    assert tts.synthesize(text, lambda a: chunks.append(len(a)) or True, 8000)
    assert len(chunks) >= 6 and max(chunks) == 8000 * tts.chunk_ms // 1000
    sentence = "Hello there, thank you for calling the clinic this morning."
    wide = tts.synthesize_to_array(sentence, 16000)
    narrow = tts.synthesize_to_array(sentence, 8000)
    # Piper's durations vary from run to run (noise_w; a two-word sentence varied by > 25 %):
    # compare a longer sentence, loosely
    assert abs(len(wide) / 16000 - len(narrow) / 8000) < 0.25 * len(narrow) / 8000


def test_cancel_from_on_audio_stops_at_once(tts):
    """on_audio returning False (barge-in seen by the playout) stops generation: nothing more is
    delivered, and the long reply is not synthesised to the end."""
    long_text = " ".join(["This sentence is one of many in a long reply that the caller interrupts."] * 6)
    calls = []

    def on_audio(a):
        calls.append(len(a))
        return len(calls) < 3

    assert tts.synthesize(long_text, on_audio, 8000) is False
    assert len(calls) == 3                 # not one chunk after the refusal


def test_cancel_event_mid_sentence_stops_within_one_callback(tts):
    """The cancel event set by another thread (the call's event loop) while a sentence is being
    generated: sherpa's next per-sentence callback returns 0 and no audio follows the event."""
    cancel = threading.Event()
    delivered_after = []
    chunks = []
    first = threading.Event()

    def on_audio(a):
        if cancel.is_set():
            delivered_after.append(len(a))
        chunks.append(len(a))
        first.set()
        return True

    text = " ".join(["Here is a sentence that keeps going for quite a while, with many words in it."] * 8)
    t = threading.Thread(target=lambda: result.append(tts.synthesize(text, on_audio, 8000, cancel=cancel)))
    result: list[bool] = []
    t.start()
    assert first.wait(60)
    cancel.set()
    t.join(60)
    assert not t.is_alive() and result == [False]
    assert delivered_after == []
    one = len(tts.synthesize_to_array(text.split(". ")[0] + ".", 8000))
    assert sum(chunks) < 2 * one             # stopped in the first sentence or the next, not after 8


def test_text_starts_with_sound_not_the_voices_lead_in_silence(tts):
    """Piper begins every text with ~30-50 ms of near silence, which the caller would wait through
    before the first word: it is trimmed to 10 ms."""
    for text in ("Thanks,", "Yes,", "We're closed on Sundays,"):
        audio = tts.synthesize_to_array(text, 8000).astype(np.int32)
        first = int(np.flatnonzero(np.abs(audio) > 32)[0])
        assert first <= 80, (text, first)          # <= 10 ms at 8 kHz


def test_calls_speak_at_once_and_every_voice_stays_intelligible(tts, stt):
    """No lock around synthesis: several calls synthesize in parallel threads, and every result is
    still the words asked for (a shared-state race would garble or mix them)."""
    texts = ["Your appointment is on Tuesday morning.", "We are closed on Sundays.",
             "Please hold while I transfer you.", "The parcel will arrive on Friday."]
    out: list = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def speak(i: int) -> None:
        start.wait()
        out[i] = tts.synthesize_to_array(texts[i], 8000)

    threads = [threading.Thread(target=speak, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for text, audio in zip(texts, out, strict=True):
        assert audio is not None and 1.0 < len(audio) / 8000 < 5.0, text
        heard = stt.transcribe(np.concatenate((audio, np.zeros(4000, np.int16))), 8000)
        errors, n = corpus.wer(text, heard)
        assert errors <= 1, (text, heard)


def test_phrase_cache_serves_said_phrases_without_synthesis(tts):
    """Fixed lines and short clauses are synthesized once and then handed over from memory; a
    cancelled synthesis is not kept; the oldest phrase goes when the cache is full."""
    size = tts.phrase_cache_size
    try:
        hello = tts.phrase("Hello there.", 8000)
        assert len(hello) > 2000 and tts.phrase("Hello there.", 8000) is hello
        assert tts.cached("Hello there.", 8000) is hello and tts.cached("Hello there.", 16000) is None
        # keep=True stores what was said, the very samples streamed; a cancelled one is not stored
        assert tts.cached("Got it, thanks.", 8000) is None
        got: list = []
        assert tts.synthesize("Got it, thanks.", lambda a: got.append(a.copy()) or True, 8000, keep=True)
        assert np.array_equal(tts.cached("Got it, thanks.", 8000), np.concatenate(got))
        assert max(map(len, got)) <= 8000 * tts.chunk_ms // 1000
        assert not tts.synthesize("Right away, madam.", lambda a: False, 8000, keep=True)
        assert tts.cached("Right away, madam.", 8000) is None
        # prewarm makes only what is missing
        assert tts.prewarm(["Hello there.", "Of course, sir."]) == 1
        assert tts.cached("Of course, sir.", 8000) is not None
        # LRU: with room for 2, the least recently used goes
        tts.phrase_cache_size = 2
        tts.cached("Hello there.", 8000)
        tts.phrase("See you soon.", 8000)
        assert tts.cached("Hello there.", 8000) is not None and tts.cached("See you soon.", 8000) is not None
        assert tts.cached("Got it, thanks.", 8000) is None and tts.cached("Of course, sir.", 8000) is None
    finally:
        tts.phrase_cache_size = size
