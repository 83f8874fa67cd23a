"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 2617, SHA-256 per RFC 8760)."""
from __future__ import annotations

import hashlib
import os
import re

from .message import SipParseError

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*,?')


def parse_challenge(value: str) -> dict[str, str]:
    """'Digest realm="x", nonce="y", qop="auth"' -> {'realm': 'x', ...} (names lower-cased)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported auth scheme {scheme[:20]!r}")
    out: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        v = m.group(2).strip()
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1].replace('\\"', '"')
        out[m.group(1).lower()] = v
        pos = m.end()
    if "nonce" not in out or "realm" not in out:
        raise SipParseError("digest challenge without realm or nonce")
    return out


def pick_challenge(values: list[str]) -> dict[str, str] | None:
    """Of several challenges, the strongest algorithm we support (SHA-256 over MD5)."""
    best = None
    for value in values:
        try:
            ch = parse_challenge(value)
        except SipParseError:
            continue
        algo = ch.get("algorithm", "MD5").upper()
        if algo not in _HASHES:
            continue
        if best is None or algo == "SHA-256":
            best = ch
    return best


def digest_response(challenge: dict[str, str], method: str, uri: str, username: str, password: str,
                    nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization/Proxy-Authorization header value answering `challenge`."""
    algo = challenge.get("algorithm", "MD5").upper()
    if algo not in _HASHES:
        raise SipParseError(f"unsupported digest algorithm {algo!r}")
    h = _HASHES[algo]

    def H(s: str) -> str:
        return h(s.encode("utf-8")).hexdigest()

    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = H(f"{username}:{realm}:{password}")
    ha2 = H(f"{method}:{uri}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        cnonce = cnonce or os.urandom(8).hex()
        ncs = f"{nc:08x}"
        resp = H(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        parts += [f'response="{resp}"', "qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        resp = H(f"{ha1}:{nonce}:{ha2}")
        parts.append(f'response="{resp}"')
    parts.append(f"algorithm={algo}")
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)
