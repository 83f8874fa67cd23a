"""The answering-machine detector on corpus recordings of every kind, on tones, and the app_amd baseline.

A few cases of `tools/amd_corpus.py` are rendered into a temporary folder (same recipes as the
benchmark's corpus: espeak-ng and Piper voices, noise, G.711) and played to the detector as if
live, with the real STT (transcripts modelled as arriving 300 ms after they were asked for, so
the test does not depend on this machine's load).
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.detect.amd import AmdDetector
from appliance.detect.amd_run import read_wav, run_live
from appliance.detect.app_amd import AppAmd, run_app_amd
from appliance.detect.config import AmdConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import amd_corpus  # noqa: E402

RATE = 8000

# One recording per kind (ids of the default corpus), from both splits, with noise of each sort.
CASES = {
    "human/short": 11,
    "human/short+babble": 37,
    "human/repeat": 92,
    "human/business": 131,
    "human/tricky": 170,
    "machine/personal_short": 200,
    "machine/personal_long": 250,
    "machine/carrier": 300,
    "machine/business": 350,
    "machine/music_first": 400,
    "machine/recorded_name": 430,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("amdcorpus")
    cases = amd_corpus.render_subset(list(CASES.values()), d)
    return {c.id: (c, d / c.file) for c in cases}


@pytest.fixture(scope="module")
def stt():
    from appliance.detect.amd_run import load_stt
    fn, _ = load_stt(threads=1)
    return fn


@pytest.mark.parametrize("kind", list(CASES))
def test_corpus_case_of_each_kind(kind, corpus, stt):
    case, path = corpus[f"amd{CASES[kind]:04d}"]
    assert kind.split("+")[0] == f"{case.label}/{case.kind}"
    run = run_live(read_wav(path), AmdConfig(), stt, stt_latency_ms=300)
    r = run.result
    assert r.label == case.label, (case.texts, r, run.transcript)
    if case.label == "human":
        # Decided soon after the person's first words, and never while they were speaking.
        assert case.first_turn_end_ms < r.decision_ms <= case.first_turn_end_ms + 1500
        assert run.beep_ms is None
    else:
        assert r.decision_ms <= case.greeting_end_ms + 300
        if case.beep_end_ms is not None:
            assert run.beep_ms is not None and abs(run.beep_ms - case.beep_end_ms) <= 100
            assert run.greeting_end_ms == run.beep_ms
        else:
            assert run.beep_ms is None
            assert case.speech_end_ms <= run.greeting_end_ms <= case.speech_end_ms + 2500


def test_corpus_is_reproducible_and_split():
    a = amd_corpus.build_cases(7, 60)
    b = amd_corpus.build_cases(7, 60)
    assert [x.texts for x in a] == [x.texts for x in b] and [x.voice for x in a] == [x.voice for x in b]
    full = amd_corpus.build_cases()
    assert len(full) >= 400
    dev = [c for c in full if c.split == "dev"]
    assert not {c.voice for c in dev} & set(amd_corpus.HELDOUT_VOICES)
    assert {c.kind for c in full} >= {"short", "repeat", "business", "tricky", "personal_short", "personal_long",
                                      "carrier", "music_first", "recorded_name"}
    assert {c.codec for c in full} == {"ulaw", "alaw", "pcm16"} and {c.rate for c in full} == {8000, 16000}


def _play(det, pcm):
    out = None
    for i in range(0, len(pcm) - 159, 160):
        out = out or det.feed(pcm[i:i + 160])
    return out


def _tone(f, dur_ms, amp=6000.0):
    t = np.arange(int(RATE * dur_ms / 1000)) / RATE
    return amp * np.sin(2 * np.pi * f * t)


def _noise(ms, rms=40.0, seed=0):
    return np.random.default_rng(seed).normal(0, rms, int(RATE * ms / 1000))


def _pcm(x):
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def test_fax_cng_is_a_machine_and_silence_is_unknown():
    cng = np.concatenate([_noise(500), _tone(1100, 500), _noise(3000, seed=1)])
    r = _play(AmdDetector(replace(AmdConfig(), use_transcript=False)), _pcm(cng))
    assert r is not None and (r.label, r.cause) == ("machine", "fax_tone")
    r = _play(AmdDetector(replace(AmdConfig(), use_transcript=False)), _pcm(_noise(8000)))
    assert r is not None and (r.label, r.cause) == ("unknown", "initial_silence")


def test_a_tonal_word_is_speech_not_silence():
    """A short steady-pitched word ("Hi.") that the tone bank finds tonal is still an answer."""
    x = np.concatenate([_noise(600), _tone(300, 60, 3000), _tone(300, 200, 3000) * np.linspace(1, 0.2, 1600),
                        _noise(3000, seed=2)])
    r = _play(AmdDetector(replace(AmdConfig(), use_transcript=False)), _pcm(x))
    assert r is not None and r.label == "human"


# ------------------------------------------------------------------------------- app_amd baseline
def _bursts(spec):
    """[(voiced?, ms), ...] -> 8 kHz: loud noise bursts (mean |x| ~ 1600) and near silence."""
    rng = np.random.default_rng(3)
    return _pcm(np.concatenate([rng.normal(0, 2000 if v else 20, int(RATE * ms / 1000)) for v, ms in spec]))


def test_app_amd_rules_match_the_c_code():
    # One word, then the after-greeting silence: HUMAN once 800 ms of silence have passed.
    r = run_app_amd(_bursts([(False, 300), (True, 400), (False, 1500)]))
    assert r.label == "human" and r.cause.startswith("HUMAN-800") and r.decision_ms == 300 + 400 + 800
    # Two words after silence reach maximumNumberOfWords (2): MACHINE.
    r = run_app_amd(_bursts([(False, 300), (True, 300), (False, 200), (True, 300), (False, 1500)]))
    assert r.label == "machine" and r.cause == "MAXWORDS-2-2"
    # One long word: the greeting passes 1500 ms of voice: LONGGREETING.
    r = run_app_amd(_bursts([(False, 300), (True, 2500)]))
    assert r.label == "machine" and r.cause.startswith("LONGGREETING")
    # Nobody speaks: INITIALSILENCE is a machine for app_amd.
    r = run_app_amd(_bursts([(False, 4000)]))
    assert r.label == "machine" and r.cause.startswith("INITIALSILENCE-2500")
    # Streaming and whole-file agree.
    det = AppAmd()
    pcm = _bursts([(False, 300), (True, 400), (False, 1500)])
    assert _play(det, pcm).decision_ms == run_app_amd(pcm).decision_ms


@pytest.mark.parametrize("text,human,machine,weak,music", [
    ("Hello, who's calling?", True, False, False, False),
    ("She's not available at the moment, who's calling?", True, False, True, False),
    ("She's not available at the moment, move calling.", True, False, True, False),   # STT slip
    ("Thank you for calling.", False, False, False, False),
    ("Hey, it's Sam, leave my message.", False, True, False, False),                  # STT slip
    ("Do you want to leave a message?", True, True, False, False),                    # a person: human wins
    ("The mailbox is full. Goodbye.", False, True, True, False),
    ("We'll start in full. Good bye.", False, False, True, False),                    # a garbled carrier message
    ("(gentle music)", False, False, False, True),
    ("[ Silence ]", False, False, False, False),
    ("♪ Hello? ♪", False, False, False, False),
])
def test_transcript_cues(text, human, machine, weak, music):
    from appliance.detect.cues import cues
    c = cues(text)
    assert (c["human"] is not None, c["machine"] is not None, c["machine_weak"] is not None,
            c["music"] is not None) == (human, machine, weak, music), c
