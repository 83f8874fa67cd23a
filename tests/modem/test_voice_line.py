"""The V.253 voice modem line against the voice modem emulator on a pty, per chipset dialect:
capability detection, caller ID between the first and second RING, answer, audio both ways
through DLE-shielded voice data, DTMF both ways, hook-flash transfer, far-end hang-up, dial out,
and a half-duplex-only modem detected and reported."""
from __future__ import annotations

import asyncio

import pytest
from modem_emulator_base import tone

from appliance.errors import LineError
from appliance.lines.modem import NotAVoiceModem

from .modemrig import drain, dtmf_digits, next_event, read_audio, run, running, tone_power, voice_emulator
from .modemrig import voice_line as line_for

# profile -> (dialect, sample format chosen from its +VSM=? listing, full duplex)
EXPECTED = {
    "conexant": ("conexant", "ulaw", True),
    "usrobotics": ("usrobotics", "ulaw", True),
    "agere": ("agere", "s16le", True),
    "zyxel": ("zyxel", "ulaw", False),
}


@pytest.mark.parametrize("voice_emu", list(EXPECTED), indirect=True)
def test_inbound_call_per_dialect(voice_emu):
    """Detect, ring with caller ID, answer, audio both ways, DTMF both ways, transfer by hook flash."""
    emu = voice_emu
    dialect, kind, duplex = EXPECTED[emu.profile.name]

    async def body():
        async with running(line_for(emu, transfer_number="200")) as line:
            assert line.dialect.name == dialect and line.codec.kind == kind
            assert line.full_duplex is duplex and line.capabilities.full_duplex is duplex
            assert line.caller_id_enabled
            # the init sequence is the manuals': sync, reset, echo off, identify, voice class
            assert emu.stats.commands[:4] == ["AT", "ATZ", "ATE0", "ATV1"]
            assert "AT+FCLASS=8" in emu.stats.commands
            health = line.health()
            assert health["barge_in"] is duplex
            if not duplex:
                assert "barge-in is impossible" in health["note"]

            emu.ring("5551234", name="ALICE")
            ring = await next_event(line, "ring", 10)
            assert ring.data["caller_id"] == "5551234" and ring.data["name"] == "ALICE"
            assert ring.data["rings"] == 2            # caller ID comes between ring 1 and ring 2
            call = ring.data["call"]
            await call.answer()
            assert f"AT+VSM={line.codec.cml},8000" in emu.stats.commands
            assert ("AT+VTR" in emu.stats.commands) is duplex

            emu.far.say(tone(1000, 800))
            call.play(tone(700, 800))
            rx = await read_audio(call, 1.4)
            if duplex:      # full duplex: the caller is heard while the agent speaks
                assert tone_power(rx, 1000) > 0.01
            heard = emu.far.heard_audio()
            assert tone_power(heard, 700) > 0.005, "the far end did not hear the agent"
            if not duplex:  # half duplex: recording resumes once the agent is silent
                emu.far.say(tone(1000, 600))
                rx = await read_audio(call, 1.2)
                assert tone_power(rx, 1000) > 0.005

            emu.send_dtmf("42#")
            assert await dtmf_digits(call, 3, 50) == ["4", "2", "#"]    # each digit once, however long held
            await call.send_dtmf("9*")
            assert emu.far.dtmf_heard == "9*"
            with pytest.raises(LineError, match="digits are"):
                await call.send_dtmf("x")

            assert await call.transfer("200") is True
            assert emu.far.flash_count == 1 and emu.far.transferred_to == "200"
            events = drain(call)
            assert [e.data["status"] for e in events if e.type == "transfer"] == ["trying", "ok"]
            assert call.ended.is_set() and call.end_cause == "transferred"
            assert [e.data["cause"] for e in events if e.type == "hangup"] == ["transferred"]
            assert not emu.hook_off and line.state == "idle"
            assert emu.lines.dropped == 0        # no voice byte followed a stop code into the parser
            metrics = next(e.data for e in events if e.type == "metrics")
            assert metrics["frames_in"] > 0 and metrics["modem_overruns"] == 0
    run(body())


def test_far_end_hangup_and_local_hangup(voice_emu):
    emu = voice_emu

    async def body():
        async with running(line_for(emu)) as line:
            emu.ring("5550000")
            call = (await next_event(line, "ring")).data["call"]
            await call.answer()
            await read_audio(call, 0.3)
            emu.far_hangup()                       # the exchange's busy tone: DLE b
            await asyncio.wait_for(call.ended.wait(), 5)
            assert call.end_cause == "busy-tone"
            await asyncio.sleep(0.3)
            assert not emu.hook_off                # the line put the modem back on hook

            emu.ring("5550001")
            call = (await next_event(line, "ring")).data["call"]
            await call.answer()
            await read_audio(call, 0.3)
            await call.hangup()
            await call.hangup()                    # twice is harmless
            assert call.end_cause == "local" and not emu.hook_off and emu.mode == "cmd"
            assert line.health()["calls"] == 2
    run(body())


def test_caller_gives_up_before_answer(voice_emu):
    emu = voice_emu

    async def body():
        async with running(line_for(emu, rings_before_answer=5)) as line:
            emu.ring("5551111", rings=2)
            await asyncio.sleep(0.3)
            call = line.call
            assert call is not None and line.state == "ringing"
            await asyncio.wait_for(call.ended.wait(), 8)
            assert call.end_cause == "caller-gave-up" and line.state == "idle"
            with pytest.raises(LineError, match="hung up before the answer"):
                await call.answer()
    run(body())


def test_dial_out_progress(voice_emu):
    emu = voice_emu
    emu.dial_answer_s = 0.3

    async def body():
        async with running(line_for(emu)) as line:
            call = await line.dial("555-0100")
            assert emu.far.dialled == "5550100" and call.answered_at
            emu.far.say(tone(1000, 400))
            rx = await read_audio(call, 0.6)
            assert tone_power(rx, 1000) > 0.005
            await call.hangup()
            emu.dial_result = "BUSY"
            with pytest.raises(LineError, match="busy"):
                await line.dial("5550101")
            assert line.call is None and not emu.hook_off
            emu.dial_result = "NO DIALTONE"
            with pytest.raises(LineError, match="no-dialtone"):
                await line.dial("5550102")
            with pytest.raises(LineError, match="cannot dial"):
                await line.dial("call me")
    run(body())


def test_data_only_modem_is_refused_with_a_reason(tmp_path):
    from voice_modem_emulator import PROFILES, Profile

    PROFILES["dataonly"] = Profile("dataonly", "DATA 56K", "Generic data modem", "ACME", classes="0,1,2")
    try:
        with voice_emulator(tmp_path, "dataonly", name="data0") as emu:
            async def body():
                line = line_for(emu)
                with pytest.raises(NotAVoiceModem, match="not a voice modem.*no class 8"):
                    await line.start()
                assert line.state == "error"
            run(body())
    finally:
        del PROFILES["dataonly"]
