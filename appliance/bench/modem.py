"""Modem path: mouth-to-ear latency through the emulators, DLE framing CPU per call, clock drift.

1. Latency. A modem emulator on a pty (V.253 Conexant µ-law full duplex, and a SIM7600 with
   serial PCM) carries a call to a loopback agent that plays back every frame it reads, the
   moment it reads it. The far end speaks short tone bursts; the delay until it hears each one
   back, counted on the emulator's own 8 kHz sample clock (no wall clock), is the mouth-to-ear
   latency the modem path adds in and back out (pty, DLE/PCM framing, the receive frame, the
   transmit lead kept in the modem's buffer). P50/P95 over the bursts.
2. Drift. The emulators run their crystals off by a known ppm; the line's `ClockStats` fit
   measures it from frame arrival times. The modem's transmit buffer depth shows whether
   latency creeps (it must stay flat) and `DLE u` underruns count clicks.
3. CPU. The voice data pump (`VoiceStream.feed`: DLE unshielding, µ-law decode, ring write,
   lockstep reply: encode + shield) on 60 s of call audio per round, in-process, against a
   byte-by-byte DLE state machine (how a straightforward port of vgetty's loop would do it) as
   the baseline, interleaved rounds, medians.
Tools from `tools/` (the emulators) must be importable: run from a source checkout.
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..stats import percentiles

BURST_MS = 40
BURST_EVERY_S = 0.5
THRESHOLD = 2000


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=20.0, help="call length per emulator (default 20)")
    p.add_argument("--drift-ppm", type=float, default=250.0, help="emulated crystal error (default 250)")
    p.add_argument("--rounds", type=int, default=5, help="CPU rounds per implementation (default 5)")


def _tools() -> None:
    tools = Path(__file__).resolve().parents[2] / "tools"
    if not (tools / "voice_modem_emulator.py").exists():
        raise SystemExit(f"appliance bench modem needs the modem emulators in {tools} (a source checkout)")
    if str(tools) not in sys.path:
        sys.path.insert(0, str(tools))


def _pct(values) -> dict:
    return percentiles(list(values))


def _burst() -> np.ndarray:
    t = np.arange(int(8 * BURST_MS)) / 8000
    return (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)


async def _loopback(call, stop: asyncio.Event) -> None:
    """The agent stand-in: every frame read goes straight back out."""
    while not stop.is_set():
        f = await call.read_frame(2.0)
        if f is None:
            return
        call.play(f.samples)


def _onsets(heard: np.ndarray, said: list[int]) -> list[float]:
    """Delay (ms, emulator clock) from each burst said to its first loud sample heard back."""
    out = []
    loud = np.abs(heard.astype(np.int32)) > THRESHOLD
    for i, s in enumerate(said):
        end = said[i + 1] if i + 1 < len(said) else len(heard)
        hit = np.flatnonzero(loud[s:end])
        if len(hit):
            out.append(hit[0] / 8.0)
    return out


async def _talk(emu, call, seconds: float) -> list[int]:
    """Bursts every BURST_EVERY_S; returns the emulator sample index at which each began."""
    stop = asyncio.Event()
    echo = asyncio.ensure_future(_loopback(call, stop))
    said = []
    burst = _burst()
    await asyncio.sleep(1.0)                   # settle: lead primed, warm-up frames
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        emu.far.say(burst)
        said.append(emu.far.say_marks[-1])
        await asyncio.sleep(BURST_EVERY_S)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(echo, 5)
    return said


def _voice_run(seconds: float, drift_ppm: float) -> dict:
    from voice_modem_emulator import VoiceModemEmulator

    from ..lines.modem import ModemLine
    from ..lines.modem_config import ModemLineConfig

    with tempfile.TemporaryDirectory(prefix="bench-modem-") as d:
        emu = VoiceModemEmulator("conexant", link=str(Path(d) / "modem0"), ring_period_s=0.5, cid_delay_s=0.2,
                                 drift_ppm=drift_ppm).start()
        try:
            said, metrics, drift = _answer_and_talk(lambda: ModemLine(ModemLineConfig(port=emu.port)),
                                                    emu, "5551234", seconds)
            return {**_figures(emu, said, metrics, drift, drift_ppm, emu.stats.tx_depth_samples),
                    "underruns": emu.stats.underruns, "overruns": emu.stats.overruns, "codec": "u-law (+VSM=131)"}
        finally:
            emu.stop()


def _answer_and_talk(make_line, emu, caller: str, seconds: float):
    """Ring the emulator's line, answer, talk for `seconds`; (bursts said, line metrics, drift ppm)."""
    async def body():
        line = make_line()
        await line.start()
        try:
            emu.ring(caller)
            call = None
            async for e in line.events():
                if e.type == "ring":
                    call = e.data["call"]
                    break
            await call.answer()
            said = await _talk(emu, call, seconds)
            metrics = line._call_metrics()
            drift = line.clock.drift_ppm
            await call.hangup()
            return said, metrics, drift
        finally:
            await line.stop()
    return asyncio.run(asyncio.wait_for(body(), seconds + 60))


