"""STT engines on phone-band audio: Whisper tiny.en (the embedded default) through its segment
stream, and the streaming transducer where such a model is installed."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from appliance.speech import corpus
from appliance.speech.live import transcribe_live


@pytest.fixture(scope="module")
def real_utts():
    return {u.text: u for u in corpus.real_set(20.0)}


def test_whisper_on_real_phone_band_speech(stt, real_utts):
    assert stt.name == "whisper-ct2:whisper-tiny.en-ct2"
    errors = words = 0
    for text in ("The quick brown fox jumps over the lazy dog.", "it was the age of foolishness,",
                 "we had everything before us, we had nothing before us,"):
        e, n = corpus.wer(text, stt.transcribe(real_utts[text].pcm, 8000))
        errors, words = errors + e, words + n
    assert errors / words <= 0.2


def test_live_stream_gives_final_transcript_and_timing(stt, real_utts):
    u = real_utts["One two three four five six seven eight nine ten."]
    res = transcribe_live(stt, u.pcm)
    assert corpus.wer(u.text, res.text)[0] <= 2, res.text
    # end of speech as the VAD saw it vs the clean signal's energy
    assert abs(res.speech_end_ms - u.speech_ms[1]) < 400
    assert res.final_ms is not None and res.final_ms >= 0 and res.ready_at_ms >= res.speech_end_ms
    assert res.speculative_decodes >= 1        # decoded while the pause was being timed


def test_stream_partial_then_finalize_reuses_the_speculative_decode(stt, real_utts):
    u = real_utts["The quick brown fox jumps over the lazy dog."]
    s = stt.stream()
    end = int((u.speech_ms[1] + 400) * 8)       # speech plus a pause, not yet the VAD's end of speech
    for i in range(0, end, 160):
        s.accept(u.pcm[i:i + 160])
    partial = s.partial()
    assert "fox" in corpus.words(partial)
    decodes = s.decodes
    final = s.finalize()
    assert final == partial and s.decodes == 0     # reset after finalize; no decode was needed
    assert decodes == 1


class _SetAfter(threading.Event):
    """An event that reads as set from its `n`-th look on: the caller resuming mid-decode."""

    def __init__(self, n: int):
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n or super().is_set()


def test_a_stale_speculative_decode_gives_up_and_keeps_nothing(stt, real_utts):
    u = real_utts["The quick brown fox jumps over the lazy dog."]
    s = stt.stream()
    end = int((u.speech_ms[1] + 400) * 8)
    for i in range(0, end, 160):
        s.accept(u.pcm[i:i + 160])
    gone = threading.Event()
    gone.set()
    assert s.partial(gone) is None and s.abandoned == 1 and not s.ready
    # set while the encoder ran: whisper-ct2 gives up before the decoder (the 2nd look)
    late = _SetAfter(2)
    assert s.partial(late) is None and late.looks == 2 and s.abandoned == 2 and not s.ready
    # nothing stale was kept: the next look decodes, and the final transcript reuses that
    partial = s.partial()
    assert "fox" in corpus.words(partial) and s.decodes == 1 and s.ready
    assert s.finalize() == partial


def test_two_segments_and_silence(stt):
    beckett = corpus.real_set(20.0)
    u = next(x for x in beckett if x.source == "real:beckett")
    res = transcribe_live(stt, u.pcm)
    e, n = corpus.wer(u.text, res.text)
    assert e / n <= 0.35, res.text
    silence = corpus.to_line(np.zeros(8000 * 2, np.int16), 30.0, np.random.default_rng(1))
    quiet = transcribe_live(stt, (silence + 1).astype(np.int16))
    assert quiet.text == "" and quiet.final_ms is None


def test_streaming_transducer_when_installed(speech_models):
    """The production engine (sherpa-onnx streaming zipformer). Its archive lives on the sherpa-onnx
    releases, which these machines cannot reach; a box or a mirror that has it runs this test."""
    from appliance.speech.registry import ModelRegistry
    from appliance.speech.stt import TransducerEngine, load_transducer

    reg = ModelRegistry()
    name = "streaming-zipformer-en-20M"
    src = reg.info(name).source
    mirrored = reg.mirror is not None and ((reg.mirror / src["mirror"]).is_dir()
                                           or (reg.mirror / src["url"].rsplit("/", 1)[-1]).is_file())
    if reg.status(name) == "missing":
        if not mirrored:    # tests fetch nothing from the network
            pytest.skip(f"{name} is not installed and not in the models mirror ({reg.mirror}): its release "
                        f"archive is on the sherpa-onnx releases, which these machines cannot reach")
        reg.fetch(name, progress=False)
    engine = load_transducer(reg, name, 2)
    assert isinstance(engine, TransducerEngine)
    u = {x.text: x for x in corpus.real_set(20.0)}["The quick brown fox jumps over the lazy dog."]
    assert corpus.wer(u.text, engine.transcribe(u.pcm, 8000))[0] <= 3
    s = engine.stream()
    for i in range(0, len(u.pcm), 160):
        s.accept(u.pcm[i:i + 160])
    assert "fox" in corpus.words(s.partial())       # decoded while the audio arrived
    assert "fox" in corpus.words(s.finalize())


def test_concurrent_whisper_decodes_match_sequential_ones(stt, real_utts):
    """Calls decode at once on the shared engine (no process-wide lock): each result is the same as
    when decoded alone (sherpa-onnx recognizers are thread safe, streams per decode)."""
    from concurrent.futures import ThreadPoolExecutor

    texts = ("The quick brown fox jumps over the lazy dog.", "it was the age of foolishness,",
             "One two three four five six seven eight nine ten.")
    pcms = [real_utts[t].pcm for t in texts] * 2
    alone = [stt.transcribe(p, 8000) for p in pcms[:3]] * 2
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda p: stt.transcribe(p, 8000), pcms))
    assert together == alone
