"""Echo: the libspeexdsp canceller (compiled through Cython) and its numpy twin on a simulated line
echo (delay, hybrid dispersion, echo return loss, noise, µ-law), and the gate that keeps barge-in
from firing on our own echo. Speech is espeak-ng; the VAD is the real Silero, configured as the call
configures it. tools/bench_echo.py runs the same cases over more delays and losses."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.detect import echo as echo_mod
from appliance.detect.config import EchoConfig
from appliance.detect.echo import DelayEstimator, EchoCanceller, EchoGate, EchoPath, core_class

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import bench_echo  # noqa: E402

IMPLS = ["compiled", "pure"]
FRAME = 160


@pytest.fixture(scope="module")
def agent():
    return bench_echo.speech(bench_echo.AGENT_TEXT, "en-us", 165, -16.0)


@pytest.fixture(scope="module")
def caller():
    return bench_echo.speech(bench_echo.CALLER_TEXT, "en-us+f3", 160, -22.0)


def test_compiled_canceller_is_built():
    assert echo_mod.NATIVE_IMPORT_ERROR is None, echo_mod.NATIVE_IMPORT_ERROR
    assert core_class("compiled").__module__.startswith("appliance._native")


@pytest.mark.parametrize("impl", IMPLS)
def test_same_contract_and_clear_errors(impl):
    core = core_class(impl)(160, 1024, 8000, True, False)
    out = core.process(np.zeros(160, np.int16), np.zeros(160, np.int16))
    assert out.dtype == np.int16 and out.shape == (160,)
    assert core.linear_output.shape == (160,)
    with pytest.raises(ValueError, match="frame_size <= filter_length"):
        core_class(impl)(160, 80)
    with pytest.raises(ValueError, match="sample rate"):
        core_class(impl)(160, 1024, 0)
    ec = EchoCanceller(128, implementation=impl)
    with pytest.raises(ValueError, match="frames of 160 samples, got mic 80, ref 160"):
        ec.process(np.zeros(80, np.int16), np.zeros(160, np.int16))
    with pytest.raises(ValueError, match="unknown implementation 'fast'"):
        core_class("fast")


@pytest.mark.parametrize("impl", IMPLS)
def test_erle_above_floor_and_delay_found_on_a_known_path(agent, impl):
    r = bench_echo.run_case(agent, None, 0.0, delay_ms=120, erl_db=12, implementation=impl, seconds=6.0)
    assert r["delay_found_ms"] == pytest.approx(120, abs=2)
    floor = 20.0 if impl == "compiled" else 15.0   # measured ~26 / ~19 dB (tools/bench_echo.py)
    assert r["erle_db"] >= floor, r
    assert r["false_pauses"] == 0 and r["false_barge_ins"] == 0, r


def test_compiled_and_twin_agree_in_behaviour(agent, caller):
    """Both cancel the same path by a wide margin, neither hurts the caller in double talk, and the
    gate behaves the same on top of both: no false barge-in, the caller barges in."""
    res = {impl: (bench_echo.run_case(agent, None, 0.0, 60, 6, impl, 6.0),
                  bench_echo.run_case(agent, caller, 4.0, 60, 6, impl, 8.0)) for impl in IMPLS}
    for impl, (eo, dt) in res.items():
        assert eo["erle_db"] >= 15.0, (impl, eo)
        assert eo["false_barge_ins"] == 0 and eo["false_pauses"] == 0, (impl, eo)
        assert dt["pause_ms"] is not None and dt["pause_ms"] <= 300, (impl, dt)
        assert abs(dt["caller_loss_db"]) <= 3.0, (impl, dt)   # the caller's voice goes through
    erles = [res[i][0]["erle_db"] for i in IMPLS]
    assert max(erles) - min(erles) <= 12.0, erles


@pytest.mark.parametrize("impl, delay, erl", [("compiled", 20, 6), ("compiled", 200, 6), ("pure", 200, 20)])
def test_gate_never_fires_on_echo_only_but_the_vad_alone_would(agent, impl, delay, erl):
    r = bench_echo.run_case(agent, None, 0.0, delay, erl, impl, 7.0)
    assert r["false_caller_frames"] == 0, r
    assert r["false_pauses"] == 0 and r["false_barge_ins"] == 0, r
    assert r["false_barge_ins_vad_only"] > 0, "the echo must be loud enough to fool the VAD for this test to mean anything"


def test_doubletalk_barges_in(agent, caller):
    r = bench_echo.run_case(agent, caller, 4.0, 200, 12, "compiled", 8.0)
    assert r["pause_ms"] is not None and r["pause_ms"] <= 300, r
    assert r["barge_in_ms"] is not None and r["barge_in_ms"] <= 600, r
    assert r["false_barge_ins"] == 0, r


def test_gate_without_playout_passes_vad_speech():
    gate = EchoGate(EchoConfig())
    x = np.zeros(FRAME, np.int16)
    gate.update(x, x, x)
    assert gate.speech_is_caller(True) and not gate.speech_is_caller(False)


def test_gate_relearns_when_the_canceller_starts_over(agent):
    ec = EchoCanceller(128, implementation="compiled")
    gate = EchoGate(EchoConfig(), ec)
    path = EchoPath(60, 12, -65)
    for k in range(200):
        ref = agent[k * FRAME:(k + 1) * FRAME]
        mic = path.process(ref)
        gate.update(mic, ec.process(mic, ref), ref)
    assert gate.state.echo_ratio_db < -20.0      # learned: the residual is far below what we play
    ec.reset()
    ref = agent[200 * FRAME:201 * FRAME]
    mic = path.process(ref)
    gate.update(mic, ec.process(mic, ref), ref)
    assert gate.state.echo_ratio_db == 0.0       # back to "echo as loud as our voice"


def test_delay_estimator_finds_the_bulk_delay(agent):
    est = DelayEstimator(max_delay_ms=300)
    path = EchoPath(delay_ms=170, erl_db=10, noise_dbfs=-60)
    for k in range(150):
        ref = agent[k * FRAME:(k + 1) * FRAME]
        est.update(path.process(ref), ref)
    assert est.delay_ms == pytest.approx(170, abs=2)


def test_no_barge_in_when_the_echo_path_moves_mid_call(agent):
    """The line's delay jumps from 60 to 160 ms: until the canceller re-locks the echo comes back
    uncancelled at full level. Level says "caller"; coherence with our playout says "echo"."""
    ec = EchoCanceller(128, implementation="compiled")
    gate = EchoGate(EchoConfig(), ec)
    vad = bench_echo._Vad()
    before, after = EchoPath(60, 6, -65), EchoPath(160, 6, -65, seed=5)
    play = np.resize(agent, 600 * FRAME)
    run = longest = 0
    for k in range(600):
        ref = play[k * FRAME:(k + 1) * FRAME]
        mic = (before if k < 300 else after).process(ref)
        clean = ec.process(mic, ref)
        gate.update(mic, clean, ref)
        run = run + 1 if gate.speech_is_caller(vad(clean)) else 0
        longest = max(longest, run)
    assert ec.delay_ms == pytest.approx(160, abs=2) and ec.generation >= 2
    assert longest * 20 < 60, f"caller-attributed echo ran {longest * 20} ms (a pause needs 60)"


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), level_dbfs=st.floats(-45.0, -10.0), impl=st.sampled_from(IMPLS))
def test_property_nothing_played_leaves_the_caller_alone(seed, level_dbfs, impl):
    """Both cores: with nothing played there is no echo to remove, so the caller comes through at
    their level (white noise of any level and seed, residual suppression off)."""
    rng = np.random.default_rng(seed)
    core = core_class(impl)(FRAME, 1024, 8000, False, False)
    silent = np.zeros(FRAME, np.int16)
    gains = []
    for k in range(30):
        mic = np.clip(rng.standard_normal(FRAME) * 32768 * 10 ** (level_dbfs / 20), -32768, 32767).astype(np.int16)
        out = core.process(mic, silent)
        assert out.dtype == np.int16 and out.shape == (FRAME,)
        if k >= 5:
            gains.append(float(np.sum(out.astype(np.float64) ** 2)) / float(np.sum(mic.astype(np.float64) ** 2)))
    assert 10 * np.log10(np.mean(gains)) == pytest.approx(0.0, abs=1.0)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), impl=st.sampled_from(IMPLS))
def test_property_a_pure_echo_is_cancelled(seed, impl):
    """Both cores: mic = ref through a fixed short path, white noise of any seed: > 10 dB removed."""
    rng = np.random.default_rng(seed)
    h = np.array([0.0, 0.5, -0.25, 0.1])
    core = core_class(impl)(FRAME, 512, 8000, False, False)
    x = rng.standard_normal(FRAME * 120) * 3000
    y = np.convolve(x, h)[:len(x)]
    ref, mic = x.astype(np.int16), np.clip(y, -32768, 32767).astype(np.int16)
    res = echo = 0.0
    for k in range(120):
        out = core.process(mic[k * FRAME:(k + 1) * FRAME], ref[k * FRAME:(k + 1) * FRAME])
        if k >= 80:
            res += float(np.sum(out.astype(np.float64) ** 2))
            echo += float(np.sum(mic[k * FRAME:(k + 1) * FRAME].astype(np.float64) ** 2))
    assert 10 * np.log10(echo / res) > 10.0
