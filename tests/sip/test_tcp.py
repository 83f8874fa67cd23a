"""SIP over TCP (RFC 3261 §18) with baresip: calls both ways with the signalling on TCP (Via says
TCP, no UDP retransmissions), audio verified both ways, BYE over the TCP dialog."""
from __future__ import annotations

import asyncio
import time

import pytest

from appliance.lines.sip import SipLine

from .conftest import needs_baresip
from .peers import read_wav, tone
from .test_baresip import BOX_HZ, PEER_HZ, assert_tone, box_config, call_event, collect_rx, next_event, peer_wav

pytestmark = [needs_baresip, pytest.mark.peers]


def test_baresip_calls_box_over_tcp(tmp_path, baresip_factory):
    bob = baresip_factory(name="bob", source_wav=peer_wav(tmp_path))

    async def scenario():
        line = SipLine(box_config())
        await line.start()
        try:
            assert line.health()["tcp"]
            bob.command("dial", f"sip:box@127.0.0.1:{line.local_port};transport=tcp")
            call = (await next_event(line, "ring")).data["call"]
            via = call.invite.top_via
            conns = len(line.endpoint._conns)
            await call.answer()
            await call_event(call, "answered")
            call.play(tone(BOX_HZ, 2.0))
            rx = await collect_rx(call, 2.5)
            await call.hangup()
            return via, conns, rx, call
        finally:
            await line.stop()

    via, conns, rx, call = asyncio.run(scenario())
    assert via.transport.upper() == "TCP" and conns == 1
    assert call.end_cause == "local"
    assert_tone(rx, PEER_HZ, "box heard baresip over a TCP-signalled call")
    bob.wait_event("CALL_CLOSED", 5)  # our BYE reached it
    time.sleep(0.3)
    far, _ = read_wav(bob.recordings("dec")[-1])
    assert_tone(far, BOX_HZ, "baresip heard the box")


def test_box_calls_baresip_over_tcp(tmp_path, baresip_factory):
    bob = baresip_factory(name="bob", source_wav=peer_wav(tmp_path))

    async def scenario():
        line = SipLine(box_config())
        await line.start()
        sent = []
        send = line.endpoint.transport.sendto
        line.endpoint.transport.sendto = lambda data, addr=None: (sent.append(data), send(data, addr))
        try:
            call = await line.dial(f"sip:bob@127.0.0.1:{bob.sip_port};transport=tcp", timeout_s=10)
            assert line.endpoint.is_tcp((("127.0.0.1", bob.sip_port)))
            call.play(tone(BOX_HZ, 2.0))
            rx = await collect_rx(call, 2.5)
            await call.hangup()
            return rx, sent, call
        finally:
            await line.stop()

    rx, sent, call = asyncio.run(scenario())
    assert not [d for d in sent if d.startswith((b"INVITE", b"ACK", b"BYE"))], "signalling went over UDP"
    assert call.end_cause == "local"
    assert_tone(rx, PEER_HZ, "box heard baresip")
    bob.wait_event("CALL_CLOSED", 5)
    time.sleep(0.3)
    far, _ = read_wav(bob.recordings("dec")[-1])
    assert_tone(far, BOX_HZ, "baresip heard the box")


def test_tcp_framing_keepalives_and_oversize():
    """Messages split across segments, two in one segment, CRLF keep-alives between them: each
    answered once on the connection; an endless header closes that connection, nothing else."""
    import socket

    from appliance.lines.sip.message import parse

    from .test_ua import cfg, options

    def exchange(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        one = options(port, branch="z9hG4bKt1").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        two = options(port, branch="z9hG4bKt2").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        s.sendall(b"\r\n\r\n" + one[:30])
        time.sleep(0.1)
        s.sendall(one[30:] + b"\r\n\r\n" + two)
        data = b""
        end = time.monotonic() + 3
        while data.count(b"SIP/2.0 200") < 2 and time.monotonic() < end:
            data += s.recv(65536)
        bad = socket.create_connection(("127.0.0.1", port), timeout=3)
        bad.sendall(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 70000)
        closed = bad.recv(10) == b""
        s.sendall(options(port, branch="z9hG4bKt3").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        after = s.recv(65536)
        s.close()
        bad.close()
        return data, closed, after

    async def scenario():
        line = SipLine(cfg())
        await line.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, exchange, line.local_port)
        finally:
            await line.stop()

    data, closed, after = asyncio.run(scenario())
    parts = [p for p in data.split(b"SIP/2.0 200") if p]
    assert len(parts) == 2 and b"z9hG4bKt1" in data and b"z9hG4bKt2" in data
    assert closed and parse(after).status == 200
