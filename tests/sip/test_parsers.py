"""SIP, SDP, RTP parsing and digest authentication: robustness rules of RFC 3261 §7 and known vectors."""
from __future__ import annotations

import hashlib

import pytest

from appliance.lines.sip import sdp
from appliance.lines.sip.auth import digest_response, parse_challenge, pick_challenge
from appliance.lines.sip.message import NameAddr, SipParseError, SipUri, Via, make_response, parse
from appliance.lines.sip.rtp import RtpPacket, RtpParseError, dtmf_payload, parse_rtcp, parse_rtp

INVITE = (
    "INVITE sip:box@10.0.0.2:5060 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 10.0.0.9:5062;branch=z9hG4bKabc;rport, SIP/2.0/UDP 10.0.0.8;branch=z9hG4bKxyz\r\n"
    "Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK777\r\n"
    "f: \"Bob, Jr.\" <sip:bob@example.org>;tag=1928\r\n"
    "t: <sip:box@example.org>\r\n"
    "i: a84b4c76e66710\r\n"
    "CSEQ: 314159 INVITE\r\n"
    "m: <sip:bob@10.0.0.9:5062>\r\n"
    "Subject: a folded\r\n"
    "  subject line\r\n"
    "X-Custom: kept\r\n"
    "c: application/sdp\r\n"
    "l: 4\r\n"
    "\r\n"
    "v=0\r\nextra"
).encode()


def test_compact_forms_folding_multiple_via_unknown_headers():
    msg = parse(INVITE)
    assert msg.method == "INVITE" and msg.uri == "sip:box@10.0.0.2:5060"
    assert len(msg.get_all("Via")) == 3
    assert msg.top_via.branch == "z9hG4bKabc" and msg.top_via.port == 5062
    assert "rport" in msg.top_via.params
    assert msg.call_id == "a84b4c76e66710"
    assert msg.cseq == (314159, "INVITE")
    assert msg.get("subject") == "a folded subject line"
    assert msg.get("x-custom") == "kept"
    assert msg.body == b"v=0\r"   # Content-Length wins over trailing bytes
    frm = NameAddr.parse(msg.get("From"))
    assert frm.display == "Bob, Jr." and frm.tag == "1928" and frm.uri.user == "bob"
    # the serializer writes canonical names and a correct Content-Length, and re-parses the same
    again = parse(msg.to_bytes())
    assert again.headers == msg.headers and again.body == msg.body
    assert b"X-Custom: kept" in msg.to_bytes()


def test_response_copies_dialog_headers_and_adds_tag():
    msg = parse(INVITE)
    resp = make_response(msg, 180, to_tag="abc")
    assert resp.status == 180 and resp.reason == "Ringing"
    assert resp.get_all("Via") == msg.get_all("Via")
    assert NameAddr.parse(resp.get("To")).tag == "abc"
    assert parse(resp.to_bytes()).cseq == (314159, "INVITE")


@pytest.mark.parametrize("bad", [
    b"", b"\r\n\r\n", b"HELLO", b"INVITE sip:x SIP/3.0\r\n\r\n",
    b"SIP/2.0 999 Weird\r\nVia: SIP/2.0/UDP a;branch=1\r\nFrom: <sip:a@b>\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 X\r\n\r\n",
    INVITE.replace(b"l: 4", b"l: 400"),          # truncated body
    INVITE.replace(b"CSEQ: 314159 INVITE", b"CSEQ: 1 BYE"),
    INVITE.replace(b"i: a84b4c76e66710\r\n", b""),
    INVITE.replace(b"X-Custom: kept", b"no colon here"),
    b"x" * 70000,
])
def test_malformed_messages_raise_parse_error(bad):
    with pytest.raises(SipParseError):
        parse(bad)


def test_uri_and_via_forms():
    u = SipUri.parse("sip:alice:pw@[2001:db8::1]:5070;transport=udp;lr?subject=x")
    assert u.user == "alice" and u.host == "[2001:db8::1]" and u.port == 5070
    assert u.params == {"transport": "udp", "lr": None} and u.hostport() == ("2001:db8::1", 5070)
    assert str(SipUri.parse("sip:box@10.0.0.2;lr")) == "sip:box@10.0.0.2;lr"
    v = Via.parse("SIP / 2.0 / UDP host.example:5070 ;branch=z9hG4bK1;received=1.2.3.4")
    assert v.host == "host.example" and v.port == 5070 and v.params["received"] == "1.2.3.4"
    with pytest.raises(SipParseError):
        SipUri.parse("http://example.org")
    with pytest.raises(SipParseError):
        SipUri.parse("sip:a@host:99999")


