"""Cost of the per-call 20 ms frame pipeline, compiled core vs pure twin, and ring-buffer throughput.

The frame pipeline is what every call pays 50 times a second: G.711 decode, ring write and read,
resample 8 -> 16 kHz, a Goertzel bank of 8 tones, frame energy. Both implementations run in the
same process, interleaved, so a noisy machine affects both alike; figures are medians of rounds.
"""
from __future__ import annotations

import collections
import os
import platform
import statistics
import time

import numpy as np

from ..stats import percentiles

TARGET_FRAME_US = 200.0
TARGET_SPEEDUP = 20.0
TONES = np.array([350.0, 440.0, 480.0, 620.0, 697.0, 941.0, 1000.0, 1400.0])


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=2.0, help="audio seconds per round (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per implementation (default 5)")


def _frame_source(seconds: float, impl) -> list[bytes]:
    rng = np.random.default_rng(1)
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (6000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 800, t.size)).astype(np.int16)
    enc = impl.ulaw_encode(pcm)
    return [enc[i:i + 160] for i in range(0, len(enc) - 159, 160)]


def _pipeline_us(impl, frames: list[bytes]) -> float:
    """Mean µs per 20 ms frame for one pass over `frames`."""
    ring = impl.RingBuffer(8000)
    rs = impl.Resampler(8000, 16000)
    out = np.empty(160, dtype=np.int16)
    decode, goertzel, energy = impl.ulaw_decode, impl.goertzel_bank, impl.energy_dbfs
    t0 = time.perf_counter()
    for payload in frames:
        ring.write(decode(payload))
        ring.read_into(out)
        rs.process(out)
        goertzel(out, TONES, 8000)
        energy(out)
    return (time.perf_counter() - t0) * 1e6 / len(frames)


def _ring_ops_per_s(make, write, read, n_ops: int) -> float:
    chunk = np.arange(160, dtype=np.int16)
    ring = make()
    t0 = time.perf_counter()
    for _ in range(n_ops):
        write(ring, chunk)
        read(ring)
    return n_ops / (time.perf_counter() - t0)


class _DequeRing:
    """The obvious baseline: a bounded deque of samples (drops oldest like ours)."""

    def __init__(self, cap):
        self.d = collections.deque(maxlen=cap)

    def write(self, xs):
        self.d.extend(xs.tolist())

    def read(self, n):
        if len(self.d) < n:
            return None
        return np.array([self.d.popleft() for _ in range(n)], dtype=np.int16)


class _BytearrayRing:
    """A bytearray FIFO (append + slice delete), another common Python choice."""

    def __init__(self, cap):
        self.b, self.cap = bytearray(), cap * 2

    def write(self, xs):
        self.b += xs.tobytes()
        if len(self.b) > self.cap:
            del self.b[:len(self.b) - self.cap]

    def read(self, n):
        if len(self.b) < 2 * n:
            return None
        out = np.frombuffer(bytes(self.b[:2 * n]), dtype=np.int16)
        del self.b[:2 * n]
        return out


def _pct(values):
    return percentiles(values, 2)


def run(args) -> dict:
    import appliance.audio as audio

    from ..errors import ApplianceError

    if audio.compiled is None:
        raise ApplianceError(f"the compiled core is not built: {audio.NATIVE_IMPORT_ERROR}")
    seconds, rounds = getattr(args, "seconds", 2.0), getattr(args, "rounds", 5)
    frames = _frame_source(seconds, audio.compiled)
    pure_frames = frames[: max(10, len(frames) // 5)]  # the twin is slow: fewer frames, same per-frame cost
    compiled_us, pure_us = [], []
    for _ in range(rounds):
        compiled_us.append(_pipeline_us(audio.compiled, frames))
        pure_us.append(_pipeline_us(audio.pure, pure_frames))

    n_ops = 20000
    ring_rates = {"compiled": [], "pure": [], "deque": [], "bytearray": []}
    out = np.empty(160, dtype=np.int16)
    for _ in range(rounds):
        ring_rates["compiled"].append(_ring_ops_per_s(
            lambda: audio.compiled.RingBuffer(8000), lambda r, c: r.write(c), lambda r: r.read_into(out), n_ops))
        ring_rates["pure"].append(_ring_ops_per_s(
            lambda: audio.pure.RingBuffer(8000), lambda r, c: r.write(c), lambda r: r.read_into(out), n_ops // 4))
        ring_rates["deque"].append(_ring_ops_per_s(
            lambda: _DequeRing(8000), lambda r, c: r.write(c), lambda r: r.read(160), n_ops // 4))
        ring_rates["bytearray"].append(_ring_ops_per_s(
            lambda: _BytearrayRing(8000), lambda r, c: r.write(c), lambda r: r.read(160), n_ops // 4))
    rate = {k: statistics.median(v) for k, v in ring_rates.items()}
    baseline = max(rate["deque"], rate["bytearray"])  # the better of the two usual choices

    c_us, p_us = statistics.median(compiled_us), statistics.median(pure_us)
    return {
        "frame_us": {"compiled": round(c_us, 2), "pure": round(p_us, 2)},
        "frame_us_rounds": {"compiled": _pct(compiled_us), "pure": _pct(pure_us)},
        "speedup": round(p_us / c_us, 1),
        "ring_speedup": round(rate["compiled"] / baseline, 1),
        "ring_ops_per_s": {k: round(v) for k, v in rate.items()},
        "ring_baseline": "deque" if rate["deque"] >= rate["bytearray"] else "bytearray",
        "cpu_pct_per_call": round(100 * c_us / 20000, 3),
        "targets": {"frame_us_max": TARGET_FRAME_US, "speedup_min": TARGET_SPEEDUP},
        "meets_targets": c_us <= TARGET_FRAME_US and p_us / c_us >= TARGET_SPEEDUP,
        "frames_per_round": {"compiled": len(frames), "pure": len(pure_frames)},
        "machine": {"python": platform.python_version(), "arch": platform.machine(), "cpus": os.cpu_count()},
    }


def report(r: dict) -> str:
    ok = "meets" if r["meets_targets"] else "MISSES"
    return "\n".join([
        "native audio core: one 20 ms frame (G.711 decode, ring write+read, 8->16 kHz resample, "
        "8-tone Goertzel, energy)",
        f"  compiled  {r['frame_us']['compiled']:9.1f} µs/frame  ({r['cpu_pct_per_call']}% of a core per call; "
        f"target ≤ {TARGET_FRAME_US:.0f} µs)",
        f"  pure twin {r['frame_us']['pure']:9.1f} µs/frame",
        f"  speedup   {r['speedup']:9.1f}x  (target ≥ {TARGET_SPEEDUP:.0f}x)  -> {ok} targets",
        f"ring buffer: {r['ring_ops_per_s']['compiled']:,} write+read/s compiled vs "
        f"{r['ring_ops_per_s'][r['ring_baseline']]:,} for a {r['ring_baseline']} baseline "
        f"({r['ring_speedup']}x); pure twin {r['ring_ops_per_s']['pure']:,}/s",
    ])
