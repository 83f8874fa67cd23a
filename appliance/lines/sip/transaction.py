"""The SIP transport and transaction layers over UDP, and TCP on the same port (RFC 3261 §17, §18;
rport per RFC 3581).

TCP: requests and responses arriving on a TCP connection are answered on it; destinations marked with
`prefer_tcp` (a `transport=tcp` URI) are reached over a TCP connection (reused while it lives), with
the top Via saying TCP and no retransmissions (reliable transport: only Timer B/F apply).

Client transactions retransmit with T1 doubling (capped at T2 for non-INVITE) and give up after
64*T1 (Timer B/F) with a synthesized 408. Server transactions answer retransmitted requests with the
last response; final responses to INVITE are retransmitted until the ACK arrives (Timer G/H, and the
core's 2xx retransmission of §13.3.1.4).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .message import SipMessage, SipParseError, Via, make_response, parse

log = logging.getLogger(__name__)


def new_branch() -> str:
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


@dataclass
class ClientTransaction:
    request: SipMessage
    addr: tuple[str, int]
    data: bytes
    future: asyncio.Future
    on_provisional: Callable[[SipMessage], None] | None = None
    provisional_seen: bool = False
    final: SipMessage | None = None
    ack: bytes | None = None          # for INVITE non-2xx: retransmitted when the final repeats
    timer: asyncio.TimerHandle | None = None
    interval: float = 0.5
    started: float = field(default_factory=time.monotonic)


@dataclass
class ServerTransaction:
    last_response: bytes | None = None
    addr: tuple[str, int] | None = None
    expires: float = 0.0


class SipEndpoint(asyncio.DatagramProtocol):
    """One UDP socket. Incoming requests go to `on_request(msg, addr)`; responses to the client
    transaction that sent the request; stray responses (2xx retransmissions) to `on_stray_response`."""

    SERVER_TX_LIMIT = 4096

    def __init__(self, on_request: Callable[[SipMessage, tuple[str, int]], None],
                 accept_datagram: Callable[[bytes, tuple[str, int]], bool] | None = None,
                 t1_s: float = 0.5, t2_s: float = 4.0):
        self.on_request = on_request
        self.accept_datagram = accept_datagram
        self.on_stray_response: Callable[[SipMessage, tuple[str, int]], None] | None = None
        self.t1 = t1_s
        self.t2 = t2_s
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._server: OrderedDict[tuple[str, str, str], ServerTransaction] = OrderedDict()
        self._reliable: dict[tuple[str, int], tuple[asyncio.TimerHandle | None, bytes]] = {}
        self.parse_errors = 0
        self._tcp_server: asyncio.AbstractServer | None = None
        self._conns: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._tcp_prefer: set[tuple[str, int]] = set()
        self._tcp_tasks: set[asyncio.Task] = set()
        self._tcp_pending: dict[tuple[str, int], list[bytes]] = {}

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.local = self.transport.get_extra_info("sockname")[:2]

    # ---- TCP -----------------------------------------------------------------------------
    MAX_TCP_MESSAGE = 65536
    _CLEN = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)

    async def start_tcp(self, host: str, port: int) -> None:
        """Also accept SIP over TCP on host:port (normally the UDP port)."""
        self._tcp_server = await asyncio.start_server(self._serve_tcp, host, port, limit=self.MAX_TCP_MESSAGE)

    @property
    def tcp(self) -> bool:
        return self._tcp_server is not None

    def prefer_tcp(self, addr: tuple[str, int]) -> None:
        """Reach `addr` over TCP from now on (its URI said transport=tcp)."""
        self._tcp_prefer.add((addr[0], addr[1]))

    def is_tcp(self, addr: tuple[str, int]) -> bool:
        return addr in self._conns or addr in self._tcp_prefer

    def _spawn_tcp(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = tuple(writer.get_extra_info("peername")[:2])
        self._conns[addr] = writer
        try:
            await self._read_stream(reader, writer, addr)
        except asyncio.CancelledError:  # the loop is shutting down: the connection just ends
            pass

    async def _read_stream(self, reader, writer, addr) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    log.debug("SIP/TCP from %s: header over %d bytes; closing", addr, self.MAX_TCP_MESSAGE)
                    return
                head = head.lstrip(b"\r\n")
                if not head:
                    continue                              # CRLF keep-alive (RFC 5626 §3.5.1)
                m = self._CLEN.search(head)
                length = int(m.group(1)) if m else 0
                if length > self.MAX_TCP_MESSAGE:
                    log.debug("SIP/TCP from %s: body of %d bytes; closing", addr, length)
                    return
                body = await reader.readexactly(length) if length else b""
                self.datagram_received(head + body, addr)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self._conns.get(addr) is writer:
                del self._conns[addr]
                self._transport_failed(addr, "connection closed")
            writer.close()

    def _tcp_send(self, data: bytes, addr: tuple[str, int]) -> None:
        writer = self._conns.get(addr)
        if writer is not None and not writer.is_closing():
            writer.write(data)
            return
        queue = self._tcp_pending.get(addr)
        if queue is not None:                              # a connection is being opened
            queue.append(data)
            return
        self._tcp_pending[addr] = [data]

        async def connect():
            try:
                reader, writer = await asyncio.open_connection(addr[0], addr[1], limit=self.MAX_TCP_MESSAGE)
            except OSError as exc:
                log.info("SIP/TCP: cannot connect to %s:%d: %s", addr[0], addr[1], exc)
                self._tcp_pending.pop(addr, None)
                self._transport_failed(addr, f"connect failed: {exc}")
                return
            self._conns[addr] = writer
            for chunk in self._tcp_pending.pop(addr, []):
                writer.write(chunk)
            await self._read_stream(reader, writer, addr)

        self._spawn_tcp(connect())

    def _transport_failed(self, addr: tuple[str, int], why: str) -> None:
        """§8.1.3.1: a transport error ends the client transactions waiting on `addr` at once, as a
        503 naming the cause (over TCP nothing is retransmitted, so they would otherwise wait for
        Timer B/F and end as a 408 that hides it)."""
        for tx in list(self._client.values()):
            if tx.addr == addr and tx.final is None and not tx.future.done():
                tx.future.set_result(make_response(
                    tx.request, 503, f"Service Unavailable (SIP/TCP to {addr[0]}:{addr[1]}: {why})"))

    @staticmethod
    def _via_transport(msg: SipMessage, tcp: bool) -> None:
        """Say the transport the request really goes over in its top Via (§18.1.1)."""
        if not msg.is_request:
            return
        for i, (name, value) in enumerate(msg.headers):
            if name.lower() in ("via", "v"):
                want, other = ("SIP/2.0/TCP", "SIP/2.0/UDP") if tcp else ("SIP/2.0/UDP", "SIP/2.0/TCP")
                if value.upper().startswith(other):
                    msg.headers[i] = (name, want + value[len(other):])
                return

    def close(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
            self._tcp_server = None
        for writer in list(self._conns.values()):
            writer.close()
        self._conns.clear()
        for task in list(self._tcp_tasks):
            task.cancel()
        for tx in list(self._client.values()):
            if tx.timer:
                tx.timer.cancel()
            if not tx.future.done():
                tx.future.cancel()
        self._client.clear()
        for handle, _ in self._reliable.values():
            if handle:
                handle.cancel()
        self._reliable.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def send(self, msg: SipMessage | bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        tcp = self.is_tcp(addr)
        if isinstance(msg, SipMessage):
            self._via_transport(msg, tcp)
            data = msg.to_bytes()
        else:
            data = msg
        if tcp:
            self._tcp_send(data, addr)
        else:
            self.transport.sendto(data, addr)

    # ---- incoming ------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr) -> None:
        addr = (addr[0], addr[1])
        if not data.strip(b"\r\n\x00 "):
            return                                   # keep-alive
        if self.accept_datagram is not None and not self.accept_datagram(data, addr):
            return
        try:
            msg = parse(data)
            if msg.is_request:
                self._request(msg, addr)
            else:
                self._response(msg, addr)
        except SipParseError as exc:
            self.parse_errors += 1
            log.debug("unparseable datagram from %s: %s", addr, exc)
        except Exception:  # a bug must not take the socket down
            log.exception("error handling a SIP datagram from %s", addr)

    def _request(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        via = msg.top_via
        if "rport" in via.params or via.host.strip("[]") != addr[0]:
            # RFC 3581 / §18.2.1: note where the request really came from
            vias = msg.get_all("Via")
            via.params["received"] = addr[0]
            if "rport" in via.params:
                via.params["rport"] = str(addr[1])
            msg.remove("Via")
            for i, v in enumerate([str(via)] + vias[1:]):
                msg.headers.insert(i, ("Via", v))
        if msg.method == "ACK":
            num, _ = msg.cseq
            key = (msg.call_id, num)
            if key in self._reliable:                 # stops final-response retransmission
                handle, _ = self._reliable.pop(key)
                if handle:
                    handle.cancel()
                if via.branch and (via.branch, "INVITE", via.host) in self._server:
                    return                            # ACK of a non-2xx: absorbed by the transaction
            self.on_request(msg, addr)
            return
        key = (via.branch or msg.call_id + str(msg.cseq), msg.method, via.host)
        tx = self._server.get(key)
        if tx is not None:                             # a retransmission
            if tx.last_response is not None and tx.addr is not None:
                self.send(tx.last_response, tx.addr)
            return
        self._server[key] = ServerTransaction(addr=addr, expires=time.monotonic() + 64 * self.t1)
        self._expire_server()
        self.on_request(msg, addr)

    def _expire_server(self) -> None:
        now = time.monotonic()
        while self._server:
            key, tx = next(iter(self._server.items()))
            if tx.expires < now or len(self._server) > self.SERVER_TX_LIMIT:
                self._server.popitem(last=False)
            else:
                break

    def respond(self, req: SipMessage, resp: SipMessage, addr: tuple[str, int]) -> None:
        """Send a response and remember it for retransmitted requests; final responses to INVITE
        are retransmitted until the ACK (or 64*T1)."""
        data = resp.to_bytes()
        via = req.top_via
        key = (via.branch or req.call_id + str(req.cseq), req.method, via.host)
        tx = self._server.get(key)
        if tx is not None:
            tx.last_response = data
            tx.addr = addr
            tx.expires = time.monotonic() + 64 * self.t1
        self.send(data, addr)
        if req.method == "INVITE" and resp.status >= 200:
            self._retransmit_final((req.call_id, req.cseq[0]), data, addr, self.t1, time.monotonic())

    def _retransmit_final(self, key, data, addr, interval, started) -> None:
        loop = asyncio.get_running_loop()

        def again():
            if key not in self._reliable:
                return
            if time.monotonic() - started > 64 * self.t1:
                self._reliable.pop(key, None)
                return
            self.send(data, addr)
            self._retransmit_final(key, data, addr, min(interval * 2, self.t2), started)

        self._reliable[key] = (loop.call_later(interval, again), data)

    def unacked(self, call_id: str, cseq: int) -> bool:
        return (call_id, cseq) in self._reliable

    def _response(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        try:
            branch = msg.top_via.branch
            method = msg.cseq[1]
        except SipParseError:
            return
        tx = self._client.get((branch, method))
        if tx is None:
            if self.on_stray_response is not None:
                self.on_stray_response(msg, addr)
            return
        if msg.status < 200:
            tx.provisional_seen = True
            if method == "INVITE" and tx.timer:       # Timer A stops on a provisional
                tx.timer.cancel()
                tx.timer = None
            if tx.on_provisional is not None:
                tx.on_provisional(msg)
            return
        if tx.final is not None:                      # a retransmitted final response
            if tx.ack is not None:
                self.send(tx.ack, tx.addr)
            elif self.on_stray_response is not None:
                self.on_stray_response(msg, addr)
            return
        tx.final = msg
        if tx.timer:
            tx.timer.cancel()
            tx.timer = None
        if method == "INVITE" and msg.status >= 300:  # §17.1.1.3: the transaction ACKs non-2xx
            tx.ack = build_non2xx_ack(tx.request, msg).to_bytes()
            self.send(tx.ack, tx.addr)
        # keep the transaction a while to absorb retransmissions (Timer D / K)
        asyncio.get_running_loop().call_later(
            32.0 if method == "INVITE" else self.t2 * 2, self._client.pop, (branch, method), None)
        if not tx.future.done():
            tx.future.set_result(msg)

    # ---- outgoing requests ---------------------------------------------------------------
    async def request(self, req: SipMessage, addr: tuple[str, int],
                      on_provisional: Callable[[SipMessage], None] | None = None,
                      timeout_s: float | None = None) -> SipMessage:
        """Send a request reliably; returns the final response (408 synthesized on timeout).
        INVITE waits for a final response as long as provisionals keep coming, up to timeout_s."""
        loop = asyncio.get_running_loop()
        branch = req.top_via.branch
        method = req.cseq[1]
        reliable = self.is_tcp(addr)
        self._via_transport(req, reliable)
        data = req.to_bytes()
        tx = ClientTransaction(req, addr, data, loop.create_future(), on_provisional, interval=self.t1)
        self._client[(branch, method)] = tx
        self.send(data, addr)
        if not reliable:                              # §17.1.1.2: no retransmission over TCP
            self._arm(tx)
        limit = 64 * self.t1
        try:
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(tx.future), timeout=limit)
                except asyncio.TimeoutError:
                    if method == "INVITE" and tx.provisional_seen and (
                            timeout_s is None or time.monotonic() - tx.started < timeout_s):
                        continue                      # ringing: the caller's timeout decides
                    return make_response(req, 408)
        finally:
            if tx.timer:
                tx.timer.cancel()
                tx.timer = None
            if tx.final is None:
                self._client.pop((branch, method), None)

    def _arm(self, tx: ClientTransaction) -> None:
        loop = asyncio.get_running_loop()

        def fire():
            tx.timer = None
            if tx.final is not None or tx.future.done():
                return
            if tx.request.method == "INVITE" and tx.provisional_seen:
                return
            self.send(tx.data, tx.addr)
            tx.interval = tx.interval * 2 if tx.request.method == "INVITE" else min(tx.interval * 2, self.t2)
            if time.monotonic() - tx.started < 64 * self.t1:
                self._arm(tx)

        tx.timer = loop.call_later(tx.interval, fire)


def build_non2xx_ack(invite: SipMessage, resp: SipMessage) -> SipMessage:
    """ACK for a non-2xx final response: same branch, Request-URI, Route; the response's To."""
    ack = SipMessage(method="ACK", uri=invite.uri)
    ack.add("Via", invite.get_all("Via")[0])
    for route in invite.get_all("Route"):
        ack.add("Route", route)
    ack.add("Max-Forwards", "70")
    ack.add("From", invite.get("From") or "")
    ack.add("To", resp.get("To") or "")
    ack.add("Call-ID", invite.call_id)
    ack.add("CSeq", f"{invite.cseq[0]} ACK")
    return ack


def error_response(req: SipMessage, status: int, to_tag: str | None = None, reason: str | None = None):
    return make_response(req, status, reason, to_tag=to_tag)


__all__ = ["SipEndpoint", "new_branch", "new_tag", "build_non2xx_ack", "Via"]
