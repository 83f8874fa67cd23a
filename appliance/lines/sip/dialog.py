"""SIP dialogs (RFC 3261 §12): identifiers, route set, CSeq, and building in-dialog requests."""
from __future__ import annotations

from dataclasses import dataclass, field

from .message import NameAddr, SipMessage, SipUri
from .transaction import new_branch


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str          # our From/To value without tag, e.g. '<sip:box@10.0.0.2>'
    remote_uri: str
    remote_target: SipUri   # the far end's Contact
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int = 0

    @classmethod
    def as_uas(cls, invite: SipMessage, local_tag: str) -> Dialog:
        contact = invite.get("Contact")
        frm = NameAddr.parse(invite.get("From") or "")
        to = NameAddr.parse(invite.get("To") or "")
        to.params.pop("tag", None)
        target = NameAddr.parse(contact).uri if contact else frm.uri
        return cls(invite.call_id, local_tag, frm.tag or "", str(to), _without_tag(frm),
                   target, list(invite.get_all("Record-Route")), 1, invite.cseq[0])

    @classmethod
    def as_uac(cls, invite: SipMessage, resp: SipMessage) -> Dialog:
        frm = NameAddr.parse(invite.get("From") or "")
        to = NameAddr.parse(resp.get("To") or "")
        contact = resp.get("Contact")
        target = NameAddr.parse(contact).uri if contact else SipUri.parse(invite.uri or "")
        return cls(invite.call_id, frm.tag or "", to.tag or "", _without_tag(frm), _without_tag(to),
                   target, list(reversed(resp.get_all("Record-Route"))), invite.cseq[0], 0)

    def matches(self, msg: SipMessage) -> bool:
        return msg.call_id == self.call_id

    def request(self, method: str, via_host: str, via_port: int, contact: str,
                cseq: int | None = None) -> tuple[SipMessage, tuple[str, int]]:
        """An in-dialog request and the address to send it to (§12.2.1.1, loose and strict routing)."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        routes = list(self.route_set)
        uri = str(self.remote_target)
        if routes:
            first = NameAddr.parse(routes[0]).uri
            if "lr" not in first.params:          # strict router: it takes the Request-URI
                uri = str(first)
                routes = routes[1:] + [f"<{self.remote_target}>"]
            dest = first.hostport()
        else:
            dest = self.remote_target.hostport()
        maddr = self.remote_target.params.get("maddr") if not self.route_set else None
        if maddr:
            dest = (maddr, dest[1])
        req = SipMessage(method=method, uri=uri)
        req.add("Via", f"SIP/2.0/UDP {via_host}:{via_port};branch={new_branch()};rport")
        for r in routes:
            req.add("Route", r)
        req.add("Max-Forwards", "70")
        req.add("From", f"{self.local_uri};tag={self.local_tag}")
        req.add("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri)
        req.add("Call-ID", self.call_id)
        req.add("CSeq", f"{cseq} {method}")
        req.add("Contact", contact)
        return req, dest


def _without_tag(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return str(NameAddr(addr.uri, addr.display, params))
