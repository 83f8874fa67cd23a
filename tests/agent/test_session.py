"""The call session end to end on the simulated line (G.711, echo, real-time clock), with the real
speech models (Silero VAD, smart-turn, Whisper, Piper), the real `openai` client and the local
streaming OpenAI-compatible server. Callers are scripted and short; models load once per module.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import wave

import pytest

from appliance.agent import engines
from appliance.agent.config import LLMConfig
from appliance.agent.llm import APOLOGY, FILLERS, LlmAgent
from appliance.agent.llm_server import LlmServer
from appliance.agent.recording import apply_retention
from appliance.agent.session import STT_FILLER
from appliance.agent.simcall import run_sim_call
from appliance.config import load
from appliance.lines.sim_config import SimLineConfig

LONG_REPLY = ("Thanks, I can help with that. We are open from nine to five, Monday to Saturday, and you can "
              "book a visit on any of those days. Would you like me to book one for you now?")
TURN_KEYS = ("endpoint", "stt", "llm_first_token", "tts_first_audio", "v2v")
SESSION_TASKS = ("watch", "listen", "pace", "converse", "tts", "llm-stream", "filler")


@pytest.fixture(scope="module")
def base_cfg():
    cfg = load(None)
    engines.get_tts(cfg.speech)          # load once for the module; later calls reuse them
    engines.get_stt(cfg.speech)
    engines.preload_semantic_endpointing(cfg.detect)
    return cfg


@pytest.fixture(scope="module")
def server():
    srv = LlmServer(ttft_ms=200, tokens_per_s=60).start()
    yield srv
    srv.stop()


def llm_cfg(base_cfg, server, **llm):
    agent = dataclasses.replace(base_cfg.agent, greeting="Hello, how can I help?", handoff_target="+15550199")
    return dataclasses.replace(base_cfg, agent=agent, recording=dataclasses.replace(base_cfg.recording, enabled=False),
                               llm=LLMConfig(base_url=server.base_url, model="local-test", api_key_env=None, **llm))


def patient(script):
    """A caller who waits for slow turns (a loaded test machine) and lets the agent pause mid-reply."""
    out = []
    for step in script:
        step = {"timeout_ms": 40000, **step}
        if step.get("when", "agent_done") == "agent_done":
            step.setdefault("gap_ms", 1500)
        out.append(step)
    return out


def call(cfg, script, **kw):
    kw.setdefault("timeout_s", 120)
    return asyncio.run(run_sim_call(cfg, script=patient(script), **kw))


def new_requests(server, since):
    return server.requests[since:]


def turn_events(session):
    return [d for k, d in session.events if k == "turn"]


def test_full_conversation_with_handoff(base_cfg, server):
    n0 = len(server.requests)
    server.push({"text": "Sure, I can book that. What name is it under?"})
    script = [{"say": "Hi, I'd like to book an appointment, please."},
              {"say": "Can I talk to a real person, please?"},
              {"hangup": True, "gap_ms": 3000}]
    res = call(llm_cfg(base_cfg, server), script)
    s = res.session
    assert s.end_reason == "transferred"
    # each caller turn: a `turn` event with the DESIGN.md latency keys, all measured
    turns = turn_events(s)
    assert len(turns) == 2
    for ev in turns:
        for key in TURN_KEYS:
            assert isinstance(ev[key], float) and ev[key] >= 0, (key, ev)
        assert ev["v2v"] > ev["llm_first_token"]
    assert "appointment" in turns[0]["text"].lower()
    assert "person" in turns[1]["text"].lower()
    # the model saw the greeting and both caller turns, in order, through the openai client
    reqs = new_requests(server, n0)
    assert len(reqs) == 2 + s.spec_wasted    # (a reply started on a mid-sentence pause and cancelled)
    msgs = reqs[-1]["messages"]
    roles = [m["role"] for m in msgs]
    assert roles[:2] == ["system", "assistant"] and msgs[1]["content"] == "Hello, how can I help?"
    assert [m["content"] for m in msgs if m["role"] == "user"][0].lower().startswith(("hi", "i'd"))
    assert any(m["role"] == "assistant" and m.get("content", "").startswith("Sure, I can book") for m in msgs)
    assert reqs[-1]["tools"] and {t["function"]["name"] for t in reqs[-1]["tools"]} >= {"transfer_to_human", "end_call"}
    # handoff: the event, the handoff line said, and the line asked to transfer
    handoffs = [d for k, d in s.events if k == "handoff"]
    assert len(handoffs) == 1
    h = handoffs[0]
    assert h["caller_id"] == "+15550100" and h["reason"] == "caller asked for a person" and h["summary"]
    assert any(t["role"] == "caller" and "person" in t["text"].lower() for t in h["transcript"])
    assert res.record.transfers and res.record.transfers[0]["target"] == "+15550199"
    agent_lines = [t["text"] for t in s.transcript if t["role"] == "agent"]
    assert agent_lines[0] == "Hello, how can I help?" and agent_lines[-1].startswith("Of course")
    assert res.call.playout_underruns == 0
    assert [k for k, _ in s.events][-1] == "call.ended"


def test_interruption_keeps_only_what_was_heard(base_cfg, server):
    n0 = len(server.requests)
    server.push({"text": LONG_REPLY},
                {"text": "We're closed on Sundays.", "tool": "end_call", "args": {"reason": "done"}})
    script = [{"say": "What are your opening hours?"},
              {"say": "Sorry, are you open on Sundays?", "when": "agent_speaking", "after_ms": 1800,
               "label": "interrupt"}]
    res = call(llm_cfg(base_cfg, server), script)
    s = res.session
    # the agent stopped while the caller was still talking, and listened
    stops = res.record.barge_in_stops()
    assert len(stops) == 1 and stops[0]["stop_ms"] is not None
    utt = [u for u in res.record.utterances if u.label == "interrupt"][0]
    assert utt.agent_stopped_ms < utt.end_ms
    confirmed = [b for b in s.barge_ins if b.outcome == "barge_in"]
    assert len(confirmed) == 1
    first = s.turns[0]
    assert first.interrupted and first.heard_text
    # the history sent with the next request holds only the words that reached the line
    reqs = new_requests(server, n0)
    assert len(reqs) == 2 + s.spec_wasted    # (a reply started on a mid-sentence pause and cancelled)
    msgs = reqs[-1]["messages"]
    cut = [m for m in msgs if m["role"] == "assistant"][-1]["content"]
    assert cut.endswith("—")
    heard = cut.rstrip(" —").split()
    full = LONG_REPLY.split()
    assert 0 < len(heard) < len(full) and heard == full[:len(heard)]
    assert cut.rstrip(" —") == first.heard_text
    # what reached the line before the stop accounts for the words kept (about 6 words a second
    # of agent audio; the cut piece is counted pro rata)
    reply_segs = [seg for seg in res.record.agent_segments if first.first_audio_ms - 20 <= seg[0] < utt.agent_stopped_ms]
    played_s = sum(min(e, utt.agent_stopped_ms) - b for b, e in reply_segs) / 1000
    assert played_s > 0.5 and len(heard) <= 6 * played_s
    # the agent answered the interruption (it never goes silent after one)
    assert "sunday" in msgs[-1]["content"].lower()
    assert s.turns[1].reply_text.startswith("We're closed on Sundays")
    assert s.turns[1].first_audio_ms is not None
    assert s.end_reason == "done"


def test_backchannel_does_not_stop_the_agent(base_cfg, server):
    n0 = len(server.requests)
    server.push({"text": LONG_REPLY})
    script = [{"say": "What are your opening hours?"},
              {"say": "Mm-hm.", "when": "agent_speaking", "after_ms": 1500, "label": "backchannel"},
              {"hangup": True}]
    res = call(llm_cfg(base_cfg, server), script)
    s = res.session
    # the agent may pause on the onset, then carries on: the whole reply reached the line
    assert all(b.outcome == "backchannel" for b in s.barge_ins), [(b.outcome, b.why) for b in s.barge_ins]
    assert not s.turns[0].interrupted
    entry = [t for t in s.transcript if t["role"] == "agent" and t.get("turn") == 1][0]
    assert entry["text"] == LONG_REPLY and not entry.get("interrupted")
    # the "mm-hm" never became a turn
    assert len(new_requests(server, n0)) == 1 + s.spec_wasted
    assert len(s.turns) == 1
    assert s.end_reason == "remote hangup"


def test_llm_timeout_filler_retry_apology_handoff(base_cfg, server):
    n0 = len(server.requests)
    server.push({"hang": True}, {"hang": True})
    cfg = llm_cfg(base_cfg, server, first_token_filler_ms=600, timeout_ms=1500)
    script = [{"say": "What are your opening hours?"},
              {"hangup": True, "gap_ms": 3000}]
    res = call(cfg, script)
    s = res.session
    assert len(new_requests(server, n0)) == 2 + s.spec_wasted   # tried, then retried once
    agent = [t for t in s.transcript if t["role"] == "agent"]
    fillers = [t for t in agent if t.get("filler")]
    # no dead air while the model is late (a slow transcript may add the STT filler first)
    assert [f for f in fillers if f["text"] in FILLERS] and all(f["text"] in (*FILLERS, STT_FILLER) for f in fillers)
    assert agent.index(fillers[0]) < next(i for i, t in enumerate(agent) if t["text"].startswith(APOLOGY))
    assert any(k == "error" and d.get("where") == "llm" for k, d in s.events)
    h = [d for k, d in s.events if k == "handoff"]
    assert h and h[0]["reason"] == "the language model is not answering"
    assert res.record.transfers and s.end_reason == "transferred"
    # the filler and the apology reached the line (the filler from the phrase cache)
    said = [seg for seg in res.record.agent_segments if seg[0] >= res.record.utterances[0].end_ms]
    assert len(said) >= 2


def test_llm_5xx_is_retried_once(base_cfg, server):
    """A 500 from the endpoint is one failed attempt: the retry answers (no apology)."""
    server.push({"status": 500}, {"text": "Yes, we are open today."})
    cfg = llm_cfg(base_cfg, server).llm

    async def go():
        agent = LlmAgent(cfg, "You are a receptionist.")
        try:
            return [ev async for ev in agent.respond("Are you open today?")], agent
        finally:
            await agent.aclose()

    events, agent = asyncio.run(go())
    assert "".join(e.text for e in events if e.kind == "text") == "Yes, we are open today."
    assert agent.failures == 1 and not any(e.kind in ("error", "tool") for e in events)
    assert agent.history[-1] == {"role": "assistant", "content": "Yes, we are open today."}


def test_hangup_mid_sentence_ends_everything(base_cfg, server, tmp_path):
    server.push({"text": LONG_REPLY})
    rec_dir = tmp_path / "calls"
    cfg = llm_cfg(base_cfg, server)
    cfg = dataclasses.replace(cfg, recording=dataclasses.replace(cfg.recording, enabled=True, dir=str(rec_dir)))
    script = [{"say": "What are your opening hours?"},
              {"hangup": True, "when": "agent_speaking", "after_ms": 1000}]
    leftovers: list[str] = []

    async def go():
        res = await run_sim_call(cfg, script=patient(script), record=True, timeout_s=120)
        await asyncio.sleep(0)
        leftovers.extend(t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task())
        return res

    res = asyncio.run(go())
    s = res.session
    assert s.end_reason == "remote hangup" and res.record.hangup_by == "caller"
    assert not [n for n in leftovers if n.split("-")[0] in SESSION_TASKS or n.startswith("reply")], leftovers
    assert s.speaker.stopped and res.call.tx.available() == 0
    assert s.state == "ended" and [k for k, _ in s.events][-1] == "call.ended"
    # the cut reply's turn was still reported
    assert turn_events(s) and turn_events(s)[0]["v2v"] is not None
    # recording closed: a complete stereo WAV and the transcript beside it
    wavs = list(rec_dir.glob("*.wav"))
    assert len(wavs) == 1
    with wave.open(str(wavs[0])) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        assert w.getnframes() > 8000
    doc = json.loads(wavs[0].with_suffix(".json").read_text())
    assert doc["end_cause"] == "remote hangup" and doc["audio"] == wavs[0].name
    assert [t["role"] for t in doc["transcript"]][:2] == ["agent", "caller"]
    assert doc["turns"][0]["turn"] == 1


def test_echo_alone_never_interrupts(base_cfg, server):
    server.push({"text": LONG_REPLY})
    line = SimLineConfig(echo_db=-10.0, echo_delay_ms=60, noise_dbfs=-55.0)
    script = [{"say": "What are your opening hours?"}, {"hangup": True}]
    res = call(llm_cfg(base_cfg, server), script, line_cfg=line)
    s = res.session
    # loud echo of a long reply came back the whole time: no pause, no stop, the reply played out
    assert s.barge_ins == [], [(b.outcome, b.why, b.onset_ms) for b in s.barge_ins]
    assert not s.turns[0].interrupted and len(s.turns) == 1
    assert s.end_reason == "remote hangup"


def test_recording_retention(tmp_path):
    from appliance.agent.config import RecordingConfig
    from appliance.agent.recording import CallRecorder

    old = tmp_path / "20200101-000000_old.wav"
    old.write_bytes(b"\0" * 1000)
    old.with_suffix(".json").write_text("{}")
    week_ago = time.time() - 8 * 86400
    for p in (old, old.with_suffix(".json")):
        os.utime(p, (week_ago, week_ago))
    big = [tmp_path / f"20260101-00000{i}_big{i}.wav" for i in range(3)]
    for i, p in enumerate(big):
        p.write_bytes(b"\0" * 600_000)
        os.utime(p, (time.time() - 100 + i, time.time() - 100 + i))
    # a new call applies the limits: older than keep_days go, then the oldest until under max_mb
    rec = CallRecorder(RecordingConfig(dir=str(tmp_path), keep_days=7, max_mb=1), "sim-1", {"call_id": "sim-1"})
    assert not old.exists() and not old.with_suffix(".json").exists()
    assert [p.exists() for p in big] == [False, False, True]
    import numpy as np

    rec.write(np.ones(160, np.int16), np.full(160, 2, np.int16))
    rec.close([{"role": "agent", "text": "Hello"}], {"end_cause": "test"})
    rec.close([])   # twice is harmless
    with wave.open(str(rec.wav_path)) as w:
        frames = np.frombuffer(w.readframes(160), "<i2")
    assert frames[0::2].tolist() == [1] * 160 and frames[1::2].tolist() == [2] * 160
    doc = json.loads(rec.json_path.read_text())
    assert doc["transcript"][0]["text"] == "Hello" and doc["end_cause"] == "test"
    # keep_days 0 keeps every age; the size limit still applies
    assert apply_retention(tmp_path, 0, 100) == []


def test_caller_gives_up_before_answer_is_a_normal_end(base_cfg, server):
    """A CANCEL (the caller hangs up while the session is still getting ready) is not an error."""
    n0 = len(server.requests)
    res = call(llm_cfg(base_cfg, server), [{"say": "Hello?"}],
               session_hook=lambda s: s.call.mark_ended("cancelled"), timeout_s=60)
    s = res.session
    kinds = [k for k, _ in s.events]
    assert "error" not in kinds and "call.answered" not in kinds, s.events
    ended = [d for k, d in s.events if k == "call.ended"]
    assert len(ended) == 1 and ended[0]["cause"] == "caller gave up" and ended[0]["turns"] == 0
    assert s.call.answered_at is None and not new_requests(server, n0)


def test_line_loss_cause_is_passed_through(base_cfg, server):
    """A lost line (modem carrier gone, modem reset) is reported with the line's cause, not as a hang-up."""
    def lose_line_soon(s):
        asyncio.get_running_loop().call_later(2.0, s.call.mark_ended, "line-lost")

    res = call(llm_cfg(base_cfg, server), [{"say": "Hello?", "gap_ms": 20000}],
               session_hook=lose_line_soon, timeout_s=60)
    s = res.session
    assert s.end_reason == "line-lost"
    ended = [d for k, d in s.events if k == "call.ended"]
    assert len(ended) == 1 and ended[0]["cause"] == "line-lost"
    assert "error" not in [k for k, _ in s.events]


