"""The 27.007 GSM modem line against the GSM modem emulator (AT pty + serial PCM pty), per
dialect: SIM PIN, registration and signal, RING + +CLIP, ATA, +CLCC call states, audio over
serial PCM, DTMF both ways (+RXDTMF / +QTONEDET in, +VTS out), transfer (+CHLD=2, ATD, +CHLD=4
for an answered call; +CTFR for a ringing one), hang-ups and dial out."""
from __future__ import annotations

import asyncio

import pytest
from modem_emulator_base import tone

from appliance.errors import LineError

from .modemrig import (
    PIN_ENV,
    drain,
    dtmf_digits,
    gsm_emulator,
    next_event,
    read_audio,
    run,
    running,
    tone_power,
)
from .modemrig import gsm_line as line_for

pytestmark = pytest.mark.usefixtures("sim_pin")


@pytest.mark.parametrize("gsm_emu", ["sim7600", "ec25"], indirect=True)
def test_inbound_call_per_dialect(gsm_emu):
    emu = gsm_emu
    audio_cmd = {"sim7600": "AT+CPCMREG=1", "ec25": "AT+QPCMV=1,0"}[emu.profile.name]

    async def body():
        async with running(line_for(emu, transfer_number="+15550199")) as line:
            h = line.health()
            assert h["dialect"] == emu.profile.name and h["sim"] == "ready"
            assert 'AT+CPIN="1234"' in emu.commands            # the PIN came from the environment
            assert h["registered"] and h["registration"]["CREG"]["status"] == "home"
            assert h["signal_dbm"] == -113 + 2 * emu.rssi and h["operator"] == "Emulated Net"
            assert line.state == "idle"

            emu.ring("+15551234")
            ring = await next_event(line, "ring", 10)
            call = ring.data["call"]
            assert ring.data["caller_id"] == "+15551234"
            r = await asyncio.to_thread(line.channel.command, "AT+CLCC")
            assert r.lines == ['+CLCC: 1,1,4,0,0,"+15551234",145']      # incoming
            await call.answer()
            assert audio_cmd in emu.commands
            r = await asyncio.to_thread(line.channel.command, "AT+CLCC")
            assert r.lines == ['+CLCC: 1,1,0,0,0,"+15551234",145']      # active

            emu.far.say(tone(1000, 800))
            call.play(tone(700, 800))
            rx = await read_audio(call, 1.2)
            assert tone_power(rx, 1000) > 0.01
            assert tone_power(emu.far.heard_audio(), 700) > 0.01

            emu.send_dtmf("31#")
            assert await dtmf_digits(call, 3, 60) == ["3", "1", "#"]
            await call.send_dtmf("58")
            assert emu.far.dtmf_heard == "58"
            assert [c for c in emu.commands if c.startswith("AT+VTS")] == ["AT+VTS=5", "AT+VTS=8"]

            assert await call.transfer("+1 555 0199") is True
            assert emu.far.transferred_to == "+15550199"
            i = emu.commands.index("AT+CHLD=2")
            assert emu.commands[i + 1] == "ATD+15550199;" and "AT+CHLD=4" in emu.commands[i + 2:]
            events = drain(call)
            assert [e.data["status"] for e in events if e.type == "transfer"] == ["trying", "ok"]
            assert call.end_cause == "transferred" and not emu.calls
            assert line.state == "idle"
    run(body())


def test_ringing_call_is_deflected_with_ctfr(gsm_emu):
    emu = gsm_emu

    async def body():
        async with running(line_for(emu)) as line:
            emu.ring("+15557777")
            call = (await next_event(line, "ring")).data["call"]
            assert await call.transfer("+15550199") is True
            assert 'AT+CTFR="+15550199"' in emu.commands and emu.far.transferred_to == "+15550199"
            assert call.end_cause == "transferred" and not emu.calls
    run(body())


def test_remote_hangup_withheld_number_and_local_hangup(gsm_emu):
    emu = gsm_emu

    async def body():
        async with running(line_for(emu)) as line:
            emu.ring(withheld=True)
            ring = await next_event(line, "ring")
            assert ring.data["caller_id"] == "private"
            call = ring.data["call"]
            await call.answer()
            await read_audio(call, 0.3)
            emu.far_hangup()                          # NO CARRIER / VOICE CALL: END / +CLCC stat 6
            await asyncio.wait_for(call.ended.wait(), 5)
            assert call.end_cause == "remote"
            await asyncio.sleep(0.3)
            assert "AT+CPCMREG=0" in emu.commands       # serial PCM released with the call

            emu.ring("+15552222")
            call = (await next_event(line, "ring")).data["call"]
            await call.answer()                          # 2nd CPCMREG=1 after a cycle fails once (CP #121)
            rx = await read_audio(call, 0.4)
            assert len(rx) > 0 and emu.pcm_on
            assert emu.commands.count("AT+CPCMREG=1") == 3       # retried after the quirk's ERROR
            await call.hangup()
            assert "AT+CHUP" in emu.commands and not emu.calls
            assert line.health()["calls"] == 2
    run(body())


def test_dial_out_and_busy(gsm_emu):
    emu = gsm_emu
    emu.dial_answer_s = 0.4

    async def body():
        async with running(line_for(emu)) as line:
            call = await line.dial("+1 555 0100")
            assert emu.far.dialled == "+15550100" and "ATD+15550100;" in emu.commands
            emu.far.say(tone(1000, 400))
            assert tone_power(await read_audio(call, 0.6), 1000) > 0.005
            await call.hangup()
            emu.dial_result["+15550101"] = "BUSY"
            with pytest.raises(LineError, match="busy"):
                await line.dial("+15550101")
            assert line.call is None and not emu.calls
            with pytest.raises(LineError, match="cannot dial"):
                await line.dial("somebody")
    run(body())


def test_sim_problems_are_clear_errors(gsm_emu, monkeypatch):
    emu = gsm_emu

    async def body():
        line = line_for(emu, pin_env=None)
        with pytest.raises(LineError, match="asks for a PIN: set pin_env"):
            await line.start()
        assert line.sim == "pin-required" and line.state == "error"
        monkeypatch.setenv(PIN_ENV, "0000")
        line = line_for(emu)
        with pytest.raises(LineError, match="rejected the PIN.*not retrying"):
            await line.start()
        assert sum(c.startswith("AT+CPIN=") for c in emu.commands) == 1     # one try: the SIM must not lock
    run(body())


def test_sim800_has_no_serial_pcm(tmp_path):
    with gsm_emulator(tmp_path, "sim800") as emu:
        async def body():
            line = line_for(emu, pin_env=None)
            with pytest.raises(LineError, match="sim800 has no serial PCM audio; use audio: usb"):
                await line.start()
        run(body())
