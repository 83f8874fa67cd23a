#!/usr/bin/env python3
"""Echo benchmark: how much of the agent's own voice the canceller removes, and whether the echo gate
ever takes that echo for the caller.

The agent's voice (espeak-ng, 8 kHz) is played into a simulated line echo (`EchoPath`: bulk delay,
hybrid dispersion, echo return loss, line noise, µ-law) for `--seconds`. For each delay (20-200 ms),
echo return loss and canceller (speex MDF compiled through Cython, its numpy twin, and none as the
baseline), two runs:

- echo only: ERLE (dB, power of the returned echo over the power left after the canceller, on frames
  where the agent plays, after the first 2 s of convergence), the same as a ratio to the
  no-cancellation baseline (residual power / echo power), and the gate's false caller frames and
  false barge-ins (caller-attributed VAD speech lasting >= `--barge-in-ms`) while only echo comes
  back: must be zero. The same count for the VAD without the gate is the baseline.
- double talk: the caller (another espeak voice) speaks over the agent from 4 s to ~6.5 s. Reported:
  whether the barge-in fires and how long after the caller's onset, the caller's level loss through
  the canceller (dB), and the ERLE on echo-only frames after the double talk (a diverged filter
  shows here).

    python tools/bench_echo.py [--delays 20,60,120,200] [--erl 6,12,20] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from appliance.audio import Resampler  # noqa: E402
from appliance.detect.config import EchoConfig  # noqa: E402
from appliance.detect.echo import NATIVE_IMPORT_ERROR, EchoCanceller, EchoGate, EchoPath  # noqa: E402

FRAME = 160
RATE = 8000

AGENT_TEXT = ("Thank you for calling the dental practice. We are open from eight in the morning until six in "
              "the evening, Monday to Friday, and on Saturday mornings. I can book, move or cancel an "
              "appointment for you, or put you through to the front desk. What can I do for you today?")
CALLER_TEXT = "Sorry, wait, I need to move my appointment on Friday."


def speech(text: str, voice: str = "en-us", speed: int = 165, level_dbfs: float = -18.0) -> np.ndarray:
    """espeak-ng speech at 8 kHz, int16, scaled so its active speech sits at `level_dbfs`."""
    import turn_corpus

    pcm16k = turn_corpus.Espeak(voice, speed).say(text)
    rs = Resampler(16000, RATE)
    x = rs.process(np.concatenate((pcm16k, np.zeros(1600, np.int16)))).astype(np.float64)
    active = np.abs(x) > 100
    rms = math.sqrt(float(np.mean(x[active] ** 2))) if active.any() else 1.0
    x *= 32768.0 * 10 ** (level_dbfs / 20) / rms
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _pct(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


class _Vad:
    """The call's VAD as the session configures it: onset after 60 ms, short hangover."""

    def __init__(self):
        from appliance.detect.vad import Vad
        from appliance.speech.config import VadConfig

        self.vad = Vad(VadConfig(min_speech_ms=60, min_silence_ms=100), sample_rate=RATE)

    def __call__(self, frame: np.ndarray) -> bool:
        self.vad.feed(frame)
        return self.vad.is_speech


