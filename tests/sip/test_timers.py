"""Retransmission timers over UDP against a peer that never answers (RFC 3261 §17.1): INVITE
retransmitted with T1 doubling (Timer A) until Timer B (64*T1) ends it with a 408; non-INVITE
doubling up to T2 (Timer E) until Timer F; Timer A stopped by a provisional. The counts follow from
the RFC's schedule; the assertions allow for a loaded machine but not for a missing timer."""
from __future__ import annotations

import asyncio

import pytest

from appliance.errors import LineError
from appliance.lines.sip import SipLine
from appliance.lines.sip.message import SipMessage, make_response
from appliance.lines.sip.transaction import SipEndpoint, new_branch

from .test_ua import Udp, cfg, in_thread

T1, T2 = 0.03, 0.12


def request(method: str, port: int) -> SipMessage:
    req = SipMessage(method=method, uri=f"sip:peer@127.0.0.1:{port}")
    req.add("Via", f"SIP/2.0/UDP 127.0.0.1:9;branch={new_branch()};rport")
    req.add("Max-Forwards", "70")
    req.add("From", "<sip:box@127.0.0.1>;tag=1")
    req.add("To", f"<sip:peer@127.0.0.1:{port}>")
    req.add("Call-ID", new_branch())
    req.add("CSeq", f"1 {method}")
    return req


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_timer_b_and_f_give_up_with_408(method):
    silent = Udp()

    async def scenario():
        ep = SipEndpoint(lambda m, a: None, t1_s=T1, t2_s=T2)
        await ep.start("127.0.0.1", 0)
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            got = asyncio.ensure_future(in_thread(silent.recv_all, 64 * T1 + 1.0))
            resp = await ep.request(request(method, silent.port), ("127.0.0.1", silent.port))
            return resp, loop.time() - t0, await got
        finally:
            ep.close()

    try:
        resp, took, copies = asyncio.run(scenario())
    finally:
        silent.close()
    assert resp.status == 408 and resp.cseq[1] == method
    assert 64 * T1 * 0.9 <= took < 64 * T1 + 2.0, took
    assert len({m.top_via.branch for m in copies}) == 1  # retransmissions of one transaction
    if method == "INVITE":  # Timer A: 0, T1, 3T1, 7T1, 15T1, 31T1, 63T1 -> 7 copies in 64*T1
        assert 5 <= len(copies) <= 7, len(copies)
    else:  # Timer E: doubling up to T2, then every T2 -> many more copies than for INVITE
        assert 11 <= len(copies) <= 20, len(copies)


def test_provisional_stops_timer_a_and_ringing_lasts_past_timer_b():
    """A 180 stops INVITE retransmissions; the caller's own timeout (not Timer B) ends the ringing."""
    peer = Udp()

    async def scenario():
        ep = SipEndpoint(lambda m, a: None, t1_s=T1, t2_s=T2)
        await ep.start("127.0.0.1", 0)
        try:
            invite = request("INVITE", peer.port)
            txn = asyncio.ensure_future(ep.request(invite, ("127.0.0.1", peer.port), timeout_s=64 * T1 + 1.0))
            first = await in_thread(peer.recv_all, 0.02)
            assert first and first[0].method == "INVITE"
            ringing = make_response(first[0], 180, to_tag="abc")
            peer.s.sendto(ringing.to_bytes(), ("127.0.0.1", ep.local[1]))
            later = await in_thread(peer.recv_all, 64 * T1 + 0.5)  # past Timer B
            assert not txn.done(), "a ringing INVITE must not time out at 64*T1"
            resp = await txn
            return later, resp
        finally:
            ep.close()

    try:
        later, resp = asyncio.run(scenario())
    finally:
        peer.close()
    assert len(later) <= 1, [m.method for m in later]  # at most one copy raced the 180
    assert resp.status == 408


def test_dial_and_register_against_a_dead_peer_end_cleanly():
    silent = Udp()

    async def scenario():
        line = SipLine(cfg(t1_ms=50, registrar=f"127.0.0.1:{silent.port}", register_expires_s=60))
        await line.start()
        try:
            with pytest.raises(LineError, match="no-answer"):
                await line.dial(f"sip:nobody@127.0.0.1:{silent.port}", timeout_s=30)
            assert not [c for c in line.calls.values() if not c.ended.is_set()]
            for _ in range(100):  # the REGISTER transaction times out too (Timer F)
                if line.last_register_status is not None:
                    break
                await asyncio.sleep(0.05)
            return line.last_register_status, line.state, line.health()
        finally:
            await line.stop()

    try:
        status, state, health = asyncio.run(scenario())
    finally:
        silent.close()
    assert status == 408 and state == "error" and not health["registered"]
