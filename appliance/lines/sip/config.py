"""Configuration of a SIP line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SipLineConfig:
    type: Literal["sip"] = "sip"
    name: str = field(default="sip", metadata={"help": "line name used in events and health"})
    listen: str = field(default="127.0.0.1:5060", metadata={"help": "host:port the user agent binds (UDP)"})
    registrar: str | None = field(default=None, metadata={"help": "host[:port] to REGISTER with; none: accept direct calls"})
    username: str | None = None
    password_env: str | None = field(default=None, metadata={"help": "environment variable holding the SIP password", "secret": False})
    codecs: tuple[Literal["PCMU", "PCMA"], ...] = ("PCMU", "PCMA")
    rtp_ports: str = field(default="10000-10100", metadata={"help": "RTP port range start-end", "pattern": r"\d+-\d+"})
    allow_from: tuple[str, ...] = field(default=(), metadata={"help": "addresses allowed to call besides the registrar; empty: any"})
    transfer_target: str | None = field(default=None, metadata={"help": "SIP URI or number a handoff is transferred to"})