def run_case(agent: np.ndarray, caller: np.ndarray | None, caller_at_s: float, delay_ms: float, erl_db: float,
             implementation: str | None, seconds: float, barge_in_ms: float = 250.0, pause_ms: float = 60.0,
             seed: int = 0, config: EchoConfig | None = None) -> dict:
    """One simulated call segment: the agent plays `agent` (looped to `seconds`), the line echoes it,
    the caller optionally speaks from `caller_at_s`. implementation None = no canceller (baseline)."""
    cfg = config or EchoConfig()
    n_frames = int(seconds * 1000 / 20)
    play = np.resize(agent, n_frames * FRAME)
    near = np.zeros(n_frames * FRAME, np.int16)
    c0 = c1 = None
    if caller is not None:
        c0 = int(caller_at_s * RATE)
        c1 = min(len(near), c0 + len(caller))
        near[c0:c1] = caller[:c1 - c0]
    path = EchoPath(delay_ms=delay_ms, erl_db=erl_db, noise_dbfs=-65.0, seed=seed)
    canceller = EchoCanceller(config=cfg, implementation=implementation) if implementation else None
    gate = EchoGate(cfg, canceller)
    vad_gated, vad_raw = _Vad(), _Vad()
    echo_only = EchoPath(delay_ms=delay_ms, erl_db=erl_db, noise_dbfs=-65.0, seed=seed)   # the same echo, no caller

    echo_p = resid_p = 0.0
    caller_in_p = caller_out_p = 0.0
    after_p = after_resid = 0.0
    gate_frames = raw_frames = 0
    runs_gated, runs_raw, pauses_gated, pauses_raw = [], [], [], []
    run_g = run_r = 0
    first_barge = first_pause = None
    t_cpu = 0.0
    for k in range(n_frames):
        sl = slice(k * FRAME, (k + 1) * FRAME)
        ref = play[sl]
        c = near[sl] if caller is not None else None
        mic = path.process(ref, c)
        echo = echo_only.process(ref)
        t0 = time.perf_counter()
        clean = canceller.process(mic, ref) if canceller else mic
        t_cpu += time.perf_counter() - t0
        gate.update(mic, clean, ref)
        vg = vad_gated(clean)
        vr = vad_raw(mic)
        is_caller = gate.speech_is_caller(vg)
        t_s = k * 0.02
        in_caller = caller is not None and c0 <= k * FRAME < c1
        playing = _power(ref) > 100.0
        if t_s >= 2.0 and playing and not in_caller and (caller is None or k * FRAME >= c1 + RATE // 2):
            # echo-only frames: before the caller, or half a second after the caller stopped
            if caller is None or k * FRAME < c0:
                echo_p += _power(echo)
                resid_p += _power(clean)
            else:
                after_p += _power(echo)
                after_resid += _power(clean)
        if in_caller:
            caller_in_p += _power(near[sl])
            caller_out_p += _power(clean)
        # caller-attributed speech, in runs: a run >= barge_in_ms outside the caller's speech is false
        run_g = run_g + 1 if is_caller else 0
        run_r = run_r + 1 if vr else 0
        if not in_caller and (caller is None or k * FRAME < c0):
            gate_frames += is_caller
            raw_frames += vr
            if run_g * 20 >= barge_in_ms > (run_g - 1) * 20:
                runs_gated.append(t_s)
            if run_r * 20 >= barge_in_ms > (run_r - 1) * 20:
                runs_raw.append(t_s)
            if run_g * 20 >= pause_ms > (run_g - 1) * 20:
                pauses_gated.append(t_s)
            if run_r * 20 >= pause_ms > (run_r - 1) * 20:
                pauses_raw.append(t_s)
        elif in_caller:
            since_onset = 1000.0 * (k + 1) * FRAME / RATE - 1000.0 * c0 / RATE
            if first_pause is None and run_g * 20 >= pause_ms:
                first_pause = since_onset
            if first_barge is None and run_g * 20 >= barge_in_ms:
                first_barge = since_onset
    db = lambda a, b: round(10 * math.log10(a / b), 1) if a > 0 and b > 0 else None  # noqa: E731
    out = {
        "erle_db": db(echo_p, resid_p) if canceller else 0.0,
        "residual_ratio": round(resid_p / echo_p, 5) if echo_p and canceller else 1.0,
        "false_caller_frames": gate_frames,
        "false_barge_ins": len(runs_gated),
        "false_barge_ins_vad_only": len(runs_raw),
        "false_pauses": len(pauses_gated),
        "false_pauses_vad_only": len(pauses_raw),
        "vad_only_caller_frames": raw_frames,
        "delay_found_ms": canceller.delay_ms if canceller else None,
        "frame_us": round(1e6 * t_cpu / n_frames, 1),
    }
    if caller is not None:
        out["barge_in_ms"] = None if first_barge is None else round(first_barge, 1)
        out["pause_ms"] = None if first_pause is None else round(first_pause, 1)
        out["caller_loss_db"] = db(caller_in_p, caller_out_p)
        out["erle_after_doubletalk_db"] = (db(after_p, after_resid) if canceller else 0.0) if after_p else None
    return out


def run(args) -> dict:
    agent = speech(AGENT_TEXT, "en-us", 165, -16.0)
    caller = speech(CALLER_TEXT, "en-us+f3", 160, -22.0)
    impls = ["compiled", "pure", None]
    if NATIVE_IMPORT_ERROR:
        impls.remove("compiled")
    delays = [float(d) for d in args.delays.split(",")]
    erls = [float(e) for e in args.erl.split(",")]
    cases = []
    for delay in delays:
        for erl in erls:
            for impl in impls:
                name = impl or "none"
                eo = run_case(agent, None, 0.0, delay, erl, impl, args.seconds, args.barge_in_ms, args.pause_ms)
                dt = run_case(agent, caller, 4.0, delay, erl, impl, args.seconds, args.barge_in_ms, args.pause_ms)
                cases.append({"delay_ms": delay, "erl_db": erl, "canceller": name, "echo_only": eo, "doubletalk": dt})
    alone = run_case(np.zeros_like(agent), caller, 4.0, 60.0, 12.0, None, args.seconds, args.barge_in_ms, args.pause_ms)
    summary = {}
    for name in [i or "none" for i in impls]:
        cs = [c for c in cases if c["canceller"] == name]
        erle = [c["echo_only"]["erle_db"] for c in cs if c["echo_only"]["erle_db"] is not None]
        after = [c["doubletalk"]["erle_after_doubletalk_db"] for c in cs if c["doubletalk"]["erle_after_doubletalk_db"] is not None]
        barge = [c["doubletalk"]["barge_in_ms"] for c in cs]
        summary[name] = {
            "erle_db": {"min": min(erle), "median": round(float(np.median(erle)), 1)},
            "residual_ratio_median": round(float(np.median([c["echo_only"]["residual_ratio"] for c in cs])), 5),
            "erle_after_doubletalk_db": {"min": min(after), "median": round(float(np.median(after)), 1)} if after else None,
            "false_barge_ins": sum(c["echo_only"]["false_barge_ins"] for c in cs),
            "false_caller_frames": sum(c["echo_only"]["false_caller_frames"] for c in cs),
            "false_barge_ins_vad_only": sum(c["echo_only"]["false_barge_ins_vad_only"] for c in cs),
            "false_pauses": sum(c["echo_only"]["false_pauses"] for c in cs),
            "false_pauses_vad_only": sum(c["echo_only"]["false_pauses_vad_only"] for c in cs),
            "doubletalk_pauses": f"{sum(c['doubletalk']['pause_ms'] is not None for c in cs)}/{len(cs)}",
            "doubletalk_pause_ms": _pct([c["doubletalk"]["pause_ms"] for c in cs if c["doubletalk"]["pause_ms"] is not None]),
            "doubletalk_barge_ins": f"{sum(b is not None for b in barge)}/{len(barge)}",
            "doubletalk_barge_in_ms": _pct([b for b in barge if b is not None]),
            "caller_loss_db_median": round(float(np.median([c["doubletalk"]["caller_loss_db"] for c in cs])), 1),
            "frame_us_median": round(float(np.median([c["echo_only"]["frame_us"] for c in cs])), 1),
        }
    return {"seconds": args.seconds, "delays_ms": delays, "erl_db": erls, "barge_in_ms": args.barge_in_ms,
            "pause_ms": args.pause_ms,
            "caller_alone": {"pause_ms": alone["pause_ms"], "barge_in_ms": alone["barge_in_ms"]},
            "native": NATIVE_IMPORT_ERROR or "compiled", "summary": summary, "cases": cases}


def report(r: dict) -> str:
    lines = [f"echo: {r['seconds']} s of agent speech per case, delays {r['delays_ms']} ms, ERL {r['erl_db']} dB, "
             f"pause after {r['pause_ms']} ms and barge-in after {r['barge_in_ms']} ms of caller-attributed speech "
             "(playout goes on: worst case)",
             "false P / BI: pauses / barge-ins on echo only through the gate (VAD alone in brackets); DT: double talk",
             f"{'delay':>5} {'ERL':>4} {'canceller':<9} {'ERLE dB':>7} {'resid/echo':>10} {'false P':>9} {'false BI':>9} "
             f"{'delay found':>11} | {'DT pause ms':>11} {'DT BI ms':>8} {'caller loss dB':>14} {'ERLE after DT':>13}"]
    for c in r["cases"]:
        e, d = c["echo_only"], c["doubletalk"]
        fp = f"{e['false_pauses']} ({e['false_pauses_vad_only']})"
        fb = f"{e['false_barge_ins']} ({e['false_barge_ins_vad_only']})"
        lines.append(f"{c['delay_ms']:>5.0f} {c['erl_db']:>4.0f} {c['canceller']:<9} {e['erle_db']!s:>7} {e['residual_ratio']:>10.4f} "
                     f"{fp:>9} {fb:>9} {e['delay_found_ms']!s:>11} | "
                     f"{d['pause_ms']!s:>11} {d['barge_in_ms']!s:>8} {d['caller_loss_db']!s:>14} {d['erle_after_doubletalk_db']!s:>13}")
    lines.append(f"caller alone (nothing played, the VAD's own onset): pause after {r['caller_alone']['pause_ms']} ms, "
                 f"barge-in after {r['caller_alone']['barge_in_ms']} ms")
    lines.append("summary:")
    for name, s in r["summary"].items():
        lines.append(f"  {name:<9} ERLE min {s['erle_db']['min']} / median {s['erle_db']['median']} dB "
                     f"(residual/echo {s['residual_ratio_median']}), after double talk {s['erle_after_doubletalk_db']}, "
                     f"on echo only: false pauses {s['false_pauses']}, false barge-ins {s['false_barge_ins']} (caller frames "
                     f"{s['false_caller_frames']}; VAD without gate: {s['false_pauses_vad_only']} pauses, "
                     f"{s['false_barge_ins_vad_only']} barge-ins); double talk paused {s['doubletalk_pauses']} after "
                     f"{s['doubletalk_pause_ms']} ms, barged in {s['doubletalk_barge_ins']} after {s['doubletalk_barge_in_ms']} ms; "
                     f"caller loss {s['caller_loss_db_median']} dB; {s['frame_us_median']} us/frame")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--delays", default="20,60,120,200", help="bulk echo delays, ms")
    p.add_argument("--erl", default="6,12,20", help="echo return losses, dB")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--barge-in-ms", type=float, default=250.0, help="caller speech this long is a barge-in (agent.barge_in_min_ms)")
    p.add_argument("--pause-ms", type=float, default=60.0, help="caller speech this long pauses the agent (agent.barge_in_pause_ms)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = run(args)
    print(json.dumps(r, indent=1) if args.json else report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
