"""User-agent behaviour on the wire: OPTIONS from sipsak, malformed packets (sipsak's random mode and
our own), the allow-list with rate-limited 403, silence for scanners, 486 when busy, CANCEL,
200 OK retransmission until ACK (and BYE when it never comes), hold/unhold re-INVITE from baresip."""
from __future__ import annotations

import asyncio
import socket
import subprocess
import time

import pytest

from appliance.errors import LineError
from appliance.lines.sip import SipLine, SipLineConfig
from appliance.lines.sip.message import parse

from .conftest import needs_baresip
from .peers import SIPSAK, free_port, free_range
from .test_baresip import call_event, next_event

needs_sipsak = pytest.mark.skipif(SIPSAK is None, reason="sipsak not installed (Debian: sipsak)")


def cfg(**kw) -> SipLineConfig:
    lo, hi = free_range(10)
    base = dict(name="box", listen=f"127.0.0.1:{free_port()}", rtp_ports=f"{lo}-{hi}")
    base.update(kw)
    return SipLineConfig(**base)


def options(port: int, ua: str = "probe", branch: str = "z9hG4bK1") -> bytes:
    return (f"OPTIONS sip:box@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
            "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:box@127.0.0.1>\r\n"
            f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: {ua}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


class Udp:
    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.port = self.s.getsockname()[1]

    def send(self, data: bytes, port: int):
        self.s.sendto(data, ("127.0.0.1", port))

    def recv_all(self, seconds: float) -> list:
        out = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.s.settimeout(left)
            try:
                out.append(parse(self.s.recv(65535)))
            except (TimeoutError, socket.timeout):
                break
        return out

    def close(self):
        self.s.close()


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@needs_sipsak
def test_options_from_sipsak_and_random_garbage():
    async def scenario():
        line = SipLine(cfg())
        await line.start()
        try:
            port = line.local_port
            res = await in_thread(lambda: subprocess.run(
                [SIPSAK, "-vv", "-s", f"sip:box@127.0.0.1:{port}"], capture_output=True, text=True, timeout=20))
            assert res.returncode == 0, res.stdout + res.stderr
            assert "200 OK" in res.stdout and "Allow: INVITE" in res.stdout
            # sipsak's random mode: trashed requests until one is answered or it gives up
            proc = await asyncio.create_subprocess_exec(
                SIPSAK, "-R", "-t", "40", "-s", f"sip:box@127.0.0.1:{port}",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                await asyncio.wait_for(proc.wait(), 6)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
            # the stack is still alive and answering
            res = await in_thread(lambda: subprocess.run(
                [SIPSAK, "-s", f"sip:box@127.0.0.1:{port}"], capture_output=True, text=True, timeout=20))
            assert res.returncode == 0
        finally:
            await line.stop()

    asyncio.run(scenario())


def test_malformed_packets_do_not_wedge_the_stack():
    async def scenario():
        line = SipLine(cfg())
        await line.start()
        udp = Udp()
        try:
            port = line.local_port
            garbage = [b"\x00" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", options(port)[:60],
                       options(port).replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS"),
                       options(port).replace(b"Content-Length: 0", b"Content-Length: 99999"),
                       b"\xff\xfe" * 3000, options(port).replace(b"Via: SIP/2.0/UDP", b"Via: junk"),
                       b"\r\n\r\n"]
            for g in garbage:
                udp.send(g, port)
            udp.send(options(port, branch="z9hG4bKok"), port)
            got = await in_thread(udp.recv_all, 1.0)
            assert [m.status for m in got] == [200]
            assert line.health()["parse_errors"] >= 6
            # an unknown method gets 501, not silence, from an allowed source
            udp.send(options(port, branch="z9hG4bKx").replace(b"OPTIONS", b"FROBNICATE"), port)
            got = await in_thread(udp.recv_all, 0.5)
            assert [m.status for m in got] == [501]
        finally:
            udp.close()
            await line.stop()

    asyncio.run(scenario())


def test_allow_list_403_rate_limited_and_scanners_silenced():
    async def scenario():
        line = SipLine(cfg(allow_from=("127.0.0.1:9",), reject_rate_per_s=1.0))
        await line.start()
        udp = Udp()
        try:
            port = line.local_port
            udp.send(options(port, ua="friendly-scanner"), port)
            assert await in_thread(udp.recv_all, 0.5) == [], "scanners get nothing"
            for i in range(20):
                udp.send(options(port, branch=f"z9hG4bKf{i}"), port)
            got = await in_thread(udp.recv_all, 0.8)
            assert got and all(m.status == 403 for m in got)
            assert len(got) <= 6, f"403s are rate limited, got {len(got)}"
            assert all(m.get("Server") is None and m.get("User-Agent") is None for m in got)
            h = line.health()
            assert h["scanners"] == 1 and h["ignored"] >= 14
        finally:
            udp.close()
            await line.stop()

    asyncio.run(scenario())


def test_busy_cancel_and_unacknowledged_200():
    async def scenario():
        a = SipLine(cfg(name="a"))
        b = SipLine(cfg(name="b", max_calls=1, t1_ms=50))
        c = SipLine(cfg(name="c"))
        for line in (a, b, c):
            await line.start()
        try:
            # a rings b, b never answers: a's timeout CANCELs, b's call ends 'cancelled'
            dial = asyncio.create_task(a.dial(f"sip:b@127.0.0.1:{b.local_port}", timeout_s=1.0))
            ring = await next_event(b, "ring")
            with pytest.raises(LineError, match="no-answer"):
                await dial
            await asyncio.wait_for(ring.data["call"].ended.wait(), 3)
            assert ring.data["call"].end_cause == "cancelled"
            # a calls b, b answers; c gets 486 while b is busy
            dial = asyncio.create_task(a.dial(f"sip:b@127.0.0.1:{b.local_port}", timeout_s=5))
            ring = await next_event(b, "ring")
            await ring.data["call"].answer()
            call_a = await dial
            with pytest.raises(LineError, match="busy"):
                await c.dial(f"sip:b@127.0.0.1:{b.local_port}", timeout_s=5)
            await call_a.hangup()
            await asyncio.wait_for(ring.data["call"].ended.wait(), 3)
        finally:
            for line in (a, b, c):
                await line.stop()

    asyncio.run(scenario())


def test_200_retransmitted_until_ack_then_bye():
    async def scenario():
        b = SipLine(cfg(name="b", t1_ms=50))
        await b.start()
        udp = Udp()
        try:
            port = b.local_port
            invite = (f"INVITE sip:b@127.0.0.1:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{udp.port};branch=z9hG4bKinv\r\n"
                      "From: <sip:x@127.0.0.1>;tag=9\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: noack\r\n"
                      f"CSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:{udp.port}>\r\nMax-Forwards: 70\r\n"
                      "Content-Type: application/sdp\r\n\r\n"
                      "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                      "m=audio 9 RTP/AVP 0\r\n").encode()
            udp.send(invite, port)
            ring = await next_event(b, "ring")
            udp.send(invite, port)                      # a retransmitted INVITE: same answers again
            await ring.data["call"].answer()
            got = await in_thread(udp.recv_all, 4.5)
            statuses = [m.status if not m.is_request else m.method for m in got]
            assert statuses.count(180) >= 2, statuses
            assert statuses.count(200) >= 4, f"200 OK must be retransmitted until ACK: {statuses}"
            assert "BYE" in statuses, f"no ACK within 64*T1: the dialog must be ended: {statuses}"
            assert ring.data["call"].end_cause == "no-ack"
        finally:
            udp.close()
            await b.stop()

    asyncio.run(scenario())


@needs_baresip
def test_hold_and_resume_reinvite_from_baresip(tmp_path, baresip_factory):
    bob = baresip_factory(name="bob")

    async def scenario():
        line = SipLine(cfg())
        await line.start()
        try:
            bob.command("dial", f"sip:box@127.0.0.1:{line.local_port}")
            call = (await next_event(line, "ring")).data["call"]
            await call.answer()
            await call_event(call, "answered")
            await asyncio.sleep(0.5)
            bob.command("hold")
            ev = await call_event(call, "state", 5)
            assert ev.data["state"] == "hold" and call.on_hold
            assert not call.rtp.send_enabled or call.negotiated.direction == "recvonly"
            bob.command("resume")
            ev = await call_event(call, "state", 5)
            assert ev.data["state"] == "active" and not call.on_hold
            await call.hangup()
        finally:
            await line.stop()

    asyncio.run(scenario())


def test_required_extension_gets_420_naming_it():
    """§8.2.2.3: a request requiring an extension the box lacks gets 420 with Unsupported."""
    async def scenario():
        b = SipLine(cfg(name="b"))
        await b.start()
        udp = Udp()
        try:
            req = options(b.local_port, branch="z9hG4bKreq").replace(b"Content-Length: 0", b"Require: 100rel, foo\r\n"
                                                                     b"Content-Length: 0")
            udp.send(req, b.local_port)
            got = await in_thread(udp.recv_all, 1.0)
            udp.send(options(b.local_port, branch="z9hG4bKplain"), b.local_port)
            plain = await in_thread(udp.recv_all, 1.0)
            return got, plain
        finally:
            udp.close()
            await b.stop()

    got, plain = asyncio.run(scenario())
    assert [m.status for m in got] == [420] and got[0].get("Unsupported") == "100rel, foo"
    assert [m.status for m in plain] == [200] and "REFER" not in (plain[0].get("Allow") or "")
