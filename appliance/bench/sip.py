"""SIP line: CPU per call (N concurrent calls with baresip), call set-up time, audio under impairment.

Needs baresip (Debian baresip-core) and the repo's tools/ (sip_peers.py, rtp_impair.py).
- `cpu_pct_per_call`: this process's CPU (SIP + RTP + jitter buffer + G.711, plus a session-like
  reader/writer per call) with N = 1, 4, 8 calls to baresip, minus the idle line, divided by N,
  in % of one core. Target: <= 3 %.
- `setup_ms`: INVITE sent -> 200 OK received and ACK sent, box dialling baresip (P50/P95).
- `impairment`: baresip's tone through tools/rtp_impair.py (both directions) into the box:
  tone continuity and in-band ratio in `call.rx` (our jitter buffer) and in baresip's recording,
  and the jitter buffer's added delay, per jitter/loss profile.
"""
from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from ..stats import percentiles

TOOLS = Path(__file__).resolve().parents[2] / "tools"
TONE_HZ = 1000.0
BOX_HZ = 600.0
PROFILES = [  # (jitter_ms, loss_pct, reorder_pct, dup_pct)
    (0, 0, 0, 0), (20, 1, 1, 1), (60, 3, 1, 1), (120, 5, 2, 1), (120, 10, 2, 2)]


def add_arguments(p):
    p.add_argument("--seconds", type=float, default=8.0, help="measurement window per N (CPU)")
    p.add_argument("--setups", type=int, default=20, help="calls placed for the set-up time")
    p.add_argument("--calls", default="1,4,8", help="concurrent call counts")
    p.add_argument("--no-impair", action="store_true", help="skip the impairment section")