def _figures(emu, said, metrics, drift, drift_ppm: float, tx_depth_samples) -> dict:
    """Latency, drift and modem buffer figures common to both emulators."""
    lat = _onsets(emu.far.heard_audio(), said)
    depth = np.asarray(tx_depth_samples[50:] or [0]) / 8.0
    return {"latency_ms": _pct(lat), "bursts": len(said), "bursts_heard": len(lat),
            "drift_true_ppm": drift_ppm, "drift_measured_ppm": None if drift is None else round(drift, 1),
            "modem_buffer_ms": {**_pct(depth), "max": round(float(depth.max()), 1),
                                "first_s": round(float(depth[:50].mean()), 1),
                                "last_s": round(float(depth[-50:].mean()), 1)},
            "framing_cpu_pct_live": metrics["framing_cpu_pct"]}


def _gsm_run(seconds: float, drift_ppm: float) -> dict:
    from gsm_modem_emulator import GsmModemEmulator

    from ..lines.gsm import GsmLine
    from ..lines.modem_config import GsmLineConfig

    with tempfile.TemporaryDirectory(prefix="bench-gsm-") as d:
        emu = GsmModemEmulator("sim7600", link=str(Path(d) / "gsm0"), drift_ppm=drift_ppm, ring_period_s=0.5).start()
        try:
            said, metrics, drift = _answer_and_talk(
                lambda: GsmLine(GsmLineConfig(port=emu.port, audio="serial-pcm", audio_port=emu.audio_port)),
                emu, "+15551234", seconds)
            return {**_figures(emu, said, metrics, drift, drift_ppm, emu.tx_depth_samples),
                    "underruns": emu.underruns, "codec": "PCM16 LE serial (+CPCMREG)"}
        finally:
            emu.stop()


# ---- CPU of the voice data pump -------------------------------------------------------------------
def _voice_wire(seconds: float) -> bytes:
    """What a modem sends in +VTR: µ-law speech-like audio, DLE shielded, a DTMF event per second."""
    from ..audio import ulaw_encode
    from ..lines import dle

    rng = np.random.default_rng(7)
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (5000 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
           + rng.normal(0, 600, t.size)).clip(-32768, 32767).astype(np.int16)
    enc = bytes(ulaw_encode(pcm))
    parts = []
    for i in range(0, len(enc), 8000):
        parts.append(dle.shield(enc[i:i + 8000]) + b"\x10/\x105\x10~")
    return b"".join(parts)


class _Call:
    """Just enough of a Call for the pump: rx ring, playout frames."""

    def __init__(self):
        from ..audio import RingBuffer

        self.rx = RingBuffer(16000)
        self._zero = np.zeros(160, dtype=np.int16)

    def rx_written(self):
        if self.rx.available() > 8000:
            self.rx.read(self.rx.available())

    def next_playout_frame(self):
        return self._zero


def _pump_cpu_s(wire: bytes) -> float:
    from ..lines.modem_audio import ClockStats, VoiceStream

    out = []
    s = VoiceStream(_Call(), "ulaw", out.append, lambda ev: None, lambda: None, ClockStats(), duplex=True)
    t0 = time.thread_time()
    for i in range(0, len(wire), 256):          # the reader gets a few hundred bytes at a time
        s.feed(wire[i:i + 256])
        if len(out) > 64:
            out.clear()
    return time.thread_time() - t0


