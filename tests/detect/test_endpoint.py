"""Endpointing: transcript-aware waits, the smart-turn model on upsampled phone audio, and the
fallback when the model is missing. Speech comes from espeak-ng through tools/turn_corpus.py (the
same phone-band rendering as the benchmark); the VAD is the real Silero."""
from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.audio import Resampler
from appliance.detect import endpoint as endpoint_mod
from appliance.detect import smart_turn
from appliance.detect.config import EndpointConfig
from appliance.detect.endpoint import Endpointer, classify_transcript
from appliance.errors import ModelError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import turn_corpus  # noqa: E402

FRAME = 160


# ---- transcript shapes ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, shape", [
    ("my phone number is five five five", "number"),
    ("you can reach me on 0 7 7", "number"),
    ("my number is 555-0123.", "statement"),         # a whole 7-digit number and a full stop may end the turn
    ("my number is 555-01.", "number"),               # a short run of digits never does
    ("my last name is spelled s m", "spelling"),
    ("the reference is alpha bravo", "spelling"),
    ("i'd like to book an appointment for um", "filler"),
    ("i was calling because", "filler"),
    ("can you tell me", "filler"),
    ("I was calling because...", "filler"),           # Whisper's trailing off is not a full stop
    ("what time do you close today?", "question"),
    ("what time do you close today", "open_question"),
    ("i have a terrible toothache.", "statement"),
    ("i need a", "filler"),
    ("", "unknown"),
    (None, "unknown"),
])
def test_transcript_shapes(text, shape):
    assert classify_transcript(text) == shape


