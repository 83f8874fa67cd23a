"""SIP line: an asyncio SIP user agent (RFC 3261, UDP and TCP), SDP offer/answer (RFC 3264),
RTP/RTCP (RFC 3550), RFC 4733 DTMF, blind (RFC 3515) and attended (RFC 5589, Replaces) transfer.

`SipLine(cfg: SipLineConfig)` is the line; see line.py. Parsers: message.py (SIP), sdp.py, rtp.py;
transport and transactions: transaction.py; dialogs: dialog.py; digest auth: auth.py.
"""
from __future__ import annotations

from .config import SipLineConfig


def __getattr__(name):  # keep `import appliance.lines.sip` light (config loading imports it)
    if name in ("SipLine", "SipCall"):
        from . import line
        return getattr(line, name)
    raise AttributeError(name)


__all__ = ["SipLine", "SipCall", "SipLineConfig"]