def _bytewise_cpu_s(wire: bytes) -> float:
    """Baseline: a per-byte DLE state machine and per-frame decode/encode, as in vgetty's loop."""
    from ..audio import ulaw_decode, ulaw_encode

    call = _Call()
    zero = np.zeros(160, dtype=np.int16)
    t0 = time.thread_time()
    acc = bytearray()
    events = []
    pending = False
    out = []
    for i in range(0, len(wire), 256):
        for b in wire[i:i + 256]:
            if pending:
                pending = False
                if b == 0x10:
                    acc.append(0x10)
                elif b == 0x1A:
                    acc += b"\x10\x10"
                else:
                    events.append(b)
                continue
            if b == 0x10:
                pending = True
                continue
            acc.append(b)
            if len(acc) == 160:
                call.rx.write(np.asarray(ulaw_decode(bytes(acc)), dtype=np.int16))
                call.rx_written()
                acc.clear()
                reply = bytes(ulaw_encode(zero))
                o = bytearray()
                for x in reply:
                    o.append(x)
                    if x == 0x10:
                        o.append(0x10)
                out.append(bytes(o))
                if len(out) > 64:
                    out.clear()
    return time.thread_time() - t0


def _cpu(rounds: int) -> dict:
    seconds = 60.0
    wire = _voice_wire(seconds)
    ours, base = [], []
    for _ in range(max(1, rounds)):
        ours.append(_pump_cpu_s(wire))
        base.append(_bytewise_cpu_s(wire))
    o, b = statistics.median(ours), statistics.median(base)
    return {"framing_cpu_pct_per_call": round(100 * o / seconds, 3),
            "framing_us_per_frame": round(o * 1e6 / (seconds * 50), 1),
            "baseline_cpu_pct_per_call": round(100 * b / seconds, 3),
            "baseline": "per-byte DLE state machine", "speedup": round(b / o, 1) if o > 0 else None}


def run(args) -> dict:
    _tools()
    seconds = float(getattr(args, "seconds", 20.0))
    drift = float(getattr(args, "drift_ppm", 250.0))
    cpu = _cpu(int(getattr(args, "rounds", 5)))
    voice = _voice_run(seconds, drift)
    gsm = _gsm_run(seconds, -drift)         # the other way: a slow crystal
    return {"latency_ms": {"voice": voice["latency_ms"], "gsm": gsm["latency_ms"]},
            **cpu,
            "drift_ppm": {"voice": {"true": voice["drift_true_ppm"], "measured": voice["drift_measured_ppm"]},
                          "gsm": {"true": gsm["drift_true_ppm"], "measured": gsm["drift_measured_ppm"]}},
            "underruns": {"voice": voice["underruns"], "gsm": gsm["underruns"]},
            "voice": voice, "gsm": gsm, "seconds": seconds}


def report(r: dict) -> str:
    lines = ["modem path (emulators on ptys, loopback agent, latency on the modem's sample clock)"]
    for k, label in (("voice", "V.253 Conexant µ-law +VTR"), ("gsm", "SIM7600 serial PCM")):
        v = r[k]
        lat = v["latency_ms"]
        buf = v["modem_buffer_ms"]
        lines.append(f"  {label}: mouth-to-ear P50 {lat['p50']} ms, P95 {lat['p95']} ms "
                     f"({v['bursts_heard']}/{v['bursts']} bursts); modem TX buffer P50 {buf['p50']} ms, "
                     f"max {buf['max']} ms (first s {buf['first_s']}, last s {buf['last_s']}); "
                     f"underruns {v['underruns']}")
        lines.append(f"    clock drift: emulated {v['drift_true_ppm']:+.0f} ppm, measured "
                     f"{v['drift_measured_ppm']} ppm over {r['seconds']:.0f} s; live framing CPU "
                     f"{v['framing_cpu_pct_live']}% of a core")
    lines.append(f"  DLE framing (in-process, 60 s of call audio): {r['framing_cpu_pct_per_call']}% of a core per call "
                 f"({r['framing_us_per_frame']} µs per 20 ms frame) vs {r['baseline_cpu_pct_per_call']}% for a "
                 f"{r['baseline']} ({r['speedup']}x)")
    return "\n".join(lines)
