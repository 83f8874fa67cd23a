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
