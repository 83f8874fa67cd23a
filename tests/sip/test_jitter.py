"""The adaptive jitter buffer: compiled and pure twins agree exactly; it reorders, conceals loss,
drops duplicates and late packets, and its target delay follows the network's jitter."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.lines.sip import jitter
from appliance.lines.sip.jitter_pure import CONCEALED, OK, PUT_DUPLICATE, PUT_LATE, SILENCE

IMPLS = [jitter.pure.JitterBuffer] + ([jitter.compiled.JitterBuffer] if jitter.compiled else [])


def test_compiled_twin_is_built_and_selected():
    assert jitter.compiled is not None, "native/jitter.pyx is not built"
    if os.environ.get("APPLIANCE_NO_EXTENSIONS", "") in ("", "0"):
        assert jitter.IMPLEMENTATION == "compiled"
    else:
        assert jitter.IMPLEMENTATION == "pure"


def frame(i: int) -> np.ndarray:
    return np.full(160, (i % 3000) + 1, dtype=np.int16)


def simulate(cls, arrivals, ticks, **kw):
    """arrivals: [(arrival_ms, index)], ticks every 20 ms; returns played values and stats."""
    jb = cls(**kw)
    out = np.zeros(160, np.int16)
    arrivals = sorted(arrivals)
    played, statuses, delays = [], [], []
    k = 0
    for t in range(ticks):
        now = t * 20.0
        while k < len(arrivals) and arrivals[k][0] <= now:
            jb.put(arrivals[k][1], frame(arrivals[k][1]), arrivals[k][0])
            k += 1
        statuses.append(jb.get(out))
        played.append(int(out[0]))
        delays.append(jb.delay_ms)
    return played, statuses, delays, jb.stats()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3000, allow_nan=False), st.integers(0, 200)), max_size=200),
       st.integers(1, 4), st.integers(5, 20))
def test_pure_and_compiled_agree(arrivals, min_frames, max_frames):
    if len(IMPLS) < 2:
        pytest.skip("compiled jitter buffer not built")
    results = [simulate(cls, arrivals, 170, min_frames=min_frames, max_frames=max_frames) for cls in IMPLS]
    assert results[0] == results[1]


@pytest.mark.parametrize("cls", IMPLS)
def test_in_order_stream_plays_everything_in_order(cls):
    played, statuses, delays, stats = simulate(cls, [(i * 20.0, i) for i in range(100)], 110)
    audio = [p for p, s in zip(played, statuses) if s == OK]
    assert audio == [i + 1 for i in range(100)]
    assert statuses[:100].count(CONCEALED) <= 1 and stats["late"] == 0 and max(delays[:100]) <= 40
    assert statuses[-1] == SILENCE, "after the stream ends: a short concealment, then silence"


@pytest.mark.parametrize("cls", IMPLS)
def test_reordering_and_duplicates_are_repaired(cls):
    jb = cls(min_frames=3)
    out = np.zeros(160, np.int16)
    order = [0, 2, 1, 4, 3, 3, 5, 7, 6]
    results = [jb.put(i, frame(i), 0.0) for i in order]
    assert results.count(PUT_DUPLICATE) == 1
    values = []
    for _ in range(8):
        if jb.get(out) == OK:
            values.append(int(out[0]))
    assert values == [frame(i)[0] for i in range(8)]
    assert jb.put(1, frame(1), 200.0) == PUT_LATE


@pytest.mark.parametrize("cls", IMPLS)
def test_loss_is_concealed_with_fading_repeat(cls):
    arrivals = [(i * 20.0, i) for i in range(50) if i not in (10, 11)]
    played, statuses, _, stats = simulate(cls, arrivals, 60)
    assert stats["concealed"] >= 2
    i = statuses.index(CONCEALED)
    assert 0 < abs(played[i]) < abs(played[i - 1]), "concealment repeats the last frame, faded"
    assert statuses[0] == SILENCE or statuses[0] == OK


@pytest.mark.parametrize("cls", IMPLS)
def test_target_delay_follows_jitter(cls):
    rng = random.Random(7)
    calm = [(i * 20.0 + rng.uniform(0, 2), i) for i in range(500)]
    rough = [(i * 20.0 + rng.uniform(0, 100), i) for i in range(500)]
    _, _, d_calm, s_calm = simulate(cls, calm, 520)
    _, st_rough, d_rough, s_rough = simulate(cls, rough, 520)
    assert s_calm["target_ms"] <= 40
    assert 80 <= s_rough["target_ms"] <= 160
    assert np.mean(d_rough[100:500]) > np.mean(d_calm[100:500]) + 40
    # with the buffer adapted, late losses stay rare
    assert s_rough["late"] < 0.05 * 500, s_rough
