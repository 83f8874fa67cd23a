"""Faults on both modem lines: USB unplug mid-call (the pty vanishes) ends the call with events
and the line comes back by itself when the device reappears; a wedged modem is reset (DTR drop
by closing the port); stray bytes from the modem change nothing."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from modem_emulator_base import tone

from . import modemrig
from .modemrig import drain, next_event, run, running, tone_power

BACK_WITHIN_S = 10.0        # the bound for a replugged device
REOPEN_S = 0.3              # the lines retry a vanished device this often

pytestmark = pytest.mark.usefixtures("sim_pin")


def voice_line(emu, **kw):
    return modemrig.voice_line(emu, reopen_interval_s=REOPEN_S, **kw)


def gsm_line(emu, **kw):
    return modemrig.gsm_line(emu, reopen_interval_s=REOPEN_S, **kw)


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


async def wedged_until_idle(line, emu, timeout_s: float) -> list[str]:
    """Wedge the idle modem; the line states seen until the line is idle again."""
    forget_line_events(line)
    emu.wedge()
    return await states_until(line, "idle", timeout_s)


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
        async with running(voice_line(emu)) as line:
            call = await answered_call(line, emu, "5551234")
            await unplug_replug(line, emu, call)
            call2 = await answered_call(line, emu, "5559876")   # the same line takes the next call
            assert call2.remote == "5559876" and call2 is not call
            emu.far.say(tone(1000, 400))
            frames = [(await call2.read_frame(2.0)).samples for _ in range(30)]
            assert tone_power(np.concatenate(frames), 1000) > 0.005
            await call2.hangup()
    run(body())


def test_gsm_modem_unplugged_mid_call_comes_back(gsm_emu):
    emu = gsm_emu

    async def body():
        async with running(gsm_line(emu)) as line:
            call = await answered_call(line, emu, "+15551234")
            await unplug_replug(line, emu, call)
            assert line.health()["registered"] and line.health()["sim"] == "ready"
            call2 = await answered_call(line, emu, "+15559876")
            await call2.hangup()
    run(body())


def test_wedged_voice_modem_is_reset_when_idle(voice_emu):
    emu = voice_emu

    async def body():
        async with running(voice_line(emu, health_check_s=0.5)) as line:
            seen = await wedged_until_idle(line, emu, 12)
            assert seen[0] == "error" and line.health()["resets"] == 1
            assert "stopped answering" in line.health()["last_error"]
            assert not emu.wedged and emu.stats.resets >= 1       # the modem saw DTR drop
            await (await answered_call(line, emu, "5551234")).hangup()
    run(body())


def test_wedged_voice_modem_mid_call_ends_the_call_and_resets(voice_emu):
    emu = voice_emu

    async def body():
        async with running(voice_line(emu)) as line:
            call = await answered_call(line, emu, "5551234")
            forget_line_events(line)
            emu.wedge()                                  # voice data stops, commands unanswered
            await asyncio.wait_for(call.ended.wait(), 8)
            assert call.end_cause == "modem-reset"
            await states_until(line, "idle", 10)
            assert line.health()["resets"] == 1 and not emu.wedged
    run(body())


def test_wedged_gsm_modem_is_reset(gsm_emu):
    emu = gsm_emu

    async def body():
        async with running(gsm_line(emu, health_check_s=0.5)) as line:
            seen = await wedged_until_idle(line, emu, 12)
            assert "error" in seen and line.health()["resets"] == 1 and not emu.wedged
            await (await answered_call(line, emu, "+15551234")).hangup()
    run(body())


def test_stray_bytes_change_nothing(voice_emu, gsm_emu):
    async def body():
        async with (running(voice_line(voice_emu, health_check_s=0.5)) as vline,
                    running(gsm_line(gsm_emu, health_check_s=0.5)) as gline):
            for _ in range(5):                 # line noise between the probes and polls
                voice_emu.inject(b"\x00\xff\x10\x10\x1b[junk\r\n\x10\x03OK?\r\n")
                gsm_emu.inject(b"\xfe\r\n+CME ERROR: 99\r\n\x10b\x00")
                await asyncio.sleep(0.3)
            assert vline.state == "idle" and gline.state == "idle"
            assert vline.health()["resets"] == 0 and gline.health()["resets"] == 0
            await (await answered_call(vline, voice_emu, "5551234")).hangup()
            await (await answered_call(gline, gsm_emu, "+15551234")).hangup()
    run(body())
