"""Interop with baresip (a real softphone): calls both ways, audio verified both ways by measuring
a tone in the far end's recording and in `call.rx`, DTMF both ways, BYE both ways."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from appliance.lines.sip import SipLine, SipLineConfig

from .conftest import needs_baresip
from .peers import active_part, free_port, free_range, read_wav, tone, tone_ratio_db, write_wav

pytestmark = [needs_baresip, pytest.mark.peers]

BOX_HZ = 600.0      # what the box plays
PEER_HZ = 1000.0    # what baresip plays


def box_config(**kw) -> SipLineConfig:
    lo, hi = free_range(10)
    base = dict(name="box", listen=f"127.0.0.1:{free_port()}", rtp_ports=f"{lo}-{hi}")
    base.update(kw)
    return SipLineConfig(**base)


def peer_wav(tmp_path, seconds_tone=2.0, seconds_silence=6.0):
    path = tmp_path / "peer.wav"
    write_wav(path, np.concatenate([tone(PEER_HZ, seconds_tone), np.zeros(int(8000 * seconds_silence), np.int16)]))
    return path


async def collect_rx(call, seconds: float) -> np.ndarray:
    frames = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = await call.read_frame(timeout=2.0)
        if frame is None:
            break
        frames.append(frame.samples)
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


async def next_event(line, kind, timeout_s=10.0):
    async def first():
        async for ev in line.events():
            if ev.type == kind:
                return ev
    return await asyncio.wait_for(first(), timeout_s)


async def call_event(call, kind, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        ev = await asyncio.wait_for(call.events.get(), max(0.01, deadline - time.monotonic()))
        if ev.type == kind:
            return ev


def assert_tone(pcm, freq, label):
    part = active_part(pcm)
    assert len(part) >= 8000, f"{label}: only {len(part)} samples of audio above the threshold"
    ratio = tone_ratio_db(part, freq)
    assert ratio > 10.0, f"{label}: {freq} Hz is not dominant ({ratio:.1f} dB)"
    return ratio


def test_box_calls_baresip_audio_both_ways_and_dtmf(tmp_path, baresip_factory):
    bob = baresip_factory(name="bob", source_wav=peer_wav(tmp_path))

    async def scenario():
        line = SipLine(box_config())
        await line.start()
        try:
            call = await line.dial(f"sip:bob@127.0.0.1:{bob.sip_port}", timeout_s=10)
            assert call.negotiated.codec == "PCMU"
            call.play(tone(BOX_HZ, 2.0))
            rx = await collect_rx(call, 2.5)
            n = len(bob.events)
            await call.send_dtmf("47#")
            digits = []
            for _ in range(3):
                ev = bob.wait_event("CALL_DTMF_START", 5, after=n)
                n = bob.events.index(ev) + 1
                digits.append(ev.get("param"))
            await call.hangup()
            assert call.ended.is_set() and call.end_cause == "local"
            return rx, digits
        finally:
            await line.stop()

    rx, digits = asyncio.run(scenario())
    assert digits == ["4", "7", "#"]
    assert_tone(rx, PEER_HZ, "box heard baresip")
    bob.wait_event("CALL_CLOSED", 5)
    time.sleep(0.3)
    recs = bob.recordings("dec")
    assert recs, "baresip recorded nothing"
    far, rate = read_wav(recs[-1])
    assert rate == 8000
    assert_tone(far, BOX_HZ, "baresip heard the box")


def test_baresip_calls_box_audio_dtmf_and_remote_bye(tmp_path, baresip_factory):
    bob = baresip_factory(name="bob", source_wav=peer_wav(tmp_path), codecs="PCMA")

    async def scenario():
        line = SipLine(box_config())
        await line.start()
        try:
            bob.command("dial", f"sip:box@127.0.0.1:{line.local_port}")
            ring = await next_event(line, "ring")
            call = ring.data["call"]
            assert ring.data["caller_id"] == "bob"
            await call.answer()
            assert call.negotiated.codec == "PCMA"
            call.play(tone(BOX_HZ, 2.0))
            rx = await collect_rx(call, 2.5)
            bob.command("sndcode", "9")
            ev = await call_event(call, "dtmf", 5)
            assert ev.data["digit"] == "9"
            bob.command("hangup")
            await asyncio.wait_for(call.ended.wait(), 5)
            assert call.end_cause == "remote"
            return rx
        finally:
            await line.stop()

    rx = asyncio.run(scenario())
    assert_tone(rx, PEER_HZ, "box heard baresip")
    bob.wait_event("CALL_CLOSED", 5)
    time.sleep(0.3)
    far, _ = read_wav(bob.recordings("dec")[-1])
    assert_tone(far, BOX_HZ, "baresip heard the box")
