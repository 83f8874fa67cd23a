"""Attended transfer (RFC 5589 §7) with PJSIP as both the caller and the transfer target: the box
calls the target (consultation) and briefs it, then REFERs the caller with Replaces; PJSIP's own
REFER and Replaces handling joins caller and target, audio checked both ways on the joined call.
And where the target does not support Replaces (baresip 1.0), the box falls back to blind."""
from __future__ import annotations

import asyncio
import importlib.util
import platform
import sys
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from appliance.lines.sip import SipLine

from .conftest import needs_baresip
from .peers import free_port, read_wav, tone, write_wav
from .test_baresip import BOX_HZ, PEER_HZ, assert_tone, box_config, call_event, next_event
from .test_pjsip import events_until_done, wait_ready

HAVE_PJSUA2 = importlib.util.find_spec("pjsua2") is not None
needs_pjsua2 = pytest.mark.skipif(not HAVE_PJSUA2, reason=f"pjsua2-python not installed (PyPI wheel is x86_64 "
                                                           f"only; this machine is {platform.machine()})")
pytestmark = pytest.mark.peers
PEER = Path(__file__).with_name("pjsua_peer.py")
TARGET_HZ = 1400.0


async def start_peer(tmp_path, name, hz, *extra):
    port, rtp = free_port(), free_port()
    wav = tmp_path / f"{name}_in.wav"
    write_wav(wav, np.concatenate([tone(hz, 2.5), np.zeros(8000 * 8, np.int16)]))
    rec = tmp_path / f"{name}_out.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), "--port", str(port), "--rtp-port", str(rtp), "--play", str(wav),
        "--record", str(rec), "--timeout", "30", *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await wait_ready(proc)
    return proc, port, rec


async def answer_and_transfer(line, target_uri: str, reason: str, settle_s: float):
    """Answer the next call ringing on `line`, let it run `settle_s`, then transfer it ("warm") to
    `target_uri`: (the transfer's result, the call, the data of its 'transfer' events queued by then)."""
    call = (await next_event(line, "ring", 15)).data["call"]
    await call.answer()
    await call_event(call, "answered")
    await asyncio.sleep(settle_s)
    ok = await call.transfer(target_uri, "warm", reason)
    transfer_events = []
    while not call.events.empty():
        ev = call.events.get_nowait()
        if ev.type == "transfer":
            transfer_events.append(ev.data)
    return ok, call, transfer_events


def recorded(path: Path) -> np.ndarray:
    pcm, rate = read_wav(path)
    return pcm if rate == 8000 else pcm[:: rate // 8000]


@needs_pjsua2
def test_attended_transfer_joins_caller_and_target_with_replaces(tmp_path):
    async def scenario():
        line = SipLine(box_config(transfer_attended=True, max_calls=1))
        assert line.capabilities.transfer_warm

        async def speak(text):  # the runtime would use TTS; a tone is checkable at the far end
            assert "human" in text
            return tone(BOX_HZ, 1.5)

        line.briefing_audio = speak
        await line.start()
        target = caller = None
        try:
            target, target_port, target_rec = await start_peer(tmp_path, "target", TARGET_HZ, "--answer",
                                                               "--seconds", "3")
            caller, _, caller_rec = await start_peer(tmp_path, "caller", PEER_HZ, "--call",
                                                     f"sip:box@127.0.0.1:{line.local_port}", "--seconds", "0")
            ok, call, transfer_events = await answer_and_transfer(
                line, f"sip:human@127.0.0.1:{target_port}", "Caller wants a human", settle_s=0.5)
            caller_events, target_events = await asyncio.gather(events_until_done(caller, 30),
                                                                events_until_done(target, 30))
            return ok, call, transfer_events, caller_events, target_events, caller_rec, target_rec, line
        finally:
            for proc in (caller, target):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await line.stop()

    ok, call, transfer_events, caller_events, target_events, caller_rec, target_rec, line = asyncio.run(scenario())
    assert ok, (transfer_events, call.end_cause)
    assert call.end_cause in ("transferred", "remote") and not line.calls  # PJSIP may hang up first
    assert all(e["mode"] == "attended" for e in transfer_events)
    assert transfer_events[-1]["status"] == "ok" and not any("blind" in e["detail"] for e in transfer_events)
    (request,) = [e for e in caller_events if e["event"] == "transfer_request"]
    refer_to = unquote(request["dst"])
    assert "Replaces=" in refer_to and "to-tag=" in refer_to and "from-tag=" in refer_to, refer_to
    assert any(e["event"] == "replaced" for e in target_events), target_events
    # the consultation: the target heard the briefing; the joined call: caller and target hear each other
    assert_tone(recorded(target_rec), BOX_HZ, "target heard the briefing")
    assert_tone(recorded(target_rec.with_name("target_out.1.wav")), PEER_HZ, "target heard the caller")
    assert_tone(recorded(caller_rec.with_name("caller_out.1.wav")), TARGET_HZ, "caller heard the target")


@needs_baresip
def test_attended_transfer_falls_back_to_blind_without_replaces(tmp_path, baresip_factory):
    """baresip 1.0 does not support Replaces: consult, hang up the consultation, REFER blind."""
    alice = baresip_factory(name="alice")  # the caller (transferee)
    bob = baresip_factory(name="bob")      # the target

    async def scenario():
        line = SipLine(box_config(transfer_attended=True))
        await line.start()
        try:
            alice.command("dial", f"sip:box@127.0.0.1:{line.local_port}")
            ok, call, events = await answer_and_transfer(
                line, f"sip:bob@127.0.0.1:{bob.sip_port}", "no briefing voice set", settle_s=0.3)
            return ok, events, call
        finally:
            await line.stop()

    ok, events, call = asyncio.run(scenario())
    assert ok and call.end_cause == "transferred", events
    assert any("does not support Replaces: blind" in e["detail"] for e in events), events