def _feed_pause(ep: Endpointer, transcript: str | None, speech_ms: int = 1000, max_pause_ms: int = 3000) -> float | None:
    """Speech then silence through the endpointer (VAD verdicts given): the wait after speech at which
    the turn ended, or None."""
    frame = np.zeros(FRAME, np.int16)
    t = 0.0
    for _ in range(speech_ms // 20):
        assert not ep.feed(frame, True, t, transcript)
        t += 20
    end = t
    while t - end < max_pause_ms:
        if ep.feed(frame, False, t, transcript):
            return t + 20 - end
        t += 20
    return None


def test_incomplete_turns_wait_longer_and_questions_end_sooner():
    cfg = replace(EndpointConfig(), semantic=False)
    waits = {text: _feed_pause(Endpointer(cfg), text) for text in (
        "my phone number is five five five", "my last name is spelled s m",
        "i'd like to book an appointment for um", "what time do you close today?", "i have a toothache")}
    for text in ("my phone number is five five five", "my last name is spelled s m",
                 "i'd like to book an appointment for um"):
        assert waits[text] == cfg.incomplete_silence_ms, text
    assert waits["what time do you close today?"] == cfg.question_silence_ms
    assert waits["i have a toothache"] == cfg.min_silence_ms
    assert cfg.question_silence_ms < cfg.min_silence_ms < cfg.incomplete_silence_ms <= cfg.max_silence_ms


def test_max_silence_caps_every_wait():
    cfg = replace(EndpointConfig(), semantic=False, incomplete_silence_ms=5000, max_silence_ms=900)
    ep = Endpointer(cfg)
    assert _feed_pause(ep, "my number is five five") == 900
    assert ep.last_decision.reason == "max_silence"


# ---- on real phone-band speech -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def voice():
    return turn_corpus.Espeak("en-us", 165)


def _phone(pcm16k: np.ndarray, seed: int = 3) -> np.ndarray:
    """16 kHz voice -> the line: 8 kHz, noise, µ-law round trip (as the corpus renders it)."""
    return turn_corpus._line(turn_corpus._resample(pcm16k, 16000, 8000), np.random.default_rng(seed), -20.0, -58.0)


def _run_turn(ep: Endpointer, pcm: np.ndarray, transcript_after_ms: list[tuple[float, str]]) -> float | None:
    """A phone-band turn through the real VAD and the endpointer; the audio time of the decision."""
    from appliance.detect.vad import Vad

    vad = Vad(sample_rate=8000)
    for k in range(len(pcm) // FRAME):
        t = k * 20.0
        fr = pcm[k * FRAME:(k + 1) * FRAME]
        vad.feed(fr)
        tr = None
        for at, text in transcript_after_ms:
            if t >= at:
                tr = text
        if ep.feed(fr, vad.probability >= 0.5, t, tr):
            return t + 20
    return None


def test_mid_number_pause_is_not_cut_off_but_silence_timeout_would(voice):
    a, b = turn_corpus.split_sentence(voice, "my phone number is five five five", "zero one two three")
    gap = np.zeros(16 * 900, np.int16)
    lead, trail = np.zeros(16 * 300, np.int16), np.zeros(16 * 2000, np.int16)
    pcm = _phone(np.concatenate((lead, a, gap, b, trail)))
    pause_start = (len(lead) + len(a)) / 16
    speech_end = (len(lead) + len(a) + len(gap) + len(b)) / 16
    script = [(pause_start + 200, "my phone number is five five five"),
              (speech_end + 200, "my phone number is five five five zero one two three")]
    adaptive = _run_turn(Endpointer(replace(EndpointConfig(), semantic=False)), pcm, script)
    fixed = _run_turn(Endpointer(replace(EndpointConfig(), semantic=False)), pcm, [])
    assert fixed is not None and fixed < speech_end, "the 500 ms silence rule cuts this caller off"
    assert adaptive is not None and adaptive > speech_end, "the transcript-aware endpointer waits for the rest"


def test_complete_question_ends_sooner_than_statement(voice):
    pcm = _phone(np.concatenate((np.zeros(16 * 300, np.int16), voice.say("what time do you close today"),
                                 np.zeros(16 * 2000, np.int16))))
    ends = {}
    for text in ("what time do you close today?", "i would like an appointment"):
        ep = Endpointer(replace(EndpointConfig(), semantic=False))
        ends[text] = _run_turn(ep, pcm, [(0.0, text)])
    assert ends["what time do you close today?"] < ends["i would like an appointment"]


# ---- the smart-turn model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return smart_turn.shared_model()


def test_features_match_pipecat_reference():
    """Our log-mel features equal pipecat's vendored WhisperFeatureExtractor port (when installed)."""
    import importlib.util

    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pipecat-ai is not installed (setup.sh installs it with --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "audio" / "turn" / "smart_turn" / "_whisper_features.py"
    ref_spec = importlib.util.spec_from_file_location("_wf", path)
    ref = importlib.util.module_from_spec(ref_spec)
    ref_spec.loader.exec_module(ref)
    x = np.pad((np.random.default_rng(0).standard_normal(40000) * 0.1).astype(np.float32), (88000, 0))
    np.testing.assert_allclose(smart_turn.log_mel_features(x), ref.compute_whisper_log_mel_features(x), atol=1e-5)


def test_smart_turn_on_upsampled_phone_audio(model, voice):
    """Two clear cases of the corpus (both espeak voices agree there in tools/bench_endpoint.py),
    through the line (8 kHz µ-law, noise), upsampled to 16 kHz: a finished question sounds complete;
    a sentence cut mid clause ("I was calling because | I have a toothache") does not."""
    done = _phone(np.concatenate((np.zeros(16 * 300, np.int16), voice.say("are you open on saturdays?"),
                                  np.zeros(16 * 200, np.int16))))
    a, _ = turn_corpus.split_sentence(voice, "i was calling because", "i have a toothache")
    cut = _phone(np.concatenate((np.zeros(16 * 300, np.int16), a, np.zeros(16 * 200, np.int16))))
    up = lambda x: Resampler(8000, 16000).process(x)  # noqa: E731
    p_done, p_cut = model.probability(up(done)), model.probability(up(cut))
    assert p_done >= 0.8 and p_cut < 0.2, (p_done, p_cut)
    # fed 8 kHz samples as if they were 16 kHz the input is a different signal (pipecat#3844):
    # the verdict must come from the upsampled audio, which is what the endpointer gives it
    assert abs(model.probability(done) - p_done) > 1e-3


def test_endpointer_asks_the_model_and_counts_its_inference_time(model, voice):
    pcm = _phone(np.concatenate((np.zeros(16 * 300, np.int16), voice.say("are you open on saturdays?"),
                                 np.zeros(16 * 2000, np.int16))))
    cfg = replace(EndpointConfig(), semantic=True, semantic_complete_silence_ms=60)
    ep = Endpointer(cfg, model=model, background=False)
    _run_turn(ep, pcm, [])
    d = ep.last_decision
    assert len(ep.inference_ms) == 1
    if d.reason == "semantic_complete":
        assert d.semantic_probability >= cfg.semantic_complete
        # the answer counts only once it could have arrived: check time + inference time
        assert d.waited_ms >= cfg.semantic_check_ms + ep.inference_ms[0] - 20
    else:   # the model answered after min_silence_ms (a loaded machine): the silence rule decided
        assert d.reason == "silence" and cfg.semantic_check_ms + ep.inference_ms[0] > cfg.min_silence_ms


def test_background_inference_does_not_block_feed(model, voice):
    pcm = _phone(np.concatenate((np.zeros(16 * 300, np.int16), voice.say("thank you, goodbye."),
                                 np.zeros(16 * 1500, np.int16))))
    import time

    ep = Endpointer(replace(EndpointConfig(), semantic=True), model=model, background=True)
    slowest = 0.0
    for k in range(len(pcm) // FRAME):
        t0 = time.perf_counter()
        done = ep.feed(pcm[k * FRAME:(k + 1) * FRAME], 20 <= k < 20 + 40, k * 20.0)   # 800 ms of "speech"
        slowest = max(slowest, time.perf_counter() - t0)
        if done:
            break
    assert done
    # feed never waited for an inference (that takes tens to hundreds of ms); generous for a loaded box
    assert slowest < 0.05 or slowest < 0.5 * (min(ep.inference_ms or [1.0]) / 1000.0)


def test_missing_model_is_a_clear_error_and_the_endpointer_falls_back(monkeypatch, caplog, tmp_path):
    with pytest.raises(ModelError, match=r"smart-turn-v3.2-cpu.onnx not found at .*nothing.onnx.*pip install --no-deps pipecat-ai"):
        smart_turn.SmartTurnModel(tmp_path / "nothing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"cannot load smart-turn model .*bad.onnx"):
        smart_turn.SmartTurnModel(bad)

    # no model anywhere on this machine: one warning, then silence and transcript rules
    monkeypatch.setattr(smart_turn, "find_model", lambda: None)
    monkeypatch.setattr(smart_turn, "_shared", None)
    monkeypatch.setattr(endpoint_mod, "_warned_missing", False)
    cfg = replace(EndpointConfig(), semantic=True)
    with caplog.at_level(logging.WARNING, logger="appliance.detect.endpoint"):
        ep = Endpointer(cfg, background=False)
        assert _feed_pause(ep, "i have a toothache") == cfg.min_silence_ms
        assert _feed_pause(ep, "my number is five five five") == cfg.incomplete_silence_ms
    assert "not found" in (ep.model_error or "")
    warnings = [r for r in caplog.records if "semantic endpointing off" in r.getMessage()]
    assert len(warnings) == 1 and "smart-turn-v3.2-cpu.onnx" in warnings[0].getMessage()


@pytest.mark.parametrize("background", [False, True])
def test_a_model_that_fails_at_inference_turns_semantic_off_for_the_call(caplog, background):
    class Broken:   # a model file that loads but breaks at run time
        def probability(self, audio):
            raise RuntimeError("onnxruntime: bad input")

    import time

    cfg = replace(EndpointConfig(), semantic=True, min_silence_ms=1500, max_silence_ms=1600)
    ep = Endpointer(cfg, model=Broken(), background=background)
    frame = np.zeros(FRAME, np.int16)
    ended = None
    with caplog.at_level(logging.WARNING, logger="appliance.detect.endpoint"):
        for k in range(200):
            if ep.feed(frame, k < 50, k * 20.0):
                ended = k * 20.0 + 20 - 1000
                break
            if k >= 50 and background:
                time.sleep(0.02)   # real time, so the worker thread answers (it may be busy for another call)
    assert ended == cfg.min_silence_ms   # the silence rule decided
    assert "bad input" in (ep.model_error or "")
    assert any("bad input" in r.getMessage() for r in caplog.records)
