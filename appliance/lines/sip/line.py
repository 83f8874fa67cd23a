"""The SIP line: a user agent that registers (optionally), takes and places calls, and transfers them.

`SipLine(cfg)` is built from its `SipLineConfig` alone. Inbound calls are announced as a `ring`
line event carrying the `SipCall`; the session answers with `await call.answer()`. One 20 ms clock
per line drives every call's RTP (jitter buffer out to `call.rx`, `call.next_playout_frame()` out
as RTP).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Literal
from urllib.parse import quote

from ...errors import LineError
from ..base import Call, Line, LineCapabilities, LineEvent
from . import sdp as sdpmod
from .auth import digest_response, pick_challenge
from .config import SipLineConfig
from .dialog import Dialog
from .message import NameAddr, SipMessage, SipParseError, SipUri, make_response
from .rtp import RtpSession
from .security import Gate, is_scanner
from .transaction import SipEndpoint, new_branch, new_tag

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, INFO"
DTMF_PT = 101
_CODEC_PT = {"PCMU": 0, "PCMA": 8}


def _hostport(text: str, default_port: int = 5060) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not host:
        host, port = text, ""
    return host, int(port) if port else default_port


class SipCall(Call):
    """A call on a SIP line (one dialog, one RTP session)."""

    def __init__(self, line: SipLine, direction, remote: str, call_id: str):
        super().__init__(line, direction, remote, call_id=call_id, loop=line._loop)
        self.sip_line = line
        self.dialog: Dialog | None = None
        self.invite: SipMessage | None = None        # the initial INVITE (ours or theirs)
        self.invite_addr: tuple[str, int] | None = None
        self.rtp: RtpSession | None = None
        self.rtp_port = 0
        self.negotiated: sdpmod.Negotiated | None = None
        self.state: Literal["offered", "early", "answering", "confirmed", "ended"] = "offered"
        self.on_hold = False
        self.sdp_version = 0
        self.session_id = int.from_bytes(os.urandom(4), "big") >> 1
        self.local_tag = new_tag()
        self._confirmed = asyncio.Event()
        self._notify: asyncio.Queue[str] = asyncio.Queue()
        self._pending_offer_in_ack = False
        self.remote_allow: set[str] | None = None   # methods in the far end's Allow (None: not said)
        self.remote_supported: set[str] = set()     # option tags in its Supported
        self.consult = False                        # a consultation call of an attended transfer

    def _learn_peer(self, msg: SipMessage) -> None:
        allow = msg.get_all("Allow")
        if allow:
            self.remote_allow = {m.strip().upper() for v in allow for m in v.split(",") if m.strip()}
        self.remote_supported |= {t.strip().lower() for v in msg.get_all("Supported") for t in v.split(",")
                                  if t.strip()}

    def rx_written(self) -> None:
        """RTP is played out on the loop thread: wake the reader directly (no self-pipe write)."""
        self._rx_ready.set()

    # ---- Call API ------------------------------------------------------------------------
    async def answer(self) -> None:
        await self.sip_line._answer(self)

    async def hangup(self, cause: str = "local") -> None:
        await self.sip_line._hangup(self, cause)

    async def send_dtmf(self, digits: str) -> None:
        if self.rtp is None or self.ended.is_set():
            raise LineError(f"{self.line.name}: no media to send DTMF on")
        try:
            fut = self.rtp.queue_dtmf(digits)
        except ValueError as exc:
            raise LineError(str(exc)) from exc
        await fut

    async def transfer(self, target: str, mode: Literal["blind", "warm"] = "blind",
                       briefing: str | None = None) -> bool:
        if mode == "warm":
            return await self.sip_line._attended_transfer(self, target, briefing)
        return await self.sip_line._transfer(self, target, mode)

    def metrics(self) -> dict:
        """RTP receive figures (packets, loss, jitter, jitter buffer) and, once the far end has
        sent an RTCP report about our stream, what it measured (`remote`: loss, jitter, RTT)."""
        if self.rtp is None:
            return {}
        out = self.rtp.receive_stats()
        if self.rtp.remote_report is not None:
            out["remote"] = dict(self.rtp.remote_report)
        return out


class SipLine(Line):
    """An asyncio SIP user agent over UDP, and TCP on the same port (see the package docstring)."""

    capabilities = LineCapabilities(full_duplex=True, caller_id=True, dtmf_in=True, dtmf_out=True,
                                    transfer_blind=True, transfer_warm=False, outbound=True)

    def __init__(self, cfg: SipLineConfig):
        super().__init__(cfg.name)
        self.cfg = cfg
        if cfg.transfer_attended:
            self.capabilities = LineCapabilities(**{**self.capabilities.__dict__, "transfer_warm": True})
        #: optional `async (briefing text) -> PCM16 8 kHz` (the runtime's TTS): spoken to the
        #: transfer target on the consultation call of an attended transfer before joining
        self.briefing_audio = None
        self.listen_host, self.listen_port = _hostport(cfg.listen)
        self.contact_host = cfg.contact_host or self.listen_host
        self.registrar = _hostport(cfg.registrar) if cfg.registrar else None
        self.domain = cfg.domain or (self.registrar[0] if self.registrar else self.contact_host)
        self.username = cfg.username or "appliance"
        lo, _, hi = cfg.rtp_ports.partition("-")
        self.rtp_lo, self.rtp_hi = int(lo), int(hi)
        if self.rtp_hi - self.rtp_lo < 2:
            raise LineError(f"{cfg.name}: rtp_ports {cfg.rtp_ports!r} must span at least 2 ports")
        allow = list(cfg.allow_from)
        if allow and cfg.registrar:
            allow.append(self.registrar[0])
        self.gate = Gate(allow, reject_rate_per_s=cfg.reject_rate_per_s)
        self.endpoint: SipEndpoint | None = None
        self.calls: dict[str, SipCall] = {}
        self.registered = False
        self.registration_expires_at: float | None = None
        self.last_register_status: int | None = None
        self._tasks: list[asyncio.Task] = []
        self._clock_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ports_in_use: set[int] = set()
        self._recently_ended: dict[str, SipCall] = {}
        self._next_port = self.rtp_lo + (self.rtp_lo % 2)
        self._nc: dict[str, int] = {}
        self._reg_call_id = os.urandom(8).hex()
        self._reg_cseq = 0
        self._reg_tag = new_tag()
        self._registered_event = asyncio.Event()
        #: optional hook mapping a bound RTP port to the (host, port) announced in SDP: for a media
        #: relay or port forwarding in front of the box (the impairment bench uses it)
        self.advertise_media = None

    # ---- lifecycle -----------------------------------------------------------------------
    @property
    def password(self) -> str:
        env = self.cfg.password_env
        return os.environ.get(env, "") if env else ""

    @property
    def local_port(self) -> int:
        return self.endpoint.local[1] if self.endpoint else self.listen_port

    @property
    def contact(self) -> str:
        return f"<sip:{self.username}@{self.contact_host}:{self.local_port}>"

    @property
    def aor(self) -> str:
        return f"<sip:{self.username}@{self.domain}>"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.endpoint = SipEndpoint(self._on_request, self._accept, t1_s=self.cfg.t1_ms / 1000.0)
        self.endpoint.on_stray_response = self._on_stray_response
        try:
            await self.endpoint.start(self.listen_host, self.listen_port)
        except OSError as exc:
            raise LineError(f"{self.name}: cannot listen on {self.cfg.listen}: {exc}") from exc
        if self.cfg.tcp:
            try:
                await self.endpoint.start_tcp(self.listen_host, self.local_port)
            except OSError as exc:  # UDP is what ATAs and trunks use; TCP is an extra
                log.warning("%s: SIP over TCP unavailable on %s:%d (%s); UDP only", self.name,
                            self.listen_host, self.local_port, exc)
        if self.registrar:
            self.set_state("down", "registering")
            self._tasks.append(asyncio.create_task(self._register_loop()))
        else:
            self.set_state("idle", f"listening on {self.listen_host}:{self.local_port}")
        if self.cfg.keepalive_s and self.registrar:
            self._tasks.append(asyncio.create_task(self._keepalive_loop()))

    async def wait_registered(self, timeout_s: float = 10.0) -> bool:
        try:
            await asyncio.wait_for(self._registered_event.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self) -> None:
        if self.endpoint is None:
            return
        for call in list(self.calls.values()):
            try:
                await asyncio.wait_for(self._hangup(call, "shutdown"), 2.0)
            except (asyncio.TimeoutError, LineError):
                pass
        for t in self._tasks:
            t.cancel()
        if self.registered:
            try:
                await asyncio.wait_for(self._register(expires=0), 2.0)
            except (asyncio.TimeoutError, LineError):
                pass
        if self._clock_task:
            self._clock_task.cancel()
            self._clock_task = None
        self.endpoint.close()
        self.endpoint = None
        self.set_state("down", "stopped")

    def health(self) -> dict:
        return {"name": self.name, "state": self.state, "registered": self.registered,
                "registrar": self.cfg.registrar, "last_register_status": self.last_register_status,
                "calls": len(self.calls), "refused": self.gate.rejected, "ignored": self.gate.dropped,
                "scanners": self.gate.scanners, "tcp": bool(self.endpoint and self.endpoint.tcp),
                "parse_errors": self.endpoint.parse_errors if self.endpoint else 0}

    # ---- security ------------------------------------------------------------------------
    def _accept(self, data: bytes, addr: tuple[str, int]) -> bool:
        if is_scanner(data):
            self.gate.scanners += 1
            return False
        return True

    # ---- helpers -------------------------------------------------------------------------
    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.contact_host}:{self.local_port};branch={new_branch()};rport"

    def _new_request(self, method: str, uri: str, to: str, call_id: str, cseq: int, from_tag: str) -> SipMessage:
        req = SipMessage(method=method, uri=uri)
        req.add("Via", self._via())
        req.add("Max-Forwards", "70")
        req.add("From", f"{self.aor};tag={from_tag}")
        req.add("To", to)
        req.add("Call-ID", call_id)
        req.add("CSeq", f"{cseq} {method}")
        req.add("Contact", self.contact)
        req.add("User-Agent", self.cfg.user_agent)
        return req

    def _authorize(self, req: SipMessage, resp: SipMessage) -> bool:
        """Add credentials answering a 401/407; False if none can be given (or were refused)."""
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        ch = pick_challenge(resp.get_all(header))
        if ch is None or not self.password:
            return False
        if req.get("Authorization" if resp.status == 401 else "Proxy-Authorization") and \
                ch.get("stale", "").lower() != "true" and self._nc.get(ch["nonce"]):
            return False                               # same nonce refused again: wrong password
        nc = self._nc.get(ch["nonce"], 0) + 1
        self._nc[ch["nonce"]] = nc
        value = digest_response(ch, req.method or "", req.uri or "", self.username, self.password, nc=nc)
        req.set("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        num, method = req.cseq
        req.set("CSeq", f"{num + 1} {method}")
        via = req.top_via
        via.params["branch"] = new_branch()
        req.remove("Via")
        req.add("Via", str(via), first=True)
        return True

    def _alloc_port(self) -> int:
        span = (self.rtp_hi - self.rtp_lo) // 2
        for _ in range(span):
            port = self._next_port
            self._next_port += 2
            if self._next_port + 1 > self.rtp_hi:
                self._next_port = self.rtp_lo + (self.rtp_lo % 2)
            if port not in self._ports_in_use:
                self._ports_in_use.add(port)
                return port
        raise LineError(f"{self.name}: no free RTP port in {self.cfg.rtp_ports}")

    async def _start_media(self, call: SipCall, neg: sdpmod.Negotiated) -> None:
        call.negotiated = neg
        remote = (neg.remote_address, neg.remote_port) if neg.remote_port else None
        last_error = None
        for _ in range(8):
            if call.rtp_port == 0:
                call.rtp_port = self._alloc_port()
            rtp = RtpSession(call, self.listen_host, call.rtp_port, neg.codec, neg.payload_type,
                             neg.dtmf_pt, remote)
            try:
                await rtp.start()
                break
            except OSError as exc:   # port taken by someone else: try the next pair
                last_error = exc
                call.rtp_port = 0
        else:
            raise LineError(f"{self.name}: cannot bind RTP: {last_error}")
        rtp.send_enabled = neg.direction in ("sendrecv", "sendonly")
        call.rtp = rtp
        if self._clock_task is None or self._clock_task.done():
            self._clock_task = asyncio.create_task(self._clock())

    def _local_sdp(self, call: SipCall, direction: str = "sendrecv", codecs=None) -> bytes:
        if call.rtp_port == 0:
            call.rtp_port = self._alloc_port()
        if codecs is None:
            codecs = [(_CODEC_PT[c], c) for c in self.cfg.codecs]
        host, port = self._advertised(call)
        sdp = sdpmod.build_sdp(host, port, codecs, DTMF_PT if not call.negotiated
                               or call.negotiated.dtmf_pt is not None else None, direction,
                               session_id=call.session_id, version=call.sdp_version)
        call.sdp_version += 1
        return sdp

    def _advertised(self, call: SipCall) -> tuple[str, int]:
        if self.advertise_media is not None:
            return self.advertise_media(call.rtp_port)
        return self.contact_host, call.rtp_port

    def _answer_sdp(self, call: SipCall, neg: sdpmod.Negotiated, rejected=None) -> bytes:
        if call.rtp_port == 0:
            call.rtp_port = self._alloc_port()
        host, port = self._advertised(call)
        body = sdpmod.build_sdp(host, port, [(neg.payload_type, neg.codec)],
                                neg.dtmf_pt, neg.direction, session_id=call.session_id,
                                version=call.sdp_version, rejected=rejected)
        call.sdp_version += 1
        return body

    def _end(self, call: SipCall, cause: str) -> None:
        call.state = "ended"
        if call.rtp is not None:
            call.rtp.close()
        self._ports_in_use.discard(call.rtp_port)
        self.calls.pop(call.call_id, None)
        self._recently_ended[call.call_id] = call
        while len(self._recently_ended) > 16:
            self._recently_ended.pop(next(iter(self._recently_ended)))
        call.mark_ended(cause)
        if not self.calls:
            if self.registered or not self.registrar:
                self.set_state("idle", cause)
            elif self.last_register_status is not None:  # a failed registration stays visible
                self.set_state("error", f"registration failed: {self.last_register_status}")
            else:
                self.set_state("down", cause)

    async def _clock(self) -> None:
        """20 ms media clock for every call on the line (absolute schedule: no drift)."""
        loop = asyncio.get_running_loop()
        period = 0.02
        next_at = loop.time()
        while self.calls:
            for call in list(self.calls.values()):
                if call.rtp is not None and not call.ended.is_set():
                    try:
                        call.rtp.tick()
                    except Exception:   # one bad call must not stop the others' audio
                        log.exception("media tick failed for %s", call.call_id)
            next_at += period
            delay = next_at - loop.time()
            if delay < -0.2:          # the loop stalled: resynchronise instead of bursting
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))

    # ---- incoming requests ---------------------------------------------------------------
    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        if req.method != "ACK" and not self.gate.allowed(addr):
            if self.gate.may_reject(addr):
                self.endpoint.respond(req, make_response(req, 403, to_tag=new_tag()), addr)
            return
        if req.method not in ("ACK", "CANCEL"):
            required = [t.strip() for v in req.get_all("Require") for t in v.split(",") if t.strip()]
            if required:  # §8.2.2.3: we support no extension a request can require
                resp = make_response(req, 420, to_tag=new_tag())
                resp.add("Unsupported", ", ".join(required))
                self.endpoint.respond(req, resp, addr)
                return
        handler = getattr(self, f"_in_{req.method.lower()}", None)
        if handler is None:
            if req.method == "ACK":
                return
            resp = make_response(req, 501 if req.method not in ("REGISTER", "SUBSCRIBE", "MESSAGE", "UPDATE",
                                                                  "PRACK", "PUBLISH", "REFER") else 405,
                                 to_tag=new_tag())
            resp.add("Allow", ALLOW)
            self.endpoint.respond(req, resp, addr)
            return
        try:
            result = handler(req, addr)
            if asyncio.iscoroutine(result):
                task = asyncio.create_task(result)
                self._tasks.append(task)
                task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
        except SipParseError as exc:
            self.endpoint.respond(req, make_response(req, 400, f"Bad Request ({exc})"[:60]), addr)

    def _note_transport(self, dialog: Dialog) -> None:
        """In-dialog requests follow the transport the far end's URI asks for (§18.1.1, RFC 3263)."""
        hop = NameAddr.parse(dialog.route_set[0]).uri if dialog.route_set else dialog.remote_target
        if (hop.params.get("transport") or "").lower() == "tcp" and self.endpoint is not None:
            self.endpoint.prefer_tcp(hop.hostport())

    def _spawn(self, coro) -> asyncio.Task:
        """A background task the line keeps a reference to (and cancels on stop)."""
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)
        return task

    def _in_options(self, req: SipMessage, addr) -> None:
        resp = make_response(req, 200, to_tag=new_tag())
        resp.add("Allow", ALLOW)
        resp.add("Accept", "application/sdp")
        resp.add("Contact", self.contact)
        self.endpoint.respond(req, resp, addr)

    def _in_invite(self, req: SipMessage, addr) -> None:
        to = NameAddr.parse(req.get("To") or "")
        call = self.calls.get(req.call_id)
        if to.tag:
            if call is None or call.dialog is None or call.dialog.local_tag != to.tag:
                self.endpoint.respond(req, make_response(req, 481), addr)
                return
            self._reinvite(call, req, addr)
            return
        if call is not None:
            return                                     # a retransmission the transaction missed
        active = [c for c in self.calls.values() if not c.ended.is_set()]
        if len(active) >= self.cfg.max_calls:
            self.endpoint.respond(req, make_response(req, 486, to_tag=new_tag()), addr)
            return
        neg = None
        if req.body:
            ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/sdp":
                self.endpoint.respond(req, make_response(req, 415, to_tag=new_tag()), addr)
                return
            try:
                offer = sdpmod.parse_sdp(req.body)
                neg = sdpmod.negotiate(offer, tuple(self.cfg.codecs))
            except sdpmod.SdpError as exc:
                resp = make_response(req, 488, to_tag=new_tag())
                resp.add("Warning", f'304 {self.contact_host} "{exc}"'[:120])
                self.endpoint.respond(req, resp, addr)
                return
        frm = NameAddr.parse(req.get("From") or "")
        caller = frm.uri.user or str(frm.uri)
        call = SipCall(self, "inbound", caller, req.call_id)
        call.invite, call.invite_addr = req, addr
        call.dialog = Dialog.as_uas(req, call.local_tag)
        self._note_transport(call.dialog)
        call.negotiated = neg
        call._offer = req.body and sdpmod.parse_sdp(req.body)
        call.display_name = frm.display
        call._learn_peer(req)
        self.calls[req.call_id] = call
        self.endpoint.respond(req, make_response(req, 100), addr)
        ringing = make_response(req, 180, to_tag=call.local_tag)
        ringing.add("Contact", self.contact)
        self.endpoint.respond(req, ringing, addr)
        call.state = "early"
        self.set_state("ringing", caller)
        self.emit(LineEvent("ring", {"caller_id": caller, "display_name": frm.display, "call": call},
                            call.call_id))

    async def _answer(self, call: SipCall) -> None:
        if call.direction != "inbound" or call.state not in ("early", "offered"):
            if call.ended.is_set():
                raise LineError(f"{self.name}: call {call.call_id} already ended ({call.end_cause})")
            return
        req, addr = call.invite, call.invite_addr
        call.state = "answering"
        if call.negotiated is not None:
            offer = call._offer
            body = self._answer_sdp(call, call.negotiated,
                                    rejected=offer.other_media if offer else None)
            await self._start_media(call, call.negotiated)
        else:                                          # no offer: we offer in the 200, answer in ACK
            body = self._local_sdp(call)
            call._pending_offer_in_ack = True
        resp = make_response(req, 200, to_tag=call.local_tag, body=body)
        resp.add("Contact", self.contact)
        resp.add("Allow", ALLOW)
        self.endpoint.respond(req, resp, addr)
        call.answered_at = time.time()
        self.set_state("in_call", call.remote)
        call.events.put_nowait(LineEvent("answered", {"direction": "inbound"}, call.call_id))
        self._spawn(self._await_ack(call))

    async def _await_ack(self, call: SipCall) -> None:
        try:
            await asyncio.wait_for(call._confirmed.wait(), 64 * self.cfg.t1_ms / 1000.0 + 1)
        except asyncio.TimeoutError:
            if not call.ended.is_set():                # §13.3.1.4: no ACK, end the dialog with BYE
                self._end(call, "no-ack")
                await self._send_bye(call)

    def _in_ack(self, req: SipMessage, addr) -> None:
        call = self.calls.get(req.call_id)
        if call is None or call.state not in ("answering", "confirmed"):
            return
        if call._pending_offer_in_ack and req.body:
            try:
                neg = sdpmod.negotiate(sdpmod.parse_sdp(req.body), tuple(self.cfg.codecs))
            except sdpmod.SdpError:
                self._spawn(self._hangup(call, "bad-sdp"))
                return
            call._pending_offer_in_ack = False
            self._spawn(self._start_media(call, neg))
        call.state = "confirmed"
        call._confirmed.set()

    def _in_cancel(self, req: SipMessage, addr) -> None:
        call = self.calls.get(req.call_id)
        if call is None or call.invite is None or call.direction != "inbound":
            self.endpoint.respond(req, make_response(req, 481), addr)
            return
        self.endpoint.respond(req, make_response(req, 200, to_tag=call.local_tag), addr)
        if call.state in ("early", "offered"):
            self.endpoint.respond(call.invite, make_response(call.invite, 487, to_tag=call.local_tag),
                                  call.invite_addr)
            self._end(call, "cancelled")

    def _in_bye(self, req: SipMessage, addr) -> None:
        call = self.calls.get(req.call_id)
        if call is None or call.dialog is None or NameAddr.parse(req.get("To") or "").tag != call.dialog.local_tag:
            self.endpoint.respond(req, make_response(req, 481), addr)
            return
        self.endpoint.respond(req, make_response(req, 200), addr)
        self._end(call, "remote")

    def _in_info(self, req: SipMessage, addr) -> None:
        """SIP INFO DTMF (application/dtmf-relay), used by some ATAs instead of RFC 4733."""
        call = self.calls.get(req.call_id)
        if call is None:
            self.endpoint.respond(req, make_response(req, 481), addr)
            return
        self.endpoint.respond(req, make_response(req, 200), addr)
        text = req.body.decode("utf-8", "replace")
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        digit = fields.get("Signal", "").strip()
        if len(digit) == 1 and digit.upper() in "0123456789*#ABCD":
            dur = fields.get("Duration", "0").strip()
            call.events.put_nowait(LineEvent("dtmf", {"digit": digit.upper(),
                                                      "duration_ms": int(dur) if dur.isdigit() else 0},
                                             call.call_id))

    def _in_notify(self, req: SipMessage, addr) -> None:
        # a transferee may hang up before its final NOTIFY (PJSIP does): the REFER subscription
        # outlives the dialog's INVITE usage (RFC 5057), so recently ended calls still take it
        call = self.calls.get(req.call_id) or self._recently_ended.get(req.call_id)
        if call is None:
            self.endpoint.respond(req, make_response(req, 481), addr)
            return
        event = (req.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self.endpoint.respond(req, make_response(req, 489), addr)
            return
        self.endpoint.respond(req, make_response(req, 200), addr)
        call._notify.put_nowait(req.body.decode("utf-8", "replace"))

    def _reinvite(self, call: SipCall, req: SipMessage, addr) -> None:
        """Hold/unhold or a media change (RFC 3264 §8; RFC 6337 for hold)."""
        if req.cseq[0] <= call.dialog.remote_cseq:
            self.endpoint.respond(req, make_response(req, 500, "Out Of Order"), addr)
            return
        call.dialog.remote_cseq = req.cseq[0]
        contact = req.get("Contact")
        if contact:
            call.dialog.remote_target = NameAddr.parse(contact).uri
        if req.body:
            try:
                offer = sdpmod.parse_sdp(req.body)
                neg = sdpmod.negotiate(offer, tuple(self.cfg.codecs))
            except sdpmod.SdpError:
                self.endpoint.respond(req, make_response(req, 488), addr)
                return
            call.on_hold = neg.direction in ("recvonly", "inactive")
            if call.rtp is not None:
                call.rtp.update_remote((neg.remote_address, neg.remote_port), neg.codec, neg.payload_type,
                                       neg.dtmf_pt)
                call.rtp.send_enabled = neg.direction in ("sendrecv", "sendonly")
            call.negotiated = neg
            body = self._answer_sdp(call, neg, rejected=offer.other_media)
        else:
            body = self._local_sdp(call)
            call._pending_offer_in_ack = True
        resp = make_response(req, 200, body=body)
        resp.add("Contact", self.contact)
        self.endpoint.respond(req, resp, addr)
        call.events.put_nowait(LineEvent("state", {"state": "hold" if call.on_hold else "active"},
                                         call.call_id))

    def _on_stray_response(self, resp: SipMessage, addr) -> None:
        """A 2xx to INVITE repeated after the transaction ended: our ACK was lost, send it again."""
        try:
            num, method = resp.cseq
        except SipParseError:
            return
        call = self.calls.get(resp.call_id)
        if method == "INVITE" and 200 <= resp.status < 300 and call is not None and call.dialog:
            ack, dest = call.dialog.request("ACK", self.contact_host, self.local_port, self.contact, cseq=num)
            self.endpoint.send(ack, dest)

    # ---- outgoing calls ------------------------------------------------------------------
    def _target_uri(self, number: str) -> SipUri:
        if number.startswith(("sip:", "sips:")):
            return SipUri.parse(number)
        if self.registrar is None:
            raise LineError(f"{self.name}: cannot dial {number!r} without a registrar; give a sip: URI")
        host, port = self.registrar
        return SipUri(user=number, host=host, port=port if port != 5060 else None)

    async def dial(self, number: str, timeout_s: float = 60.0) -> SipCall:
        return await self._dial(number, timeout_s)

    async def _dial(self, number: str, timeout_s: float, consult: bool = False) -> SipCall:
        if self.endpoint is None:
            raise LineError(f"{self.name}: line not started")
        active = [c for c in self.calls.values() if not c.ended.is_set() and not c.consult]
        if len(active) >= self.cfg.max_calls + consult:
            raise LineError(f"{self.name}: busy (max_calls={self.cfg.max_calls})")
        target = self._target_uri(number)
        dest = (self.registrar if self.registrar else target.hostport())
        if not self.registrar and (target.params.get("transport") or "").lower() == "tcp":
            if not self.endpoint.tcp:
                raise LineError(f"{self.name}: {number!r} asks for TCP, which this line does not have")
            self.endpoint.prefer_tcp(dest)
        call_id = os.urandom(10).hex() + "@" + self.contact_host
        call = SipCall(self, "outbound", number, call_id)
        call.consult = consult
        self.calls[call_id] = call
        invite = self._new_request("INVITE", str(target), f"<{target}>", call_id, 1, call.local_tag)
        invite.add("Allow", ALLOW)
        invite.body = self._local_sdp(call)
        invite.set("Content-Type", "application/sdp")
        call.invite = invite
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s

        def provisional(resp: SipMessage) -> None:
            if resp.status in (180, 183) and call.state != "early":
                call.state = "early"
                self.emit(LineEvent("progress", {"status": "ringing"}, call_id))

        try:
            tries = 0
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise LineError("no-answer")
                txn = asyncio.ensure_future(self.endpoint.request(invite, dest, provisional, remaining))
                ender = asyncio.ensure_future(call.ended.wait())
                try:
                    await asyncio.wait({txn, ender}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ender.cancel()
                if not txn.done():                     # ringing too long or hung up: CANCEL (§9.1)
                    await self._cancel(invite, dest)
                    try:
                        await asyncio.wait_for(txn, 64 * self.cfg.t1_ms / 1000.0)
                    except asyncio.TimeoutError:
                        txn.cancel()
                    if txn.done() and not txn.cancelled() and 200 <= txn.result().status < 300:
                        resp = txn.result()            # answered as we cancelled: take it and end it
                        call.dialog = Dialog.as_uac(invite, resp)
                        ack, ack_dest = call.dialog.request("ACK", self.contact_host, self.local_port,
                                                            self.contact, cseq=invite.cseq[0])
                        self.endpoint.send(ack, ack_dest)
                        await self._send_bye(call)
                    raise LineError("cancelled" if call.ended.is_set() else "no-answer")
                resp = txn.result()
                if resp.status in (401, 407) and tries < 2 and self._authorize(invite, resp):
                    tries += 1
                    continue
                break
            if 200 <= resp.status < 300:
                await self._confirm_outbound(call, invite, resp, dest)
                return call
            if resp.status in (486, 600):
                self.emit(LineEvent("progress", {"status": "busy"}, call_id))
                raise LineError("busy")
            if resp.status in (408, 480, 487):
                self.emit(LineEvent("progress", {"status": "no-answer"}, call_id))
                raise LineError("no-answer")
            self.emit(LineEvent("progress", {"status": "failed", "code": resp.status}, call_id))
            raise LineError(f"failed: {resp.status} {resp.reason}")
        except BaseException:
            if not call.ended.is_set() and call.state != "confirmed":
                self._end(call, "failed")
            raise

    async def _confirm_outbound(self, call: SipCall, invite: SipMessage, resp: SipMessage, dest) -> None:
        call.dialog = Dialog.as_uac(invite, resp)
        self._note_transport(call.dialog)
        call._learn_peer(resp)
        ack, ack_dest = call.dialog.request("ACK", self.contact_host, self.local_port, self.contact,
                                            cseq=invite.cseq[0])
        for name in ("Authorization", "Proxy-Authorization"):
            if invite.get(name):
                ack.set(name, invite.get(name) or "")
        self.endpoint.send(ack, ack_dest)
        call.state = "confirmed"
        call._confirmed.set()
        try:
            neg = sdpmod.negotiate(sdpmod.parse_sdp(resp.body), tuple(self.cfg.codecs))
        except sdpmod.SdpError as exc:
            await self._hangup(call, "bad-sdp")
            raise LineError(f"far end answered with unusable SDP: {exc}") from exc
        await self._start_media(call, neg)
        call.answered_at = time.time()
        self.set_state("in_call", call.remote)
        call.events.put_nowait(LineEvent("answered", {"direction": "outbound"}, call.call_id))

    async def _cancel(self, invite: SipMessage, dest) -> None:
        cancel = SipMessage(method="CANCEL", uri=invite.uri)
        cancel.add("Via", invite.get_all("Via")[0])
        for r in invite.get_all("Route"):
            cancel.add("Route", r)
        cancel.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            cancel.add(name, invite.get(name) or "")
        cancel.add("CSeq", f"{invite.cseq[0]} CANCEL")
        # CANCEL's transaction shares the INVITE's branch; its response matches (branch, CANCEL)
        try:
            await asyncio.wait_for(self.endpoint.request(cancel, dest), 64 * self.cfg.t1_ms / 1000.0)
        except asyncio.TimeoutError:
            pass

    # ---- ending and transferring ---------------------------------------------------------
    async def _send_bye(self, call: SipCall) -> SipMessage | None:
        if call.dialog is None or self.endpoint is None:
            return None
        bye, dest = call.dialog.request("BYE", self.contact_host, self.local_port, self.contact)
        bye.add("User-Agent", self.cfg.user_agent)
        return await self.endpoint.request(bye, dest)

    async def _hangup(self, call: SipCall, cause: str) -> None:
        if call.ended.is_set() or call.state == "ended":
            return
        call.flush_playout()
        if call.direction == "inbound" and call.state in ("early", "offered"):
            self.endpoint.respond(call.invite, make_response(call.invite, 486 if cause == "busy" else 603,
                                                              to_tag=call.local_tag), call.invite_addr)
            self._end(call, cause)
            return
        if call.direction == "outbound" and call.state != "confirmed":
            self._end(call, cause)   # dial() sees ended and CANCELs
            return
        state = call.state
        self._end(call, cause)
        if state in ("confirmed", "answering"):
            resp = await self._send_bye(call)
            if resp is not None and resp.status in (401, 407) and call.dialog:
                bye, dest = call.dialog.request("BYE", self.contact_host, self.local_port, self.contact)
                if self._authorize(bye, resp):
                    await self.endpoint.request(bye, dest)

    async def _transfer(self, call: SipCall, target: str, mode: str, timeout_s: float = 30.0,
                        refer_to: str | None = None, emit_mode: str = "blind") -> bool:
        """Blind transfer (RFC 3515 REFER, RFC 5589): wait for the NOTIFY saying 2xx, then BYE.
        `refer_to` (attended transfer) replaces the Refer-To built from `target`."""
        if mode != "blind":
            raise LineError(f"{self.name}: transfer mode {mode!r}: expected 'blind' or 'warm'")
        if call.dialog is None or call.state != "confirmed" or call.ended.is_set():
            raise LineError(f"{self.name}: transfer needs a connected call")
        if refer_to is None:
            refer_to = f"<{self._target_uri(target)}>"
        refer, dest = call.dialog.request("REFER", self.contact_host, self.local_port, self.contact)
        refer.add("Refer-To", refer_to)
        refer.add("Referred-By", self.aor)
        refer.add("User-Agent", self.cfg.user_agent)
        self._emit_transfer(call, target, "trying", "REFER sent", emit_mode)
        resp = await self.endpoint.request(refer, dest)
        if resp.status in (401, 407) and self._authorize(refer, resp):
            resp = await self.endpoint.request(refer, dest)
        if not 200 <= resp.status < 300:
            self._emit_transfer(call, target, "failed", f"REFER answered {resp.status} {resp.reason}", emit_mode)
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            if call.ended.is_set():  # hung up by the transferee: its final NOTIFY may still come
                deadline = min(deadline, loop.time() + 2.0) if call._notify.empty() else deadline
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._emit_transfer(call, target, "failed", "no final NOTIFY", emit_mode)
                return False
            try:
                frag = await asyncio.wait_for(call._notify.get(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                continue
            first = frag.strip().splitlines()[0] if frag.strip() else ""
            parts = first.split()
            code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if 100 <= code < 200:
                self._emit_transfer(call, target, "trying", first, emit_mode)
                continue
            if 200 <= code < 300:
                self._emit_transfer(call, target, "ok", first, emit_mode)
                await self._hangup(call, "transferred")
                return True
            self._emit_transfer(call, target, "failed", first or "bad NOTIFY", emit_mode)
            return False

    async def _attended_transfer(self, call: SipCall, target: str, briefing: str | None,
                                 timeout_s: float = 30.0) -> bool:
        """Attended transfer (RFC 5589 §7): call the target (consultation), brief it if a speaker is
        set, then REFER the caller to it with Replaces naming the consultation dialog, so the
        caller's new call takes its place. Where a peer does not allow it (the caller's Allow lacks
        REFER, or the target does not support `replaces`), the consultation ends and the transfer
        is blind."""
        if call.dialog is None or call.state != "confirmed" or call.ended.is_set():
            raise LineError(f"{self.name}: transfer needs a connected call")
        if call.remote_allow is not None and "REFER" not in call.remote_allow:
            raise LineError(f"{self.name}: the caller's UA does not allow REFER; cannot transfer")
        self._emit_transfer(call, target, "trying", "consultation call", "attended")
        try:
            consult = await self._dial(target, timeout_s, consult=True)
        except LineError as exc:
            self._emit_transfer(call, target, "failed", f"consultation call: {exc}", "attended")
            return False
        try:
            if briefing and self.briefing_audio is not None:
                try:
                    pcm = await self.briefing_audio(briefing)
                    consult.play(pcm)
                    end = asyncio.get_running_loop().time() + len(pcm) / 8000.0 + 2.0
                    while consult.queued_playout_ms > 0 and not consult.ended.is_set() \
                            and asyncio.get_running_loop().time() < end:
                        await asyncio.sleep(0.05)
                except Exception as exc:  # noqa: BLE001 - a TTS failure must not lose the caller
                    log.warning("%s: briefing failed: %s", self.name, exc)
            if consult.ended.is_set() or call.ended.is_set():
                self._emit_transfer(call, target, "failed", "a party hung up during the consultation",
                                    "attended")
                return False
            if "replaces" not in consult.remote_supported:
                self._emit_transfer(call, target, "trying", "target does not support Replaces: blind",
                                    "attended")
                await self._hangup(consult, "consulted")
                await asyncio.sleep(0.2)  # let the target see the BYE before the caller's INVITE
                return await self._transfer(call, target, "blind", timeout_s, emit_mode="attended")
            d = consult.dialog
            replaces = quote(f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}", safe="")
            uri = consult.invite.uri if consult.invite is not None else str(d.remote_target)
            ok = await self._transfer(call, target, "blind", timeout_s, refer_to=f"<{uri}?Replaces={replaces}>",
                                      emit_mode="attended")
            if ok:  # the target ends the replaced consultation itself; make sure it is gone
                try:
                    await asyncio.wait_for(consult.ended.wait(), 64 * self.cfg.t1_ms / 1000.0)
                except asyncio.TimeoutError:
                    pass
            return ok
        finally:
            if not consult.ended.is_set():
                await self._hangup(consult, "consulted")

    def _emit_transfer(self, call: SipCall, target: str, status: str, detail: str, mode: str = "blind") -> None:
        call.events.put_nowait(LineEvent("transfer", {"target": target, "mode": mode, "status": status,
                                                      "detail": detail}, call.call_id))

    # ---- registration --------------------------------------------------------------------
    async def _register(self, expires: int) -> SipMessage:
        host, port = self.registrar
        self._reg_cseq += 1
        uri = f"sip:{self.domain}" + (f":{port}" if port != 5060 and self.domain == host else "")
        req = self._new_request("REGISTER", uri, self.aor, self._reg_call_id, self._reg_cseq, self._reg_tag)
        req.add("Expires", str(expires))
        req.add("Allow", ALLOW)
        resp = await self.endpoint.request(req, self.registrar)
        tries = 0
        while resp.status in (401, 407) and tries < 2 and self._authorize(req, resp):
            tries += 1
            self._reg_cseq = req.cseq[0]
            resp = await self.endpoint.request(req, self.registrar)
        self.last_register_status = resp.status
        if expires == 0:
            self.registered = False
            self._registered_event.clear()
        return resp

    def _granted_expires(self, resp: SipMessage, asked: int) -> int:
        for c in resp.get_all("Contact"):
            try:
                na = NameAddr.parse(c)
            except SipParseError:
                continue
            if na.uri.user == self.username and na.uri.port == self.local_port and "expires" in na.params:
                v = na.params["expires"] or ""
                if v.isdigit():
                    return int(v)
        v = resp.get("Expires") or ""
        return int(v) if v.isdigit() else asked

    async def _register_loop(self) -> None:
        backoff = 2.0
        while True:
            try:
                resp = await self._register(self.cfg.register_expires_s)
            except (SipParseError, OSError) as exc:
                log.warning("%s: REGISTER failed: %s", self.name, exc)
                resp = None
            if resp is not None and 200 <= resp.status < 300:
                granted = self._granted_expires(resp, self.cfg.register_expires_s)
                if not self.registered:
                    log.info("%s: registered with %s:%d for %d s", self.name, *self.registrar, granted)
                self.registered = True
                self.registration_expires_at = time.time() + granted
                self._registered_event.set()
                if not self.calls:
                    self.set_state("idle", "registered")
                backoff = 2.0
                await asyncio.sleep(max(1.0, min(granted * 0.8, granted - 5)))   # refresh before expiry
            else:
                status = resp.status if resp is not None else "error"
                if self.registered or self.state != "error":
                    log.warning("%s: registration failed (%s)", self.name, status)
                self.registered = False
                self._registered_event.clear()
                self.set_state("error", f"registration failed: {status}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 300.0)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.keepalive_s)
            host, port = self.registrar
            req = self._new_request("OPTIONS", f"sip:{host}:{port}", f"<sip:{host}:{port}>",
                                    os.urandom(8).hex(), 1, new_tag())
            try:
                await self.endpoint.request(req, self.registrar)
            except (SipParseError, OSError):
                pass
