"""Interop with PJSIP (pjsua2-python), a second independent SIP stack: calls both ways with audio
verified in both directions and DTMF both ways. The wheel exists for x86_64 only: skipped elsewhere."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.lines.sip import SipLine

from .peers import free_port, read_wav, tone, wait_ports_free, write_wav
from .test_baresip import BOX_HZ, PEER_HZ, assert_tone, box_config, call_event, collect_rx, next_event

HAVE_PJSUA2 = importlib.util.find_spec("pjsua2") is not None
pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(not HAVE_PJSUA2, reason=f"pjsua2-python not installed (PyPI wheel is x86_64 only; "
                                               f"this machine is {platform.machine()})"),
]
PEER = Path(__file__).with_name("pjsua_peer.py")


async def run_peer(tmp_path, *extra):
    port, rtp = free_port(), free_port()
    wav = tmp_path / "pj_in.wav"
    write_wav(wav, np.concatenate([tone(PEER_HZ, 2.5), np.zeros(8000 * 5, np.int16)]))
    rec = tmp_path / "pj_out.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "--port", str(port), "--rtp-port", str(rtp), "--play", str(wav),
        "--record", str(rec), *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    return proc, port, rec


async def events_until_done(proc, timeout_s=25):
    events = []
    async def read():
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
            if events[-1].get("event") == "done":
                return
    try:
        await asyncio.wait_for(read(), timeout_s)
    finally:
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
    return events


async def wait_ready(proc):
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        if not line:
            raise RuntimeError("pjsua peer exited before it was ready")
        if b'"ready"' in line:
            return


def test_pjsip_calls_box(tmp_path):
    async def scenario():
        line = SipLine(box_config())
        await line.start()
        try:
            proc, port, rec = await run_peer(tmp_path, "--call", f"sip:box@127.0.0.1:{line.local_port}",
                                             "--seconds", "3.5", "--dtmf", "58")
            await wait_ready(proc)
            call = (await next_event(line, "ring", 15)).data["call"]
            await call.answer()
            call.play(tone(BOX_HZ, 2.5))
            rx_task = asyncio.create_task(collect_rx(call, 2.5))
            digits = [(await call_event(call, "dtmf", 8)).data["digit"] for _ in range(2)]
            rx = await rx_task
            await call.send_dtmf("3")
            events = await events_until_done(proc)
            await asyncio.wait_for(call.ended.wait(), 5)
            wait_ports_free([(port, 2)])
            return rx, digits, events, rec, call
        finally:
            await line.stop()

    rx, digits, events, rec, call = asyncio.run(scenario())
    assert digits == ["5", "8"]
    assert call.end_cause == "remote"
    assert [e for e in events if e.get("event") == "done"][0]["digits"] == "3"
    assert_tone(rx, PEER_HZ, "box heard PJSIP")
    far, rate = read_wav(rec)
    assert_tone(far if rate == 8000 else far[::rate // 8000], BOX_HZ, "PJSIP heard the box")


def test_box_calls_pjsip(tmp_path):
    async def scenario():
        line = SipLine(box_config())
        await line.start()
        try:
            proc, port, rec = await run_peer(tmp_path, "--answer", "--seconds", "0")
            await wait_ready(proc)
            call = await line.dial(f"sip:pjsua@127.0.0.1:{port}", timeout_s=10)
            call.play(tone(BOX_HZ, 2.0))
            rx = await collect_rx(call, 2.5)
            await call.hangup()
            events = await events_until_done(proc)
            return rx, events, rec
        finally:
            await line.stop()

    rx, events, rec = asyncio.run(scenario())
    assert any(e.get("event") == "done" and e.get("disconnected") for e in events), events
    assert_tone(rx, PEER_HZ, "box heard PJSIP")
    far, rate = read_wav(rec)
    assert_tone(far if rate == 8000 else far[::rate // 8000], BOX_HZ, "PJSIP heard the box")