def _tool(name: str):
    key = f"appliance_tools_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = TOOLS / f"{name}.py"
    if not path.exists():
        from ..errors import NotBuiltYet
        raise NotBuiltYet(f"`appliance bench sip` needs the repository's tools/{name}.py (run it from a checkout)")
    spec = importlib.util.spec_from_file_location(key, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


def _pct(values) -> dict:
    return percentiles(values, 2)


def _line(peers, **kw):
    from ..lines.sip import SipLine, SipLineConfig
    lo, hi = peers.free_range(40)
    return SipLine(SipLineConfig(name="bench", listen=f"127.0.0.1:{peers.free_port()}",
                                 rtp_ports=f"{lo}-{hi}", max_calls=16, **kw))


async def _session(call, tone_pcm):
    """What a session does per call: read every frame, keep agent audio queued."""
    import numpy as np
    frames = 0
    while True:
        if call.tx.available() < 8000:
            call.play(tone_pcm)
        frame = await call.read_frame(timeout=3.0)
        if frame is None:
            return frames
        frames += 1
        np.abs(frame.samples).max()


async def _cpu(peers, bob, counts, seconds):
    import numpy as np
    line = _line(peers)
    await line.start()
    tone_pcm = peers.tone(BOX_HZ, 1.0)
    out = {}
    try:
        t0, c0 = time.monotonic(), time.process_time()
        await asyncio.sleep(min(3.0, seconds))
        idle_pct = 100.0 * (time.process_time() - c0) / (time.monotonic() - t0)
        for n in counts:
            calls = [await line.dial(f"sip:bob@127.0.0.1:{bob.sip_port}", timeout_s=10) for _ in range(n)]
            tasks = [asyncio.create_task(_session(c, tone_pcm)) for c in calls]
            await asyncio.sleep(1.0)            # settle
            t0, c0 = time.monotonic(), time.process_time()
            await asyncio.sleep(seconds)
            busy_pct = 100.0 * (time.process_time() - c0) / (time.monotonic() - t0)
            alive = sum(1 for c in calls if not c.ended.is_set())
            # reads that found the next frame not yet there: the reader waits for the 20 ms clock,
            # so about one per frame is normal (not lost audio; the jitter buffer counts that)
            waits = sum(c.rx.underruns for c in calls)
            concealed = sum(c.rtp.jitter.stats()["concealed"] for c in calls if c.rtp is not None)
            for c in calls:
                await c.hangup()
            await asyncio.gather(*tasks, return_exceptions=True)
            out[str(n)] = {"cpu_pct": round(busy_pct, 2), "per_call": round(max(0.0, busy_pct - idle_pct) / n, 3),
                           "alive": alive, "rx_reads_waited": waits, "concealed": concealed}
            await asyncio.sleep(0.5)
        np.zeros(1)
    finally:
        await line.stop()
    return idle_pct, out


async def _setup(peers, bob, n):
    line = _line(peers)
    await line.start()
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            call = await line.dial(f"sip:bob@127.0.0.1:{bob.sip_port}", timeout_s=10)
            times.append(1000.0 * (time.perf_counter() - t0))
            await call.hangup()
            await asyncio.sleep(0.1)
    finally:
        await line.stop()
    return times


def _continuity(peers, pcm, freq):
    """Fraction of 20 ms frames within the tone's span whose tone level is within 6 dB of nominal."""
    import numpy as np
    part = peers.active_part(pcm)
    n = len(part) // 160
    if n < 10:
        return 0.0, -100.0
    frames = part[: n * 160].reshape(n, 160).astype(np.float64)
    t = np.arange(160) / 8000.0
    ref = np.exp(-2j * np.pi * freq * t)
    level = np.abs(frames @ ref) / 80.0
    nominal = np.median(level)
    ok = level >= nominal / 2.0
    return float(ok.mean()), float(peers.tone_ratio_db(part, freq))


async def _impair_one(peers, impair_mod, workdir, profile, index):
    import numpy as np
    jitter_ms, loss, reorder, dup = profile
    wav = workdir / f"tone{index}.wav"
    peers.write_wav(wav, np.concatenate([peers.tone(TONE_HZ, 4.0), np.zeros(8000 * 6, np.int16)]))
    bob = peers.Baresip(workdir, name=f"imp{index}", source_wav=wav)
    await asyncio.get_running_loop().run_in_executor(None, bob.start)
    line = _line(peers)
    relays = {}
    imp = impair_mod.Impairment(jitter_ms, loss, reorder, dup, seed=index)

    try:
        await line.start()

        def advertise(port):
            return "127.0.0.1", relays[port].port

        line.advertise_media = advertise
        # the relay must exist before the SDP is built: reserve the line's next RTP port now
        port = line._alloc_port()
        line._ports_in_use.discard(port)
        line._next_port = port
        relays[port] = await impair_mod.start_relay(imp, ("127.0.0.1", 0), ("127.0.0.1", port))
        call = await line.dial(f"sip:imp{index}@127.0.0.1:{bob.sip_port}", timeout_s=10)
        call.play(peers.tone(BOX_HZ, 4.0))
        delays, frames = [], []
        t_end = time.monotonic() + 5.0
        while time.monotonic() < t_end:
            f = await call.read_frame(timeout=3.0)
            if f is None:
                break
            frames.append(f.samples)
            if call.rtp.remote_ssrc is not None:
                delays.append(call.rtp.jitter.delay_ms)
        stats = call.rtp.jitter.stats()
        await call.hangup()
        await asyncio.sleep(0.5)
    finally:
        for r in relays.values():
            r.close()
        await line.stop()
        await asyncio.get_running_loop().run_in_executor(None, bob.stop)
    rx = np.concatenate(frames) if frames else np.zeros(0, np.int16)
    cont_box, ratio_box = _continuity(peers, rx, TONE_HZ)
    recs = bob.recordings("dec")
    cont_far, ratio_far, far_tone_s = (0.0, -100.0, 0.0)
    if recs:
        far, _ = peers.read_wav(recs[-1])
        cont_far, ratio_far = _continuity(peers, far, BOX_HZ)
        # baresip records decoded frames only: a lost packet leaves no gap, the tone gets shorter
        far_tone_s = len(peers.active_part(far)) / 8000.0
    return {"jitter_ms": jitter_ms, "loss_pct": loss, "reorder_pct": reorder, "dup_pct": dup,
            "box_continuity": round(cont_box, 3), "box_tone_db": round(ratio_box, 1),
            "far_continuity": round(cont_far, 3), "far_tone_db": round(ratio_far, 1),
            "far_tone_s": round(far_tone_s, 2), "box_tone_sent_s": 4.0,
            "jb_delay_ms": _pct(delays), "jb_mean_delay_ms": round(statistics.fmean(delays), 1) if delays else None,
            "jb_target_ms": stats["target_ms"], "concealed": stats["concealed"], "late": stats["late"],
            "dropped": stats["dropped"], "relay": dict(imp.counts)}


def run(args) -> dict:
    import tempfile

    from ..lines.sip import jitter

    peers = _tool("sip_peers")
    if peers.BARESIP is None:
        from ..errors import NotBuiltYet
        raise NotBuiltYet("`appliance bench sip` needs baresip (Debian: baresip-core)")
    counts = [int(x) for x in args.calls.split(",") if x.strip()]
    result: dict = {"jitter_buffer": jitter.IMPLEMENTATION}
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp:
        workdir = Path(tmp)
        silence = workdir / "bob.wav"
        import numpy as np
        peers.write_wav(silence, np.concatenate([peers.tone(TONE_HZ, 60.0)]))
        bob = peers.Baresip(workdir, name="bob", source_wav=silence)
        bob.start()
        try:
            times = asyncio.run(_setup(peers, bob, args.setups))
            idle, cpu = asyncio.run(_cpu(peers, bob, counts, args.seconds))
        finally:
            bob.stop()
        result["setup_ms"] = _pct(times)
        result["setup_samples"] = len(times)
        result["cpu_pct_per_call"] = {n: v["per_call"] for n, v in cpu.items()}
        result["cpu_detail"] = {"idle_pct": round(idle, 2), **cpu}
        result["target_cpu_pct_per_call"] = 3.0
        if not args.no_impair:
            impair_mod = _tool("rtp_impair")
            result["impairment"] = [asyncio.run(_impair_one(peers, impair_mod, workdir, p, i))
                                    for i, p in enumerate(PROFILES)]
    return result


def report(r: dict) -> str:
    lines = [f"SIP line (jitter buffer: {r['jitter_buffer']})",
             f"  call set-up (box -> baresip, {r['setup_samples']} calls): "
             f"P50 {r['setup_ms']['p50']} ms, P95 {r['setup_ms']['p95']} ms",
             f"  idle line: {r['cpu_detail']['idle_pct']} % of one core"]
    for n, per in r["cpu_pct_per_call"].items():
        d = r["cpu_detail"][n]
        verdict = "ok" if per <= r["target_cpu_pct_per_call"] else "OVER TARGET"
        lines.append(f"  {n} concurrent call(s): {d['cpu_pct']} % total, {per} % per call "
                     f"(target <= {r['target_cpu_pct_per_call']} %: {verdict}), {d['alive']} alive")
    if "impairment" in r:
        lines.append("  impairment (jitter ms / loss % / reorder % / dup %): continuity box | far, "
                     "tone dB box | far, jitter buffer delay mean (P95), concealed, late")
        for m in r["impairment"]:
            lines.append(
                f"    {m['jitter_ms']:>3} / {m['loss_pct']:>2} / {m['reorder_pct']} / {m['dup_pct']}: "
                f"{m['box_continuity']:.3f} | {m['far_continuity']:.3f}, "
                f"{m['box_tone_db']} | {m['far_tone_db']} dB, "
                f"{m['jb_mean_delay_ms']} ms ({m['jb_delay_ms']['p95']}), {m['concealed']}, {m['late']}")
    return "\n".join(lines)
