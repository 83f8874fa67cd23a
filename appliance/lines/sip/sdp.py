"""SDP (RFC 4566) for one audio stream, and offer/answer (RFC 3264) for G.711 + RFC 4733 events."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .message import SipParseError

STATIC_PT = {0: "PCMU", 8: "PCMA"}
MAX_SDP_BYTES = 16384


class SdpError(SipParseError):
    """SDP that cannot be parsed or negotiated (answer 488)."""


@dataclass
class MediaDesc:
    """The audio stream of a session description."""

    address: str = ""
    port: int = 0
    payloads: list[int] = field(default_factory=list)
    rtpmap: dict[int, str] = field(default_factory=dict)   # pt -> 'PCMU/8000'
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime_ms: int | None = None
    direction: str = "sendrecv"
    rtcp_port: int | None = None

    def codec_of(self, pt: int) -> str | None:
        if pt in self.rtpmap:
            return self.rtpmap[pt].split("/")[0].upper()
        return STATIC_PT.get(pt)

    def rate_of(self, pt: int) -> int:
        if pt in self.rtpmap:
            parts = self.rtpmap[pt].split("/")
            if len(parts) > 1 and parts[1].isdigit():
                return int(parts[1])
        return 8000


@dataclass
class SessionDesc:
    origin_user: str = "-"
    session_id: int = 0
    version: int = 0
    address: str = ""
    audio: MediaDesc | None = None
    other_media: list[str] = field(default_factory=list)   # m= lines we do not serve (answered with port 0)


def parse_sdp(data: bytes) -> SessionDesc:
    if len(data) > MAX_SDP_BYTES:
        raise SdpError("SDP too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    sd = SessionDesc()
    media: MediaDesc | None = None
    in_audio = False
    seen_v = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:60]!r}")
        kind, value = line[0], line[2:]
        try:
            if kind == "v":
                seen_v = True
            elif kind == "o":
                parts = value.split()
                if len(parts) >= 6:
                    sd.origin_user = parts[0]
                    sd.session_id = int(parts[1]) if parts[1].isdigit() and len(parts[1]) < 20 else 0
                    sd.version = int(parts[2]) if parts[2].isdigit() and len(parts[2]) < 20 else 0
            elif kind == "c":
                parts = value.split()
                if len(parts) < 3:
                    raise SdpError(f"bad c= line {value[:60]!r}")
                addr = parts[2].split("/")[0]
                if media is None and not in_audio:
                    sd.address = addr
                elif in_audio and media is not None:
                    media.address = addr
            elif kind == "m":
                parts = value.split()
                if len(parts) < 3:
                    raise SdpError(f"bad m= line {value[:60]!r}")
                in_audio = False
                if parts[0] == "audio" and sd.audio is None and parts[2].upper() in ("RTP/AVP", "RTP/AVPF"):
                    port = int(parts[1].split("/")[0])
                    if not 0 <= port < 65536:
                        raise SdpError(f"bad port {port}")
                    pts = [int(p) for p in parts[3:] if p.isdigit() and int(p) < 128]
                    media = MediaDesc(port=port, payloads=pts)
                    sd.audio = media
                    in_audio = True
                else:
                    sd.other_media.append(value)
            elif kind == "a" and in_audio and media is not None:
                name, _, arg = value.partition(":")
                if name == "rtpmap":
                    pt, _, enc = arg.partition(" ")
                    if pt.isdigit():
                        media.rtpmap[int(pt)] = enc.strip()
                elif name == "fmtp":
                    pt, _, params = arg.partition(" ")
                    if pt.isdigit():
                        media.fmtp[int(pt)] = params.strip()
                elif name == "ptime" and arg.strip().isdigit():
                    media.ptime_ms = int(arg.strip())
                elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                    media.direction = name
                elif name == "rtcp":
                    p = arg.split()[0] if arg.split() else ""
                    media.rtcp_port = int(p) if p.isdigit() and int(p) < 65536 else None
            elif kind == "a" and not in_audio and media is None:
                if value in ("sendonly", "recvonly", "inactive"):
                    sd.other_media.append("a=" + value)  # session-level direction, applied below
        except ValueError as exc:
            raise SdpError(f"bad SDP line {line[:60]!r}") from exc
    if not seen_v:
        raise SdpError("SDP without v= line")
    if sd.audio is not None:
        if not sd.audio.address:
            sd.audio.address = sd.address
        for item in sd.other_media:
            if item.startswith("a=") and sd.audio.direction == "sendrecv":
                sd.audio.direction = item[2:]
        sd.other_media = [m for m in sd.other_media if not m.startswith("a=")]
    return sd


@dataclass
class Negotiated:
    """The outcome of offer/answer: what we send and receive."""

    codec: str                   # 'PCMU' | 'PCMA'
    payload_type: int
    dtmf_pt: int | None
    remote_address: str
    remote_port: int
    direction: str               # our direction: sendrecv | sendonly | recvonly | inactive
    ptime_ms: int = 20


_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def negotiate(offer: SessionDesc, codecs: tuple[str, ...]) -> Negotiated:
    """Answer an offer: the first of the offerer's codecs we support (RFC 3264 §6.1)."""
    audio = offer.audio
    if audio is None:
        raise SdpError("no audio stream offered")
    chosen = None
    dtmf = None
    for pt in audio.payloads:
        name = audio.codec_of(pt)
        if name == "TELEPHONE-EVENT" and audio.rate_of(pt) == 8000 and dtmf is None:
            dtmf = pt
        elif chosen is None and name in codecs and audio.rate_of(pt) == 8000:
            chosen = (name, pt)
    if chosen is None:
        raise SdpError("none of the offered codecs is supported (PCMU, PCMA)")
    if not audio.address or audio.address == "0.0.0.0":
        direction = "inactive" if audio.direction in ("sendrecv", "recvonly") else _REVERSE[audio.direction]
    else:
        direction = _REVERSE[audio.direction]
    return Negotiated(chosen[0], chosen[1], dtmf, audio.address, audio.port, direction)


def build_sdp(address: str, port: int, codecs: list[tuple[int, str]], dtmf_pt: int | None,
              direction: str = "sendrecv", session_id: int | None = None, version: int = 0,
              rejected: list[str] | None = None) -> bytes:
    """An offer or answer for one audio stream (codecs: [(pt, 'PCMU'), ...])."""
    sid = session_id if session_id is not None else random.randint(1, 2**31)
    pts = [str(pt) for pt, _ in codecs] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    lines = [
        "v=0",
        f"o=appliance {sid} {version} IN IP4 {address}",
        "s=appliance",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(pts)}",
    ]
    for pt, name in codecs:
        lines.append(f"a=rtpmap:{pt} {name}/8000")
    if dtmf_pt is not None:
        lines.append(f"a=rtpmap:{dtmf_pt} telephone-event/8000")
        lines.append(f"a=fmtp:{dtmf_pt} 0-15")
    lines.append("a=ptime:20")
    lines.append(f"a={direction}")
    for other in rejected or []:   # RFC 3264 §6: a rejected stream keeps its line with port 0
        parts = other.split()
        if len(parts) >= 3:
            lines.append(f"m={parts[0]} 0 {' '.join(parts[2:])}")
    return ("\r\n".join(lines) + "\r\n").encode()