def test_digest_md5_matches_rfc2617_computation():
    ch = parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                         'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = digest_response(ch, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", nc=1, cnonce="0a4f113b")
    # RFC 2617 §3.5 example response
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth" in value and "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_digest_sha256_and_choice_of_strongest():
    chals = ['Digest realm="r", nonce="n", algorithm=MD5', 'Digest realm="r", nonce="n", algorithm=SHA-256']
    ch = pick_challenge(chals)
    assert ch["algorithm"] == "SHA-256"
    value = digest_response(ch, "REGISTER", "sip:r", "u", "p")
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    expected = h(f"{h('u:r:p')}:n:{h('REGISTER:sip:r')}")
    assert f'response="{expected}"' in value and "algorithm=SHA-256" in value
    assert pick_challenge(['Basic realm="x"', 'Digest realm="r", nonce="n", algorithm=MD5-sess']) is None


OFFER = (b"v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
         b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\nm=video 5000 RTP/AVP 96\r\n")


def test_sdp_offer_answer_picks_offerers_first_supported_codec():
    offer = sdp.parse_sdp(OFFER)
    neg = sdp.negotiate(offer, ("PCMU", "PCMA"))
    assert (neg.codec, neg.payload_type, neg.dtmf_pt) == ("PCMA", 8, 101)
    assert (neg.remote_address, neg.remote_port, neg.direction) == ("10.0.0.9", 4000, "sendrecv")
    answer = sdp.parse_sdp(sdp.build_sdp("10.0.0.2", 6000, [(8, "PCMA")], 101, neg.direction,
                                         rejected=offer.other_media))
    assert answer.audio.payloads == [8, 101] and answer.audio.port == 6000
    assert answer.other_media == ["video 0 RTP/AVP 96"]     # rejected stream keeps its line, port 0
    assert sdp.negotiate(offer, ("PCMU",)).codec == "PCMU"


def test_sdp_hold_and_unsupported():
    hold = OFFER.replace(b"a=sendrecv", b"a=sendonly")
    assert sdp.negotiate(sdp.parse_sdp(hold), ("PCMU",)).direction == "recvonly"
    old_hold = OFFER.replace(b"c=IN IP4 10.0.0.9", b"c=IN IP4 0.0.0.0")
    assert sdp.negotiate(sdp.parse_sdp(old_hold), ("PCMU",)).direction == "inactive"
    with pytest.raises(sdp.SdpError):
        sdp.negotiate(sdp.parse_sdp(OFFER.replace(b"9 8 0 101", b"9 101")), ("PCMU", "PCMA"))
    with pytest.raises(sdp.SdpError):
        sdp.parse_sdp(b"m=audio x RTP/AVP 0")


def test_rtp_roundtrip_and_rejects():
    pkt = RtpPacket(0, 65535, 0xFFFFFFF0, 0x1234, b"\xff" * 160, marker=True)
    back = parse_rtp(pkt.to_bytes())
    assert back == pkt
    # CSRC + extension + padding are skipped
    raw = bytearray(pkt.to_bytes())
    raw[0] = 0x80 | 0x20 | 0x10 | 1
    data = bytes(raw[:12]) + b"\0\0\0\1" + b"\xbe\xde\x00\x01" + b"abcd" + bytes(raw[12:]) + b"\0\0\3"
    assert parse_rtp(data).payload == b"\xff" * 160
    for bad in (b"", b"\x00" * 12, bytes(raw[:12]) + b"\xbe\xde\x00\x09"):
        with pytest.raises(RtpParseError):
            parse_rtp(bad)
    assert dtmf_payload(11, True, 800) == b"\x0b\x8a\x03\x20"


def test_rtcp_receiver_report_parsed():
    import struct
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xAA) + struct.pack("!IIIIII", 0xBB, (64 << 24) | 5, 100, 80, 0, 0)
    (rep,) = parse_rtcp(rr)
    assert rep["type"] == "RR" and rep["blocks"][0]["fraction_lost"] == 0.25
    assert rep["blocks"][0]["cumulative_lost"] == 5 and rep["blocks"][0]["jitter"] == 80
