"""Fuzzing the parsers that read the outside world (SIP, SDP, RTP/RTCP, digest challenges) with
hypothesis, for a bounded number of inputs: only their own parse errors may come out, quickly, and
memory stays bounded."""
from __future__ import annotations

import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.lines.sip import sdp
from appliance.lines.sip.auth import parse_challenge
from appliance.lines.sip.message import NameAddr, SipParseError, parse
from appliance.lines.sip.rtp import RtpParseError, parse_rtcp, parse_rtp

from .test_parsers import INVITE, OFFER

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [b"INVITE ", b"SIP/2.0", b"\r\n", b"\n", b": ", b";", b",", b"<", b">", b'"', b"sip:", b"@",
          b"Via: SIP/2.0/UDP ", b"branch=z9hG4bK", b"Content-Length: ", b"l: ", b"CSeq: 1 INVITE",
          b"Call-ID: x", b"From: <sip:a@b>", b"To: <sip:a@b>", b" ", b"\t", b"999999999999", b"\x00",
          b"\xff", b"=", b"v=0", b"m=audio ", b"a=rtpmap:", b"c=IN IP4 ", b"Digest ", b"realm=", b"nonce="]


def mutate(seed: bytes):
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 64), st.lists(st.sampled_from(TOKENS) | st.binary(
        max_size=8), max_size=8)).map(lambda t: seed[:t[0]] + b"".join(t[2]) + seed[t[0] + t[1]:])


def bounded(fn, data, errors):
    start = time.monotonic()
    try:
        fn(data)
    except errors:
        pass
    assert time.monotonic() - start < 1.0, "parser took too long"


@FUZZ
@given(st.one_of(st.binary(max_size=2000), mutate(INVITE)))
def test_sip_parser_fuzz(data):
    def go(d):
        msg = parse(d)
        msg.to_bytes()
        for name in ("From", "To", "Contact"):
            for v in msg.get_all(name):
                NameAddr.parse(v)
        msg.top_via  # noqa: B018
        for v in msg.get_all("WWW-Authenticate"):
            parse_challenge(v)
    bounded(go, data, SipParseError)


@FUZZ
@given(st.one_of(st.binary(max_size=2000), mutate(OFFER)))
def test_sdp_parser_fuzz(data):
    def go(d):
        offer = sdp.parse_sdp(d)
        sdp.negotiate(offer, ("PCMU", "PCMA"))
    bounded(go, data, sdp.SdpError)


@FUZZ
@given(st.binary(max_size=400))
def test_rtp_and_rtcp_parsers_fuzz(data):
    bounded(parse_rtp, data, RtpParseError)
    bounded(parse_rtcp, data, RtpParseError)


@FUZZ
@given(st.text(max_size=300))
def test_digest_challenge_fuzz(text):
    bounded(parse_challenge, "Digest " + text, SipParseError)


def test_parser_memory_bounded_on_large_inputs():
    tracemalloc.start()
    try:
        for n in (10, 1000, 60000):
            for data in (b"Via: " * n, INVITE + b"X: y\r\n" * n, b"\r\n" * n, b"a" * n):
                try:
                    parse(data)
                except SipParseError:
                    pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes"