def spec_cfg(base_cfg, server, silence_ms):
    """Endpointing that waits `silence_ms` after any turn: the speculative transcript is in long before."""
    cfg = llm_cfg(base_cfg, server)
    ep = dataclasses.replace(cfg.detect.endpoint, min_silence_ms=silence_ms, question_silence_ms=silence_ms,
                             max_silence_ms=silence_ms + 1000)
    return dataclasses.replace(cfg, detect=dataclasses.replace(cfg.detect, endpoint=ep))


def user_messages(request):
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def test_speculative_reply_becomes_the_answer(base_cfg, server):
    """The reply starts on the pause's transcript, before the endpoint; once the turn is confirmed
    with the same words it is the answer: one request, the history as without speculation."""
    n0 = len(server.requests)
    server.push({"text": "We are open from nine to five."})
    res = call(spec_cfg(base_cfg, server, 2500), [{"say": "What are your opening hours?"}, {"hangup": True}])
    s = res.session
    assert (s.spec_started, s.spec_used, s.spec_wasted) == (1, 1, 0)
    reqs = new_requests(server, n0)
    assert len(reqs) == 1 and len(user_messages(reqs[0])) == 1
    assert "opening" in user_messages(reqs[0])[0].lower()
    ev = turn_events(s)[0]
    for key in TURN_KEYS:
        assert isinstance(ev[key], float) and ev[key] >= 0, (key, ev)
    assert ev["reply"] == "We are open from nine to five."
    assert "nine to five" in " ".join(t["text"] for t in s.transcript if t["role"] == "agent")
    # the transcript keeps the caller's turn before the agent's answer
    roles = [t["role"] for t in s.transcript]
    assert roles == ["agent", "caller", "agent"], s.transcript


def test_speculative_reply_is_dropped_when_the_caller_goes_on(base_cfg, server):
    """A mid-sentence pause starts a speculative reply; the caller goes on: it is cancelled, its
    exchange leaves the history, and the answer is to the whole turn."""
    n0 = len(server.requests)
    script = [{"say": "I'd like to book a visit."},
              {"say": "On Saturday morning, please.", "when": "now", "gap_ms": 2000},
              {"hangup": True}]
    res = call(spec_cfg(base_cfg, server, 3000), script)
    s = res.session
    assert s.spec_wasted >= 1 and s.spec_used == 1 and s.spec_started == s.spec_wasted + s.spec_used
    assert len(s.turns) == 1
    text = s.turns[0].user_text.lower()
    assert "book" in text and "saturday" in text
    reqs = new_requests(server, n0)
    assert len(reqs) == s.spec_started
    assert "saturday" not in user_messages(reqs[0])[0].lower()     # the wasted one: the first part only
    assert user_messages(reqs[-1]) == [s.turns[0].user_text]        # rolled back: one user message
    assert [m["role"] for m in reqs[-1]["messages"]] == ["system", "assistant", "user"]
