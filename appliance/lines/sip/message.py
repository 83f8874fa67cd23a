"""SIP messages (RFC 3261 §7): parse from bytes, build, serialize.

Robust on purpose: compact header forms, case-insensitive names, folded lines, several values per
header line, unknown headers kept in order. Anything that cannot be a SIP message raises
`SipParseError` (never another exception), and sizes are bounded so a hostile datagram cannot make
the parser allocate without limit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...errors import LineError

MAX_MESSAGE_BYTES = 65535
MAX_HEADERS = 256

COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via",
    "r": "Refer-To", "b": "Referred-By", "o": "Event", "u": "Allow-Events", "x": "Session-Expires",
}
# canonical spelling for headers we emit or look up
CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type", "Content-Length",
    "Route", "Record-Route", "Authorization", "Proxy-Authorization", "WWW-Authenticate",
    "Proxy-Authenticate", "Expires", "User-Agent", "Server", "Allow", "Supported", "Event",
    "Subscription-State", "Refer-To", "Referred-By", "Accept", "Retry-After", "Reason", "Require",
    "Unsupported", "Warning", "Content-Encoding", "Subject", "Allow-Events", "Session-Expires")}
# headers whose comma-separated values are separate entries (RFC 3261 §7.3.1)
MULTI = {"via", "contact", "route", "record-route", "allow", "supported", "require", "accept"}

_REQUEST_LINE = re.compile(r"^([A-Za-z!%*._+`'~-]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 (\d{3})(?: (.*))?$")


class SipParseError(LineError):
    """Bytes that are not a well-formed SIP message."""


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return CANONICAL.get(low, name.strip())


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and <...>."""
    out, cur, quote, angle = [], [], False, False
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and i + 1 < len(value):
                cur.append(value[i:i + 2])
                i += 2
                continue
            if ch == '"':
                quote = False
        elif ch == '"':
            quote = True
        elif ch == "<":
            angle = True
        elif ch == ">":
            angle = False
        elif ch == "," and not angle:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    last = "".join(cur).strip()
    if last or not out:
        out.append(last)
    return [v for v in out if v]


@dataclass
class SipMessage:
    """A request (method, uri) or a response (status, reason). Headers are an ordered list of
    (canonical name, value); one entry per value for headers that allow lists."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # ---- headers -------------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name).lower()
        for n, v in self.headers:
            if n.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical(name).lower()
        return [v for n, v in self.headers if n.lower() == key]

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with one value (appended where the first one was)."""
        name = canonical(name)
        key = name.lower()
        for i, (n, _) in enumerate(self.headers):
            if n.lower() == key:
                self.headers[i] = (name, value)
                self.headers[i + 1:] = [(a, b) for a, b in self.headers[i + 1:] if a.lower() != key]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, first: bool = False) -> None:
        entry = (canonical(name), value)
        if first:
            self.headers.insert(0, entry)
        else:
            self.headers.append(entry)

    def remove(self, name: str) -> None:
        key = canonical(name).lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != key]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        raw = (self.get("CSeq") or "").split()
        if len(raw) != 2 or not raw[0].isdigit() or len(raw[0]) > 10:
            raise SipParseError(f"bad CSeq {self.get('CSeq')!r}")
        return int(raw[0]), raw[1].upper()

    @property
    def top_via(self) -> Via:
        vias = self.get_all("Via")
        if not vias:
            raise SipParseError("no Via")
        return Via.parse(vias[0])

    # ---- bytes ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if self.is_request:
            first = f"{self.method} {self.uri} SIP/2.0"
        else:
            first = f"SIP/2.0 {self.status} {self.reason}"
        lines = [first]
        for n, v in self.headers:
            if n.lower() != "content-length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")