# ---- the whole user agent, not just its parsers ------------------------------------------------
def _dialog_seeds(port: int) -> list[bytes]:
    head = (f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfz;rport\r\nFrom: <sip:f@127.0.0.1>;tag=ft\r\n"
            f"To: <sip:box@127.0.0.1:{port}>{{to}}\r\nCall-ID: fuzzcall\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:f@127.0.0.1:9>\r\n")
    sdp_body = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n")
    out = []
    for method, to, extra, body in (
            ("INVITE", "", "Content-Type: application/sdp\r\n", sdp_body),
            ("ACK", ";tag=x", "", b""), ("CANCEL", "", "", b""), ("BYE", ";tag=x", "", b""),
            ("INVITE", ";tag=x", "Content-Type: application/sdp\r\n", sdp_body),
            ("NOTIFY", ";tag=x", "Event: refer\r\nContent-Type: message/sipfrag\r\n", b"SIP/2.0 200 OK\r\n"),
            ("INFO", ";tag=x", "Content-Type: application/dtmf-relay\r\n", b"Signal=5\r\nDuration=160\r\n"),
            ("REFER", ";tag=x", "Refer-To: <sip:x@127.0.0.1>\r\n", b""), ("OPTIONS", "", "Require: x\r\n", b"")):
        num = 2 if to and method != "ACK" else 1
        text = (f"{method} sip:box@127.0.0.1:{port} SIP/2.0\r\n" + head.format(to=to) +
                f"CSeq: {num} {method}\r\n" + extra +
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        out.append(text)
    out.append(b"SIP/2.0 200 OK\r\n" + out[0].split(b"\r\n", 1)[1])  # a stray response
    return out


_PORT = 5999  # the seeds name a port; the line's real port does not matter to the parser


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(*[mutate(s) for s in _dialog_seeds(_PORT)], st.sampled_from(_dialog_seeds(_PORT))),
                min_size=1, max_size=6))
def test_user_agent_fuzz_dialog_sequences(datagrams):
    """Mutated dialog sequences (INVITE, ACK, CANCEL, re-INVITE, BYE, NOTIFY, INFO, REFER, stray
    responses) straight into a running line: no handler error, and it still answers OPTIONS."""
    import asyncio
    import logging

    from appliance.lines.sip import SipLine

    from .test_ua import cfg, options

    errors, answered = [], []

    class Catch(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage() + (f" {record.exc_info[1]!r}" if record.exc_info else ""))

    async def scenario():
        line = SipLine(cfg(max_calls=1))
        await line.start()
        sent = []
        line.endpoint.send = lambda msg, addr: sent.append(msg)  # answers stay in the test
        tag = None
        try:
            for d in datagrams:
                if tag:  # in-dialog requests name the box's real tag: the fuzz reaches answered calls
                    d = d.replace(b";tag=x", b";tag=" + tag.encode())
                line.endpoint.datagram_received(d, ("127.0.0.1", 9))
                await asyncio.sleep(0)
                while not line._events.empty():
                    ev = line._events.get_nowait()
                    if ev.type == "ring" and tag is None:
                        call = ev.data["call"]
                        await call.answer()
                        tag = call.local_tag
                        answered.append(call)
            await asyncio.sleep(0.01)
            for call in answered:  # the far end hangs up (else stop() would wait for BYE answers)
                if not call.ended.is_set():
                    inv = call.invite
                    bye = (f"BYE sip:box@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbye\r\n"
                           f"From: {inv.get('From')}\r\nTo: {call.dialog.local_uri};tag={call.local_tag}\r\n"
                           f"Call-ID: {call.call_id}\r\nCSeq: 99999 BYE\r\nContent-Length: 0\r\n\r\n")
                    line.endpoint.datagram_received(bye.encode(), ("127.0.0.1", 9))
                    assert call.ended.is_set() and call.end_cause == "remote"
            sent.clear()
            line.endpoint.datagram_received(options(line.local_port, branch="z9hG4bKalive"), ("127.0.0.1", 9))
            assert sent and b"SIP/2.0 200 OK" in (sent[-1] if isinstance(sent[-1], bytes) else sent[-1].to_bytes())
        finally:
            await asyncio.wait_for(line.stop(), 5)

    handler = Catch()
    log = logging.getLogger("appliance")
    log.addHandler(handler)
    loop_errors = []
    try:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda lp, ctx: loop_errors.append(ctx.get("message")))
        loop.run_until_complete(scenario())
        loop.close()
    finally:
        log.removeHandler(handler)
    assert not errors and not loop_errors, (errors, loop_errors)
