"""Who may talk to the SIP line: an allow-list of sources, 403 with a rate limit for the rest, and
silence for known scanners (answering them only confirms a target exists)."""
from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections import OrderedDict

SCANNER_PATTERN = re.compile(
    rb"friendly-scanner|sipvicious|sipcli|sip-scan|sipscan|iwar|vaxsipuseragent|pplsip|sundayddr|"
    rb"smap|sipptk|sip-?scanner|svcrack|svwar|svmap|masscan|zgrab", re.I)


def is_scanner(data: bytes) -> bool:
    """True if the datagram's User-Agent/From names a known SIP scanner."""
    head = data[:2048]
    for line in head.split(b"\n"):
        low = line.lower()
        if low.startswith((b"user-agent:", b"from:", b"f:", b"contact:", b"m:")) and SCANNER_PATTERN.search(line):
            return True
    return False


class _Entry:
    __slots__ = ("net", "port")

    def __init__(self, net, port):
        self.net = net
        self.port = port


def _parse_entry(text: str) -> list[_Entry]:
    """'10.0.0.5', '10.0.0.0/24', '127.0.0.1:5060', 'pbx.example.org[:port]' -> entries."""
    text = text.strip()
    port = None
    host = text
    if text.count(":") == 1:            # host:port (IPv6 addresses are written bare)
        host, _, p = text.partition(":")
        port = int(p)
    elif text.startswith("[") and "]:" in text:
        host, _, p = text[1:].partition("]:")
        port = int(p)
    try:
        return [_Entry(ipaddress.ip_network(host, strict=False), port)]
    except ValueError:
        pass
    addrs = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)}
    return [_Entry(ipaddress.ip_network(a), port) for a in addrs]


class Gate:
    """Decides, per source address, whether a request is served, refused with 403, or ignored."""

    MAX_TRACKED = 1024

    def __init__(self, allow: list[str], reject_rate_per_s: float = 2.0, reject_burst: int = 5):
        self.entries = [e for text in allow for e in _parse_entry(text)]
        self.rate = reject_rate_per_s
        self.burst = reject_burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.rejected = 0
        self.dropped = 0
        self.scanners = 0

    @property
    def open(self) -> bool:
        return not self.entries

    def allowed(self, addr: tuple[str, int]) -> bool:
        if not self.entries:
            return True
        try:
            ip = ipaddress.ip_address(addr[0])
        except ValueError:
            return False
        return any(ip in e.net and (e.port is None or e.port == addr[1]) for e in self.entries)

    def may_reject(self, addr: tuple[str, int]) -> bool:
        """Token bucket per source IP: True if a 403 may be sent now, False to stay silent."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(addr[0], (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
            self.rejected += 1
        else:
            self.dropped += 1
        self._buckets[addr[0]] = (tokens, now)
        while len(self._buckets) > self.MAX_TRACKED:
            self._buckets.popitem(last=False)
        return ok