def parse(data: bytes) -> SipMessage:
    """Parse one datagram. Raises SipParseError on anything malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large")
    data = data.lstrip(b"\r\n")  # keep-alive CRLFs before the start line are allowed
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4:]
    else:
        sep = data.find(b"\n\n")  # tolerate bare LF
        if sep < 0:
            head, body = data, b""
        else:
            head, body = data[:sep], data[sep + 2:]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    raw_lines = re.split(r"\r?\n", text)
    if not raw_lines or not raw_lines[0].strip():
        raise SipParseError("empty message")
    msg = SipMessage()
    first = raw_lines[0].strip()
    m = _REQUEST_LINE.match(first)
    if m:
        msg.method, msg.uri = m.group(1).upper(), m.group(2)
        if ":" not in msg.uri:
            raise SipParseError(f"bad Request-URI {msg.uri!r}")
    else:
        m = _STATUS_LINE.match(first)
        if not m:
            raise SipParseError(f"bad start line {first[:80]!r}")
        msg.status, msg.reason = int(m.group(1)), (m.group(2) or "").strip()
        if not 100 <= msg.status <= 699:
            raise SipParseError(f"bad status {msg.status}")
    # unfold continuation lines (RFC 3261 §7.3.1)
    unfolded: list[str] = []
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        elif line:
            unfolded.append(line)
    if len(unfolded) > MAX_HEADERS:
        raise SipParseError("too many headers")
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name:
            raise SipParseError(f"bad header line {line[:80]!r}")
        cname = canonical(name)
        value = value.strip()
        if cname.lower() in MULTI:
            for part in split_commas(value):
                msg.headers.append((cname, part))
        else:
            msg.headers.append((cname, value))
    length = msg.get("Content-Length")
    if length is not None:
        if not length.isdigit() or len(length) > 6:
            raise SipParseError(f"bad Content-Length {length!r}")
        n = int(length)
        if n > len(body):
            raise SipParseError("truncated body")
        body = body[:n]
    msg.body = body
    for required in ("Call-ID", "CSeq", "From", "To", "Via"):
        if msg.get(required) is None:
            raise SipParseError(f"missing {required}")
    cseq_method = msg.cseq[1]
    if msg.is_request and cseq_method != msg.method:
        raise SipParseError("CSeq method differs from request method")
    return msg


# ---- parameters, URIs, addresses, Via ----------------------------------------------------
def parse_params(text: str) -> dict[str, str | None]:
    """';a=b;c' -> {'a': 'b', 'c': None} (names lower-cased, quotes kept off)."""
    out: dict[str, str | None] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        k, eq, v = part.partition("=")
        out[k.strip().lower()] = v.strip().strip('"') if eq else None
    return out


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class SipUri:
    scheme: str = "sip"
    user: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips", "tel"):
            raise SipParseError(f"bad URI {text[:80]!r}")
        rest, _, headers = rest.partition("?")
        hostpart, _, params = rest.partition(";")
        user = None
        if "@" in hostpart:
            user, _, hostpart = hostpart.rpartition("@")
            user = user.partition(":")[0]  # drop a password
        host, port = hostpart, None
        if hostpart.startswith("["):
            end = hostpart.find("]")
            host = hostpart[:end + 1]
            rest_port = hostpart[end + 1:]
            if rest_port.startswith(":"):
                port = _port(rest_port[1:])
        elif ":" in hostpart:
            host, _, p = hostpart.partition(":")
            port = _port(p)
        if not host and scheme.lower() != "tel":
            raise SipParseError(f"URI without host {text[:80]!r}")
        return cls(scheme.lower(), user, host, port, parse_params(params), headers)

    def __str__(self) -> str:
        s = f"{self.scheme}:"
        if self.user:
            s += f"{self.user}@"
        s += self.host
        if self.port:
            s += f":{self.port}"
        s += format_params(self.params)
        if self.headers:
            s += "?" + self.headers
        return s

    def hostport(self, default_port: int = 5060) -> tuple[str, int]:
        return self.host.strip("[]"), self.port or default_port


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SipParseError(f"bad port {text[:10]!r}")
    return int(text)


@dataclass
class NameAddr:
    """From/To/Contact/Route values: `"Name" <uri>;params` or `uri;params`."""

    uri: SipUri
    display: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri_text, close, params = rest.partition(">")
            if not close:
                raise SipParseError(f"unclosed <> in {text[:80]!r}")
            return cls(SipUri.parse(uri_text), display.strip().strip('"'), parse_params(params))
        uri_text, _, params = text.partition(";")  # bare form: params belong to the header
        return cls(SipUri.parse(uri_text), "", parse_params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        disp = f'"{self.display}" ' if self.display else ""
        return f"{disp}<{self.uri}>{format_params(self.params)}"


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @classmethod
    def parse(cls, text: str) -> Via:
        m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*(\w+)\s+([^;\s]+)\s*(.*)$", text, re.I)
        if not m:
            raise SipParseError(f"bad Via {text[:80]!r}")
        hostport = m.group(2)
        host, port = hostport, None
        if hostport.startswith("["):
            end = hostport.find("]")
            host = hostport[:end + 1]
            if hostport[end + 1:].startswith(":"):
                port = _port(hostport[end + 2:])
        elif ":" in hostport:
            host, _, p = hostport.partition(":")
            port = _port(p)
        return cls(m.group(1).upper(), host, port, parse_params(m.group(3)))

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""

    def __str__(self) -> str:
        hp = self.host + (f":{self.port}" if self.port else "")
        return f"SIP/2.0/{self.transport} {hp}{format_params(self.params)}"


REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout",
    415: "Unsupported Media Type", 420: "Bad Extension", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable", 603: "Decline",
}


def make_response(req: SipMessage, status: int, reason: str | None = None, to_tag: str | None = None,
                  body: bytes = b"", content_type: str | None = None) -> SipMessage:
    """A response to `req` (RFC 3261 §8.2.6): Via, From, Call-ID, CSeq copied; To gets a tag."""
    resp = SipMessage(status=status, reason=reason or REASONS.get(status, ""))
    for name in ("Via", "Record-Route" if 100 < status < 300 else None, "From", "To", "Call-ID", "CSeq"):
        if name is None:
            continue
        for value in req.get_all(name):
            if name == "To" and to_tag and ";tag=" not in value.replace(" ", "").lower():
                value = f"{value};tag={to_tag}"
            resp.add(name, value)
    if body:
        resp.body = body
        resp.set("Content-Type", content_type or "application/sdp")
    return resp
