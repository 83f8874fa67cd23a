"""Interop through kamailio (a real registrar/proxy, as a PBX or trunk would be): REGISTER with digest
authentication (MD5 and SHA-256), calls routed both ways with proxy authentication and
Record-Route, and a blind transfer with REFER to a third UA (a second baresip)."""
from __future__ import annotations

import asyncio
import os

import pytest

from appliance.lines.sip import SipLine, SipLineConfig

from .conftest import needs_baresip, needs_kamailio
from .peers import free_port, free_range, tone
from .test_baresip import BOX_HZ, PEER_HZ, assert_tone, collect_rx, next_event, peer_wav

pytestmark = [needs_kamailio, needs_baresip, pytest.mark.peers]


def box_config(kam, password_env="SIP_TEST_PASSWORD", **kw) -> SipLineConfig:
    lo, hi = free_range(10)
    base = dict(name="box", listen=f"127.0.0.1:{free_port()}", rtp_ports=f"{lo}-{hi}",
                registrar=f"127.0.0.1:{kam.port}", username="box", password_env=password_env,
                register_expires_s=60)
    base.update(kw)
    return SipLineConfig(**base)


def registered_peer(baresip_factory, kam, name, tmp_path=None, source_wav=None):
    account = (f"<sip:{name}@127.0.0.1:{kam.port}>;regint=60;answermode=auto;audio_codecs=PCMU")
    peer = baresip_factory(name=name, account=account, source_wav=source_wav)
    peer.wait_log("200 OK", 10)
    return peer


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_with_digest_auth(tmp_path, kamailio_factory, monkeypatch, algorithm):
    kam = kamailio_factory(password="s3cret", algorithm=algorithm)
    monkeypatch.setenv("SIP_TEST_PASSWORD", "s3cret")
    monkeypatch.setenv("SIP_TEST_WRONG", "nope")

    async def scenario():
        good = SipLine(box_config(kam))
        bad = SipLine(box_config(kam, password_env="SIP_TEST_WRONG"))
        await good.start()
        await bad.start()
        try:
            assert await good.wait_registered(10), good.health()
            assert good.state == "idle" and good.last_register_status == 200
            await asyncio.sleep(1.0)
            assert not bad.registered
            assert bad.state == "error" and bad.last_register_status in (401, 403)
        finally:
            await good.stop()
            await bad.stop()
        assert not good.registered          # unregistered on stop (Expires: 0 accepted)
        assert good.last_register_status == 200

    asyncio.run(scenario())
    log = kam.log.read_text()
    assert "ERROR" not in log or "auth" not in log.lower(), log[-2000:]


def test_calls_both_ways_through_kamailio(tmp_path, kamailio_factory, baresip_factory, monkeypatch):
    kam = kamailio_factory(password="s3cret")
    monkeypatch.setenv("SIP_TEST_PASSWORD", "s3cret")
    bob = registered_peer(baresip_factory, kam, "bob", source_wav=peer_wav(tmp_path))

    async def scenario():
        line = SipLine(box_config(kam))
        await line.start()
        try:
            assert await line.wait_registered(10)
            # bob -> kamailio -> box
            bob.command("dial", f"sip:box@127.0.0.1:{kam.port}")
            ring = await next_event(line, "ring")
            call = ring.data["call"]
            await call.answer()
            assert call.dialog.route_set, "kamailio record-routes: the dialog must keep its route"
            rx = await collect_rx(call, 1.5)
            await call.hangup()                       # BYE follows the route set through kamailio
            bob.wait_event("CALL_CLOSED", 5)
            # box -> kamailio (407 proxy challenge) -> bob
            n = len(bob.events)
            out = await line.dial("bob", timeout_s=10)
            assert out.invite.get("Proxy-Authorization"), "kamailio challenges INVITEs from the box"
            out.play(tone(BOX_HZ, 1.0))
            bob.wait_event("CALL_ESTABLISHED", 5, after=n)
            await asyncio.sleep(1.2)
            bob.command("hangup")
            await asyncio.wait_for(out.ended.wait(), 5)
            assert out.end_cause == "remote"
            return rx
        finally:
            await line.stop()

    rx = asyncio.run(scenario())
    assert_tone(rx, PEER_HZ, "box heard bob through kamailio")


def test_blind_transfer_with_refer_through_kamailio(tmp_path, kamailio_factory, baresip_factory, monkeypatch):
    kam = kamailio_factory(password="s3cret")
    monkeypatch.setenv("SIP_TEST_PASSWORD", "s3cret")
    bob = registered_peer(baresip_factory, kam, "bob", source_wav=peer_wav(tmp_path))
    carol = registered_peer(baresip_factory, kam, "carol")

    async def scenario():
        line = SipLine(box_config(kam, transfer_target="carol"))
        await line.start()
        try:
            assert await line.wait_registered(10)
            bob.command("dial", f"sip:box@127.0.0.1:{kam.port}")
            call = (await next_event(line, "ring")).data["call"]
            await call.answer()
            await asyncio.sleep(0.5)
            ok = await asyncio.wait_for(call.transfer("carol"), 20)
            events = []
            while not call.events.empty():
                events.append(call.events.get_nowait())
            return ok, call, events
        finally:
            await line.stop()

    ok, call, events = asyncio.run(scenario())
    statuses = [e.data["status"] for e in events if e.type == "transfer"]
    assert ok, f"transfer failed: {[e.data for e in events if e.type == 'transfer']}"
    assert statuses[0] == "trying" and statuses[-1] == "ok"
    assert call.ended.is_set() and call.end_cause == "transferred"
    carol.wait_event("CALL_ESTABLISHED", 10)       # bob now talks to carol
    est = bob.wait_event("CALL_ESTABLISHED", 10, after=0)
    assert est is not None
    assert os.path.exists(kam.log)


def test_registration_refreshed_before_expiry_and_options_keepalive(tmp_path, kamailio_factory, monkeypatch):
    """kamailio grants 3 s: the box refreshes before each expiry (never lapses) and sends OPTIONS
    keep-alives to it."""
    import time

    kam = kamailio_factory(password="s3cret", max_expires=3)
    monkeypatch.setenv("SIP_TEST_PASSWORD", "s3cret")

    async def scenario():
        line = SipLine(box_config(kam, keepalive_s=1))
        await line.start()
        lapses = []
        try:
            assert await line.wait_registered(10), line.health()
            end = time.monotonic() + 4.0
            while time.monotonic() < end:
                if not line.registered or line.registration_expires_at < time.time():
                    lapses.append(time.time())
                await asyncio.sleep(0.05)
            return lapses, line.registration_expires_at - time.time()
        finally:
            await line.stop()

    lapses, left = asyncio.run(scenario())
    assert not lapses and 0 < left <= 3.5
    log = kam.log.read_text()
    assert log.count("REGISTER from box expires 60") >= 4, log[-3000:]  # first, challenged, refreshes
    assert log.count("keepalive OPTIONS from box") >= 2, log[-3000:]
