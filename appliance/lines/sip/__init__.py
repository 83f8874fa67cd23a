"""SIP line: an asyncio SIP user agent (RFC 3261), SDP offer/answer (RFC 3264), RTP/RTCP (RFC 3550).

`SipLine(cfg: SipLineConfig)` is the line; see line.py. Parsers: message.py (SIP), sdp.py, rtp.py.
"""
from __future__ import annotations

from .config import SipLineConfig


def __getattr__(name):  # keep `import appliance.lines.sip` light (config loading imports it)
    if name in ("SipLine", "SipCall"):
        from . import line
        return getattr(line, name)
    raise AttributeError(name)


__all__ = ["SipLine", "SipCall", "SipLineConfig"]
