"""Whole calls through each modem emulator on a pty, with the real agent: the default offline
call flow in a `CallSession`, real VAD/endpointing/STT/TTS, audio through DLE-shielded µ-law
(V.253) or serial PCM (GSM). The emulator's far end speaks two TTS utterances and records what
the agent says. Checked: ring, caller ID, answer, the agent's greeting heard and understood by
STT at the far end, the caller's question transcribed and answered, DTMF both ways, handoff by
hook flash + dial (V.253) or +CHLD hold/dial/ECT (GSM), and the call ended with events.
Then a USB unplug mid-call under a running session ends the call cleanly."""
from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest

from appliance import config as config_mod
from appliance.agent import engines
from appliance.agent.session import CallSession
from appliance.speech import corpus

from .modemrig import SIM_PIN, gsm_emulator, gsm_line, next_event, run, running, voice_emulator, voice_line

QUESTION = "What time do you open on Saturday?"
ASK_PERSON = "Can I talk to a real person please?"
LOUD = 300          # |sample| of agent speech at the far end
QUIET_S = 0.8       # the agent has finished its turn after this much silence


@pytest.fixture(scope="module")
def speech():
    cfg = config_mod.load(None)
    tts = engines.get_tts(cfg.speech)
    utterances = {t: np.asarray(tts.synthesize_to_array(t, sample_rate=8000), dtype=np.int16)
                  for t in (QUESTION, ASK_PERSON)}
    return cfg, utterances, engines.get_stt(cfg.speech)


def letter_error_rate(ref: str, hyp: str) -> float:
    """Edit distance between the letters of the normalised words (spaces left out) / letters of `ref`."""
    r = "".join(corpus.words(ref))
    return corpus.edit_distance(r, "".join(corpus.words(hyp))) / max(1, len(r))


def agent_cfg(cfg, target):
    return dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, handoff_target=target),
                               recording=dataclasses.replace(cfg.recording, enabled=False))


async def agent_finished_turn(far, since: int, timeout_s: float = 30.0) -> int:
    """Wait until the far end has heard agent speech after sample `since`, then QUIET_S of
    silence. Returns the sample index where that speech started."""
    deadline = time.monotonic() + timeout_s
    start = None
    quiet = int(QUIET_S * 8000)
    while time.monotonic() < deadline:
        heard = far.heard_audio()
        if start is None:
            loud = np.flatnonzero(np.abs(heard[since:].astype(np.int32)) > LOUD)
            if len(loud):
                start = since + int(loud[0])
        elif len(heard) - start > quiet and np.abs(heard[-quiet:].astype(np.int32)).max() < LOUD:
            return start
        await asyncio.sleep(0.05)
    raise AssertionError(f"the agent did not finish a turn within {timeout_s} s (speech started: {start})")


async def caller_script(emu, call, session, utterances, report: dict) -> None:
    """The far-end party: listen to the greeting, ask, press a key, ask for a person."""
    far = emu.far
    start = await agent_finished_turn(far, 0)
    report["greeting_audio"] = far.heard_audio()[start:]     # transcribed after the call
    far.say(utterances[QUESTION])
    since = far.heard_samples + len(utterances[QUESTION])
    start = await agent_finished_turn(far, since)
    report["answer_samples"] = far.heard_samples - start
    emu.send_dtmf("5")                     # the caller presses 5 ...
    for _ in range(100):                   # (a key pressed while the modem is out of voice mode is lost)
        if any(t == "dtmf" for t, _ in session.events):
            break
        await asyncio.sleep(0.05)
    await call.send_dtmf("7")              # ... and the box sends 7 while its session runs
    await asyncio.sleep(0.5)
    far.say(utterances[ASK_PERSON])


async def full_call(line, emu, speech, handoff_target: str, ring_number: str) -> None:
    """One whole call rung in on `line`, the caller played by `caller_script`, then `check_session`."""
    base, utterances, stt = speech
    cfg = agent_cfg(base, handoff_target)
    emu.ring(ring_number)
    ring = await next_event(line, "ring", 10)
    call = ring.data["call"]
    assert ring.data["caller_id"] == ring_number
    session = CallSession(call, cfg, record=False)
    report: dict = {}
    caller = asyncio.ensure_future(caller_script(emu, call, session, utterances, report))
    try:
        await asyncio.wait_for(session.run(), 120)
    except TimeoutError:
        raise AssertionError(f"the call did not end: events {[(t, d) for t, d in session.events]}; "
                             f"transcript {session.transcript}; caller {sorted(report)}") from None
    if caller.done():
        caller.result()                    # surface the caller script's own failure
    else:
        caller.cancel()
    report["greeting_text"] = await asyncio.to_thread(stt.transcribe, report["greeting_audio"])
    check_session(session, report, call)


