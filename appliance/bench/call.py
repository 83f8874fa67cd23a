"""Concurrent simulated calls against a local streaming LLM: v2v, added latency, barge-in, echo.

N calls run at once in this process, as on the box: each on its own simulated line (G.711,
line echo, noise, a real-time clock thread), each a full `CallSession` (echo canceller, VAD,
smart-turn endpointing, Whisper, Piper), all sharing one STT engine and one voice. The LLM is
a local OpenAI-compatible streaming server started here (configurable time to first token and
token rate), spoken to by the real `openai` client.

Each scripted caller: asks a question; interrupts the long answer mid-sentence; asks something
else and listens to the whole long answer in silence (its echo comes back the whole time); says
goodbye (the model ends the call). Measured on the line (what the caller hears), per turn:
- `v2v_ms`: end of the caller's speech -> first agent audio on the line (a filler counts:
  `filler_turns` says how many turns began with one);
- `added_ms`: v2v minus the LLM's time to first token as the session measured it (request
  sent -> first token): what the appliance adds (endpointing, STT, TTS, playout);
- `barge_in_stop_ms`: onset of the interruption -> agent audio stops on the line;
- `false_barge_ins`: times the agent paused or stopped while the caller was silent (echo only);
- `underruns`: partial frames at the line plus pacing misses (audio waiting, line dry).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from typing import Any

TARGETS = {"added_p95_ms": 300.0, "barge_in_stop_p95_ms": 150.0, "false_barge_ins": 0, "underruns": 0}

SCRIPT: list[dict[str, Any]] = [
    {"say": "What are your opening hours?", "gap_ms": 1000, "timeout_ms": 40000, "label": "question"},
    {"say": "Sorry, are you open on Sundays?", "when": "agent_speaking", "after_ms": 1500, "timeout_ms": 40000,
     "label": "interrupt"},
    {"say": "Can I book a visit for Saturday morning?", "gap_ms": 2500, "timeout_ms": 40000, "label": "question"},
    {"say": "Thanks, that's all. Goodbye.", "gap_ms": 2500, "timeout_ms": 40000, "label": "goodbye"},
    {"hangup": True, "gap_ms": 3000, "timeout_ms": 30000, "label": "hang up"},
]


def add_arguments(p) -> None:
    p.add_argument("--calls", type=int, default=2, help="concurrent calls (default 2)")
    p.add_argument("--llm-ttft-ms", type=float, default=300.0, help="local LLM time to first token (default 300)")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="local LLM token rate (default 50)")
    p.add_argument("--echo-db", type=float, default=-12.0, help="line echo level (default -12 dB)")
    p.add_argument("--threads", type=int, default=None,
                   help="inference threads per STT decode / TTS synthesis (default: 1 with 2+ calls, as concurrent "
                        "calls already fill the cores; else the configured ones)")
    p.add_argument("--no-phrase-cache", action="store_true",
                   help="synthesize every clause (the baseline for the voice's phrase cache)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the baseline pass (the same calls without speculative replies and phrase cache)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _pct(values: list[float]) -> dict[str, float | None]:
    from ..agent.simcall import percentiles

    return percentiles(values)


def run(args) -> dict[str, Any]:
    from ..errors import ApplianceError

    if args.calls < 1 or args.calls > 32:
        raise ApplianceError(f"--calls: got {args.calls}, expected 1 to 32")
    if args.llm_ttft_ms < 0 or args.tokens_per_s <= 0:
        raise ApplianceError("--llm-ttft-ms must be >= 0 and --tokens-per-s > 0")
    return asyncio.run(_run(args))


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)


async def _run(args) -> dict[str, Any]:
    from ..agent import engines
    from ..agent.config import LLMConfig
    from ..agent.llm_server import LlmServer
    from ..agent.simcall import run_sim_call
    from ..config import load
    from ..lines.sim_config import SimLineConfig

    base = load(None)
    threads = args.threads or (1 if args.calls >= 2 else None)
    if threads:
        sp = base.speech
        base = dataclasses.replace(base, speech=dataclasses.replace(
            sp, stt=dataclasses.replace(sp.stt, threads=threads), tts=dataclasses.replace(sp.tts, threads=threads)))
    load_avg = os.getloadavg()[0]
    loop = asyncio.get_running_loop()
    _say(args, "bench call: loading speech models...")
    tts = await loop.run_in_executor(None, engines.get_tts, base.speech)
    await loop.run_in_executor(None, engines.get_stt, base.speech)
    await loop.run_in_executor(None, engines.preload_semantic_endpointing, base.detect)
    server = LlmServer(ttft_ms=args.llm_ttft_ms, tokens_per_s=args.tokens_per_s).start()
    cache_size = tts.phrase_cache_size
    try:
        cfg = dataclasses.replace(
            base,
            agent=dataclasses.replace(base.agent, greeting="Hello, how can I help?", handoff_target="+15550199"),
            recording=dataclasses.replace(base.recording, enabled=False),
            llm=LLMConfig(base_url=server.base_url, model="local-test", api_key_env=None))
        if args.no_phrase_cache:
            tts.phrase_cache_size = 0
        else:   # as `appliance run` does with its first call: fixed lines and common openers
            await loop.run_in_executor(None, engines.prewarm, tts, cfg)

        async def phase(cfg, what: str):
            _say(args, f"bench call: {what}: {args.calls} concurrent call(s), LLM TTFT {args.llm_ttft_ms:.0f} ms, "
                       f"{args.tokens_per_s:.0f} tokens/s (calls run in real time, ~40 s)")
            t0 = time.monotonic()
            lines = [SimLineConfig(name=f"sim{i}", echo_db=args.echo_db, noise_dbfs=-55.0) for i in range(args.calls)]
            cpu0 = time.process_time()
            results = await asyncio.gather(*(run_sim_call(cfg, script=SCRIPT, line_cfg=ln, tts=tts, timeout_s=180)
                                             for ln in lines), return_exceptions=True)
            return _summarize(args, results, time.monotonic() - t0, time.process_time() - cpu0, load_avg)

        out = await phase(cfg, "the box as configured")
        if not args.no_baseline:
            # the same calls in the same run without the call's latency work: no speculative reply,
            # no phrase cache (every clause synthesized when its turn comes)
            tts.phrase_cache_size = 0     # (restored below)
            plain = await phase(dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, speculate=False)),
                                "baseline (no speculative reply, no phrase cache)")
            out["baseline"] = {k: plain[k] for k in ("v2v_ms", "added_ms", "barge_in_stop_ms", "false_barge_ins",
                                                     "underruns", "stages_ms", "speculative", "first_clause_cached",
                                                     "errors")}
            out["speedup_vs_baseline"] = {
                f"{k}_{q}": _ratio(plain[k][q], out[k][q]) for k in ("v2v_ms", "added_ms") for q in ("p50", "p95")}
    finally:
        server.stop()
        tts.phrase_cache_size = cache_size
    out["stt_threads"], out["tts_threads"] = base.speech.stt.threads, base.speech.tts.threads
    return out


def _ratio(base: float | None, new: float | None) -> float | None:
    return None if not base or not new else round(base / new, 2)


def _call_figures(res) -> dict[str, Any]:
    """Per call: line-truth v2v and added latency per turn, barge-in stops, false barge-ins."""
    s, rec = res.session, res.record
    utts = [u for u in rec.utterances if u.end_ms is not None and u.text != "(hangs up)"]
    turns = []
    for t in s.turns:
        if t.first_audio_ms is None:
            continue
        before = [u for u in utts if u.end_ms <= t.endpoint_at_ms + 1]
        if not before:
            continue
        v2v = t.first_audio_ms - before[-1].end_ms
        added = None if t.llm_first_token is None else v2v - t.llm_first_token
        turns.append({"turn": t.index, "text": t.user_text, "v2v": round(v2v, 1),
                      "added": None if added is None else round(added, 1),
                      "session_v2v": None if t.v2v is None else round(t.v2v, 1),
                      "endpoint": t.endpoint, "stt": t.stt, "llm_first_token": t.llm_first_token,
                      "tts_first_audio": t.tts_first_audio, "endpoint_reason": t.endpoint_reason,
                      "filler": t.filler, "tts_cached": t.tts_cached})
    stops = [b for b in rec.barge_in_stops() if b["label"] == "interrupt"]
    # any pause or stop whose onset is not inside (or just after) a caller utterance was echo or noise
    spans = [(u.start_ms - 200, (u.end_ms or u.start_ms) + 400) for u in rec.utterances]
    false = [b for b in s.barge_ins if not any(a <= b.onset_ms <= e for a, e in spans)]
    missed = [b for b in stops if b["stop_ms"] is None]
    return {"turns": turns, "barge_in_stop": [b["stop_ms"] for b in stops if b["stop_ms"] is not None],
            "missed_barge_ins": len(missed), "false_barge_ins": len(false),
            "false_detail": [{"onset_ms": round(b.onset_ms), "outcome": b.outcome, "why": b.why} for b in false],
            "underruns": res.call.playout_underruns + s.starved_frames, "line_underruns": res.call.playout_underruns,
            "pacing_misses": s.starved_frames, "tts_gap_ms": round(s.tts_gap_ms), "clock_slips": rec.clock_slips,
            "end": s.end_reason, "barge_ins": [(b.outcome, b.why) for b in s.barge_ins],
            "speculative": {"started": s.spec_started, "used": s.spec_used, "wasted": s.spec_wasted,
                            "stt_abandoned": s.stt_abandoned}}


def _summarize(args, results, wall: float, cpu_s: float, load_avg: float) -> dict[str, Any]:
    calls, errors = [], []
    for r in results:
        if isinstance(r, BaseException):
            errors.append(f"{type(r).__name__}: {r}")
        else:
            calls.append(_call_figures(r))
    turns = [t for c in calls for t in c["turns"]]
    v2v = [t["v2v"] for t in turns]
    added = [t["added"] for t in turns if t["added"] is not None]
    stops = [x for c in calls for x in c["barge_in_stop"]]
    stage = {k: _pct([t[k] for t in turns if t[k] is not None])
             for k in ("endpoint", "stt", "llm_first_token", "tts_first_audio")}
    result: dict[str, Any] = {
        "calls": args.calls,
        "v2v_ms": _pct(v2v),
        "added_ms": _pct(added),
        "barge_in_stop_ms": _pct(stops),
        "false_barge_ins": sum(c["false_barge_ins"] for c in calls),
        "underruns": sum(c["underruns"] for c in calls),
        "llm_ttft_ms": args.llm_ttft_ms,
        "tokens_per_s": args.tokens_per_s,
        "turns": len(turns),
        "filler_turns": sum(1 for t in turns if t["filler"]),   # first audio was a filler (slow STT or LLM)
        # replies whose first clause came from the voice's phrase cache (no synthesis wait)
        "first_clause_cached": sum(1 for t in turns if t["tts_cached"]),
        "phrase_cache": not args.no_phrase_cache,
        "stages_ms": stage,
        "missed_barge_ins": sum(c["missed_barge_ins"] for c in calls),
        "tts_gap_ms": sum(c["tts_gap_ms"] for c in calls),
        "clock_slips": sum(c["clock_slips"] for c in calls),
        # replies started ahead of the endpoint on a speculative transcript: used as the answer, or
        # wasted (LLM request and first-clause synthesis cancelled: the caller went on, words differed);
        # stt_abandoned: speculative decodes of a pause given up because the caller went on speaking
        "speculative": {k: sum(c["speculative"][k] for c in calls)
                        for k in ("started", "used", "wasted", "stt_abandoned")},
        "completed_calls": sum(1 for c in calls if c["end"] == "done" or c["end"] == "caller said goodbye"),
        "errors": errors,
        "cpu_pct": round(100.0 * cpu_s / max(wall, 1e-6), 1),
        "load_avg_at_start": round(load_avg, 2),
        "wall_s": round(wall, 1),
        "targets": TARGETS,
        "per_call": calls,
    }
    result["meets"] = {
        "added_p95": result["added_ms"]["p95"] is not None and result["added_ms"]["p95"] <= TARGETS["added_p95_ms"],
        "barge_in_stop_p95": (result["barge_in_stop_ms"]["p95"] is not None
                              and result["barge_in_stop_ms"]["p95"] <= TARGETS["barge_in_stop_p95_ms"]),
        "false_barge_ins": result["false_barge_ins"] == 0,
        "underruns": result["underruns"] == 0,
    }
    return result


def report(r: dict[str, Any]) -> str:
    def p(d):
        return f"P50 {d['p50']} ms, P95 {d['p95']} ms"

    ok = {True: "meets target", False: "MISSES target"}
    st = r["stages_ms"]
    lines = [
        f"{r['calls']} concurrent simulated call(s), LLM TTFT {r['llm_ttft_ms']:.0f} ms at {r['tokens_per_s']:.0f} "
        f"tokens/s; {r['turns']} turns; {r.get('stt_threads')} inference thread(s) each; "
        f"load average at start {r['load_avg_at_start']}; "
        f"this process used {r['cpu_pct']} % of one core",
        f"  v2v (end of caller speech -> first agent audio): {p(r['v2v_ms'])}"
        + (f" ({r['filler_turns']} turn(s) began with a filler)" if r.get("filler_turns") else ""),
        f"  added (v2v - LLM first token): {p(r['added_ms'])}  "
        f"[target P95 <= {TARGETS['added_p95_ms']:.0f}: {ok[r['meets']['added_p95']]}]",
        f"    stages: endpoint {p(st['endpoint'])}; stt {p(st['stt'])}; llm first token {p(st['llm_first_token'])};"
        f" tts first audio {p(st['tts_first_audio'])}",
        f"  barge-in stop (speech onset -> agent audio stops on the line): {p(r['barge_in_stop_ms'])}  "
        f"[target P95 <= {TARGETS['barge_in_stop_p95_ms']:.0f}: {ok[r['meets']['barge_in_stop_p95']]}]"
        + (f"; {r['missed_barge_ins']} not stopped" if r["missed_barge_ins"] else ""),
        f"  speculative replies (started ahead of the endpoint): {r['speculative']['started']} started, "
        f"{r['speculative']['used']} used, {r['speculative']['wasted']} wasted; speculative decodes given up "
        f"(the caller went on) {r['speculative']['stt_abandoned']}",
        f"  first clause from the phrase cache: {r['first_clause_cached']} of {r['turns']} replies"
        + ("" if r["phrase_cache"] else " (phrase cache off)"),
        f"  false barge-ins on echo-only audio: {r['false_barge_ins']}  [target 0: {ok[r['meets']['false_barge_ins']]}]",
        f"  underruns: {r['underruns']}  [target 0: {ok[r['meets']['underruns']]}]; mid-reply waits for TTS "
        f"{r['tts_gap_ms']} ms in all; clock slips {r['clock_slips']}",
    ]
    if r["errors"]:
        lines.append(f"  errors: {r['errors']}")
    b = r.get("baseline")
    if b:
        x = r["speedup_vs_baseline"]
        lines.append(f"  baseline, same run, same calls without speculative replies and phrase cache: v2v {p(b['v2v_ms'])};"
                     f" added {p(b['added_ms'])}; {x['added_ms_p50']}x / {x['added_ms_p95']}x the added latency"
                     f" (P50 / P95) of the box as configured" + (f"; errors {b['errors']}" if b["errors"] else ""))
    return "\n".join(lines)
