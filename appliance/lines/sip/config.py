"""Configuration of a SIP line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SipLineConfig:
    type: Literal["sip"] = "sip"
    name: str = field(default="sip", metadata={"help": "line name used in events and health"})
    listen: str = field(default="127.0.0.1:5060", metadata={"help": "host:port the user agent binds (UDP)"})
    tcp: bool = field(default=True, metadata={"help": "also take and place SIP over TCP on the listen port (UDP is always on)"})
    registrar: str | None = field(default=None, metadata={"help": "host[:port] to REGISTER with; none: accept direct calls"})
    username: str | None = None
    password_env: str | None = field(default=None, metadata={"help": "environment variable holding the SIP password", "secret": False})
    codecs: tuple[Literal["PCMU", "PCMA"], ...] = ("PCMU", "PCMA")
    rtp_ports: str = field(default="10000-10100", metadata={"help": "RTP port range start-end", "pattern": r"\d+-\d+"})
    allow_from: tuple[str, ...] = field(default=(), metadata={"help": "addresses allowed to call besides the registrar; empty: any"})
    transfer_attended: bool = field(default=False, metadata={"help": "handoffs call the target first (briefed when a voice is set) and join the caller with REFER/Replaces where both peers allow it; otherwise blind"})
    transfer_target: str | None = field(default=None, metadata={"help": "SIP URI or number a handoff is transferred to"})
    domain: str | None = field(default=None, metadata={"help": "SIP domain of the account (From/To, digest realm); default: the registrar host"})
    contact_host: str | None = field(default=None, metadata={"help": "address put in Contact/SDP; default: the listen address"})
    register_expires_s: int = field(default=300, metadata={"help": "registration lifetime asked for; refreshed before it ends", "min": 30, "max": 86400})
    keepalive_s: int = field(default=0, metadata={"help": "send OPTIONS to the registrar this often (NAT keep-alive); 0: never", "min": 0, "max": 3600})
    t1_ms: int = field(default=500, metadata={"help": "SIP timer T1 (RTT estimate); retransmissions start here", "min": 50, "max": 5000})
    max_calls: int = field(default=1, metadata={"help": "concurrent calls; more get 486 Busy Here", "min": 1, "max": 64})
    reject_rate_per_s: float = field(default=2.0, metadata={"help": "403 answers per second per refused source; beyond: silence", "min": 0.0, "max": 100.0})
    user_agent: str = field(default="appliance", metadata={"help": "User-Agent header value"})