def check_session(session, report, call):
    types = [t for t, _ in session.events]
    assert types[0] == "call.started" and "call.answered" in types and types[-1] == "call.ended"
    agents = [t["text"].lower() for t in session.transcript if t["role"] == "agent"]
    # the far end heard the greeting the agent said (the same letter count as the question below)
    assert "thanks for calling" in agents[0], agents
    assert letter_error_rate(agents[0], report["greeting_text"]) <= 0.15, (agents[0], report["greeting_text"])
    assert report["answer_samples"] > 8000            # the agent answered the question out loud
    callers = [t["text"].lower() for t in session.transcript if t["role"] == "caller"]
    # the caller's question came through the modem's audio path intelligible. Counted in letters,
    # not words: Whisper tiny.en now and then splits a word of the synthetic voice (CI runs heard
    # "Saturday" as "setter day" and "set or day": 3 word errors, 2-3 letters), while a broken
    # path (lost frames, wrong byte order, a slipping clock) garbles far more than 15 % of them
    assert min(letter_error_rate(QUESTION, c) for c in callers) <= 0.15, callers
    assert any("saturday" in a for a in agents), agents
    assert [d["digit"] for t, d in session.events if t == "dtmf"] == ["5"]
    handoff = next(d for t, d in session.events if t == "handoff")
    assert handoff["reason"] == "caller asked for a person"
    assert [d["status"] for t, d in session.events if t == "transfer"] == ["trying", "ok"]
    ended = session.events[-1][1]
    assert ended["cause"] == "transferred" and ended["turns"] >= 2
    assert call.ended.is_set() and call.end_cause == "transferred"


def test_full_call_through_the_voice_modem_emulator(speech, tmp_path):
    async def body(emu):
        async with running(voice_line(emu)) as line:
            await full_call(line, emu, speech, "200", "5551234")
            assert emu.far.dtmf_heard == "7200"           # +VTS=7, then the target after the flash
            assert emu.far.flash_count == 1 and emu.far.transferred_to == "200"
            assert not emu.hook_off and line.state == "idle"
            assert emu.stats.overruns == 0                # the modem's TX buffer never overflowed
    with voice_emulator(tmp_path, "conexant", ring_period_s=1.0, cid_delay_s=0.3, drift_ppm=120.0) as emu:
        run(body(emu), 150)


@pytest.mark.usefixtures("sim_pin")
def test_full_call_through_the_gsm_modem_emulator(speech, tmp_path):
    async def body(emu):
        async with running(gsm_line(emu)) as line:
            await full_call(line, emu, speech, "+15550199", "+15551234")
            assert emu.far.dtmf_heard == "7"
            assert emu.far.transferred_to == "+15550199" and "AT+CHLD=4" in emu.commands
            assert not emu.calls and line.state == "idle"
    with gsm_emulator(tmp_path, "sim7600", pin=SIM_PIN, drift_ppm=-120.0) as emu:
        run(body(emu), 150)


def test_unplug_under_a_running_session_ends_the_call_cleanly(speech, tmp_path):
    base, _, _ = speech
    cfg = agent_cfg(base, "200")

    async def body(emu):
        async with running(voice_line(emu, reopen_interval_s=0.3)) as line:
            emu.ring("5551234")
            call = (await next_event(line, "ring", 10)).data["call"]
            session = CallSession(call, cfg, record=False)
            task = asyncio.ensure_future(session.run())
            while emu.far.heard_samples < 4000:           # unplug while the greeting plays
                await asyncio.sleep(0.05)
            emu.unplug()
            await asyncio.wait_for(task, 10)
            assert call.end_cause == "line-lost"
            assert session.events[-1][0] == "call.ended"
            assert not any(t == "error" for t, _ in session.events)
            emu.replug()
            for _ in range(100):
                if line.state == "idle":
                    break
                await asyncio.sleep(0.1)
            assert line.state == "idle"
    with voice_emulator(tmp_path, "usrobotics", ring_period_s=1.0, cid_delay_s=0.3) as emu:
        run(body(emu), 60)
