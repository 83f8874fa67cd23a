"""Faults on both modem lines: USB unplug mid-call (the pty vanishes) ends the call with events
and the line comes back by itself when the device reappears; a wedged modem is reset (DTR drop
by closing the port); stray bytes from the modem change nothing."""
from __future__ import annotations

import asyncio
import time

import pytest
from modem_emulator_base import tone

from appliance.lines.gsm import GsmLine
from appliance.lines.modem import ModemLine
from appliance.lines.modem_config import GsmLineConfig, ModemLineConfig

from .conftest import drain, next_event, run, tone_power

PIN_ENV = "APPLIANCE_TEST_SIM_PIN"
BACK_WITHIN_S = 10.0        # the bound for a replugged device


@pytest.fixture(autouse=True)
def sim_pin(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "1234")


def voice_line(emu, **kw):
    return ModemLine(ModemLineConfig(port=emu.port, reopen_interval_s=0.3, **kw))


def gsm_line(emu, **kw):
    return GsmLine(GsmLineConfig(port=emu.port, audio="serial-pcm", audio_port=emu.audio_port, pin_env=PIN_ENV,
                                 reopen_interval_s=0.3, **kw))


def forget_line_events(line) -> None:
    """Drop the line events seen so far (the next `states_until` starts from now)."""
    while not line._events.empty():
        line._events.get_nowait()


async def states_until(line, want: str, timeout_s: float) -> list[str]:
    """Line states seen (in order) until `want`."""
    seen: list[str] = []

    async def watch():
        async for e in line.events():
            if e.type == "state":
                seen.append(e.data["state"])
                if e.data["state"] == want:
                    return
    await asyncio.wait_for(watch(), timeout_s)
    return seen


async def answered_call(line, emu, number):
    emu.ring(number)
    call = (await next_event(line, "ring", 10)).data["call"]
    await call.answer()
    for _ in range(10):
        assert await call.read_frame(2.0) is not None
    return call


async def unplug_replug(line, emu, call):
    emu.unplug()
    await asyncio.wait_for(call.ended.wait(), 5)
    assert call.end_cause == "line-lost"
    events = drain(call)
    assert [e.data["cause"] for e in events if e.type == "hangup"] == ["line-lost"]
    assert any(e.type == "metrics" for e in events)
    assert await call.read_frame(0.5) is None            # the session's reader sees the end at once
    await asyncio.sleep(0.1)
    assert line.state == "down"          # and stays down, retrying, while the device is away
    await asyncio.sleep(1.0)                              # the device is gone for a second
    assert line.state == "down" and "cannot open" in line.health()["last_error"]
    forget_line_events(line)
    t_replug = time.monotonic()
    emu.replug()
    await states_until(line, "idle", BACK_WITHIN_S)
    assert time.monotonic() - t_replug < BACK_WITHIN_S
    assert line.health()["reopens"] == 1


def test_voice_modem_unplugged_mid_call_comes_back(voice_emu):
    emu = voice_emu

    async def body():
        line = voice_line(emu)
        await line.start()
        try:
            call = await answered_call(line, emu, "5551234")
            await unplug_replug(line, emu, call)
            call2 = await answered_call(line, emu, "5559876")   # the same line takes the next call
            assert call2.remote == "5559876" and call2 is not call
            emu.far.say(tone(1000, 400))
            frames = [(await call2.read_frame(2.0)).samples for _ in range(30)]
            import numpy as np
            assert tone_power(np.concatenate(frames), 1000) > 0.005
            await call2.hangup()
        finally:
            await line.stop()
    run(body())


def test_gsm_modem_unplugged_mid_call_comes_back(gsm_emu):
    emu = gsm_emu

    async def body():
        line = gsm_line(emu)
        await line.start()
        try:
            call = await answered_call(line, emu, "+15551234")
            await unplug_replug(line, emu, call)
            assert line.health()["registered"] and line.health()["sim"] == "ready"
            call2 = await answered_call(line, emu, "+15559876")
            await call2.hangup()
        finally:
            await line.stop()
    run(body())


def test_wedged_voice_modem_is_reset_when_idle(voice_emu):
    emu = voice_emu

    async def body():
        line = voice_line(emu, health_check_s=0.5)
        await line.start()
        try:
            forget_line_events(line)
            emu.wedge()
            seen = await states_until(line, "idle", 12)
            assert seen[0] == "error" and line.health()["resets"] == 1
            assert "stopped answering" in line.health()["last_error"]
            assert not emu.wedged and emu.stats.resets >= 1       # the modem saw DTR drop
            await (await answered_call(line, emu, "5551234")).hangup()
        finally:
            await line.stop()
    run(body())


def test_wedged_voice_modem_mid_call_ends_the_call_and_resets(voice_emu):
    emu = voice_emu

    async def body():
        line = voice_line(emu)
        await line.start()
        try:
            call = await answered_call(line, emu, "5551234")
            forget_line_events(line)
            emu.wedge()                                  # voice data stops, commands unanswered
            await asyncio.wait_for(call.ended.wait(), 8)
            assert call.end_cause == "modem-reset"
            await states_until(line, "idle", 10)
            assert line.health()["resets"] == 1 and not emu.wedged
        finally:
            await line.stop()
    run(body())


def test_wedged_gsm_modem_is_reset(gsm_emu):
    emu = gsm_emu

    async def body():
        line = gsm_line(emu, health_check_s=0.5)
        await line.start()
        try:
            forget_line_events(line)
            emu.wedge()
            seen = await states_until(line, "idle", 12)
            assert "error" in seen and line.health()["resets"] == 1 and not emu.wedged
            await (await answered_call(line, emu, "+15551234")).hangup()
        finally:
            await line.stop()
    run(body())


def test_stray_bytes_change_nothing(voice_emu, gsm_emu):
    async def body():
        vline, gline = voice_line(voice_emu, health_check_s=0.5), gsm_line(gsm_emu, health_check_s=0.5)
        await vline.start()
        await gline.start()
        try:
            for _ in range(5):                 # line noise between the probes and polls
                voice_emu.inject(b"\x00\xff\x10\x10\x1b[junk\r\n\x10\x03OK?\r\n")
                gsm_emu.inject(b"\xfe\r\n+CME ERROR: 99\r\n\x10b\x00")
                await asyncio.sleep(0.3)
            assert vline.state == "idle" and gline.state == "idle"
            assert vline.health()["resets"] == 0 and gline.health()["resets"] == 0
            await (await answered_call(vline, voice_emu, "5551234")).hangup()
            await (await answered_call(gline, gsm_emu, "+15551234")).hangup()
        finally:
            await vline.stop()
            await gline.stop()
    run(body())
