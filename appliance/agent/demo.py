"""`appliance demo`: a simulated call through the whole pipeline, no hardware and no API key.

A scripted caller (its lines synthesized by the TTS voice) rings the simulated line: G.711,
ring buffers, a 20 ms real-time clock, line echo and noise. The agent answers with the full
pipeline (echo canceller, VAD, endpointing, STT, the offline call flow or an LLM, TTS, barge-in).
The caller answers questions, says "mm-hm" while the agent talks (a backchannel: the agent goes
on), interrupts it mid-sentence (the agent stops and listens), and asks for a person (handoff
and transfer).

Prints the transcript with each turn's latency breakdown; writes the call as a stereo WAV
(caller / agent) and a timeline PNG. `--json` prints the same as one JSON object. With `llm:` in
the config the LLM answers; `--local-llm` starts a local OpenAI-compatible server for that.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--config", metavar="FILE", help="appliance config (default: the embedded one: offline call flow)")
    p.add_argument("--out", metavar="DIR", default="appliance-demo",
                   help="where the WAV and the timeline PNG go (default: ./appliance-demo)")
    p.add_argument("--script", metavar="FILE", help="caller script YAML (default: the built-in caller)")
    p.add_argument("--local-llm", action="store_true",
                   help="answer with an LLM served by a local OpenAI-compatible test server (no API key)")
    p.add_argument("--llm-ttft-ms", type=float, default=350.0, help="--local-llm: time to first token (ms)")


def main(args) -> int:
    from ..config import load
    from ..errors import ApplianceError

    cfg = load(args.config)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"cannot create the output folder {out}: {exc}") from exc
    server = None
    if args.local_llm:
        import dataclasses

        from .config import LLMConfig
        from .llm_server import LlmServer

        server = LlmServer(ttft_ms=args.llm_ttft_ms, tokens_per_s=40).start()
        cfg = dataclasses.replace(cfg, llm=LLMConfig(base_url=server.base_url, model="local-test", api_key_env=None))
    try:
        result = asyncio.run(_run(cfg, args, out))
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(render_text(result))
    return 0 if result["ok"] else 1


def _progress(args, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


async def _run(cfg, args, out: Path) -> dict[str, Any]:
    from . import engines
    from .simcall import demo_config, percentiles, run_sim_call

    cfg = demo_config(cfg)
    mode = "LLM at " + cfg.llm.base_url if cfg.llm is not None else "offline call flow"
    _progress(args, f"appliance demo: a simulated call ({mode}); loading speech models...")
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    tts = await loop.run_in_executor(None, engines.get_tts, cfg.speech)
    await loop.run_in_executor(None, engines.get_stt, cfg.speech)
    await loop.run_in_executor(None, engines.preload_semantic_endpointing, cfg.detect)
    await loop.run_in_executor(None, engines.prewarm, tts, cfg)   # the flow's fixed lines, as `run` does
    _progress(args, f"models ready in {time.monotonic() - t0:.1f} s; the caller is dialling (the call runs in real time)\n")

    # An agent line grows piece by piece (and may be cut by a barge-in): print it once it is settled.
    pending: list[dict] = []

    def show(entry: dict) -> None:
        who = "caller" if entry["role"] == "caller" else "agent "
        text = entry["text"]
        if entry.get("interrupted"):
            text = f"{entry.get('heard') or ''}... [interrupted; the rest was not said]"
        extra = "  (filler)" if entry.get("filler") else ""
        _progress(args, f"  {entry['t_ms'] / 1000:6.1f}s  {who}: {text}{extra}")

    notes: list[str] = []

    def flush() -> None:
        while pending:
            show(pending.pop(0))
        while notes:
            _progress(args, notes.pop(0))

    def on_line(entry: dict) -> None:
        flush()
        if entry["role"] == "agent" and not entry.get("filler"):
            pending.append(entry)
        else:
            show(entry)

    def on_event(kind: str, data: dict) -> None:
        if kind in ("turn", "barge_in", "handoff", "call.ended") and not (kind == "barge_in"
                                                                           and data.get("outcome") == "resumed"):
            flush()
        if kind == "barge_in" and data.get("outcome") == "resumed":
            notes.append(f"  {data['onset_ms'] / 1000:6.1f}s  (the caller's backchannel over that reply: "
                         "the agent paused and carried on)")
            if not pending:
                flush()

    res = await run_sim_call(cfg, script=args.script, tts=tts, on_transcript=on_line, emit=on_event)
    flush()
    s, rec = res.session, res.record
    wav_path = out / "call.wav"
    stereo = rec.stereo()
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.astype("<i2").tobytes())
    png_path: Path | None = out / "timeline.png"
    png_error = None
    try:
        from .timeline import plot_timeline
        plot_timeline(res, png_path)
    except ImportError as exc:
        png_path, png_error = None, f"no timeline PNG: {exc} (pip install matplotlib)"

    turns = [t.event() for t in s.turns]
    for t, ev in zip(s.turns, turns, strict=False):
        ev["speech_end_ms"] = round(t.speech_end_ms)
        ev["first_audio_ms"] = None if t.first_audio_ms is None else round(t.first_audio_ms)
    handoffs = [d for k, d in s.events if k == "handoff"]
    barge = [{"outcome": b.outcome, "onset_ms": round(b.onset_ms), "speech_ms": round(b.speech_ms), "why": b.why}
             for b in s.barge_ins]
    v2v = [t["v2v"] for t in turns if t["v2v"] is not None]
    result = {
        "ok": bool(turns) and s.end_reason != "error",
        "mode": "llm" if cfg.llm is not None else "callflow",
        "components": {"stt": getattr(s.stt, "name", "?"), "tts": getattr(s.tts, "name", "?")},
        "duration_s": round(len(stereo) / 8000, 1),
        "end_cause": s.end_reason,
        "transcript": s.transcript,
        "turns": turns,
        "barge_ins": barge,
        "line_barge_in_stops": rec.barge_in_stops(),
        "handoff": handoffs[0] if handoffs else None,
        "transfers": rec.transfers,
        "summary": {"v2v_ms": percentiles(v2v), "line_v2v_ms": percentiles(res.line_v2v_ms()),
                    "barge_in_stop_ms": percentiles(res.barge_in_stop_ms()),
                    "underruns": res.call.playout_underruns, "clock_slips": rec.clock_slips},
        "files": {"wav": str(wav_path), "timeline": str(png_path) if png_path else None},
        "wall_s": round(time.monotonic() - t0, 1),
    }
    if png_error:
        result["files"]["timeline_error"] = png_error
    return result


def _ms(v) -> str:
    return "   -" if v is None else f"{v:5.0f}"


def render_text(r: dict[str, Any]) -> str:
    lines = ["", f"Call over after {r['duration_s']} s ({r['end_cause']}); "
             f"{'LLM' if r['mode'] == 'llm' else 'offline call flow'}, STT {r['components']['stt']}, "
             f"TTS {r['components']['tts']}.", "",
             "Turns (ms)  endpoint    stt  llm1st  tts1st    v2v   caller said -> agent replied"]
    for t in r["turns"]:
        reply = t["reply"] + (" [interrupted]" if t["interrupted"] else "")
        lines.append(f"  {t['turn']:2d}        {_ms(t['endpoint'])}  {_ms(t['stt'])}   {_ms(t['llm_first_token'])}"
                     f"   {_ms(t['tts_first_audio'])}  {_ms(t['v2v'])}   \"{t['text']}\" -> \"{reply}\"")
    lines.append("  (endpoint: end of speech -> end of turn decided; stt: -> transcript; llm1st: -> first token;"
                 " tts1st: -> first audio; v2v: end of caller speech -> first agent audio on the line)")
    lines.append("")
    for b in r["barge_ins"]:
        verdict = "agent stopped and listened" if b["outcome"] == "barge_in" else "agent paused, then carried on"
        lines.append(f"Caller spoke over the agent at {b['onset_ms'] / 1000:.1f} s ({b['speech_ms']} ms of speech, "
                     f"{b['why']}): {verdict}.")
    for st in r["line_barge_in_stops"]:
        stop = "did not stop" if st["stop_ms"] is None else f"agent audio stopped {st['stop_ms']:.0f} ms after onset"
        lines.append(f"  on the line: {st['label']} \"{st['text']}\": {stop}")
    h = r["handoff"]
    if h:
        lines.append(f"Handoff: {h['reason']} -> {h['target']} ({h['mode']}); summary: {h['summary']}")
    for tr in r["transfers"]:
        lines.append(f"Line transfer recorded: to {tr['target']} ({tr['mode']}) at {tr['at_ms'] / 1000:.1f} s")
    sm = r["summary"]
    lines.append("")
    lines.append(f"v2v P50 {sm['v2v_ms']['p50']} ms, P95 {sm['v2v_ms']['p95']} ms; barge-in stop (line) "
                 f"P50 {sm['barge_in_stop_ms']['p50']} ms; playout underruns {sm['underruns']}.")
    lines.append(f"Wrote {r['files']['wav']} (left: caller line, right: agent)"
                 + (f" and {r['files']['timeline']}" if r["files"]["timeline"] else f"; {r['files'].get('timeline_error')}"))
    return "\n".join(lines)
