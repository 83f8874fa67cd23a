"""MQTT 5 with a fall-back to 3.1.1, and TLS with client certificates, against a real mosquitto.

mosquitto 2 speaks both MQTT versions and cannot be told to refuse MQTT 5, so the fall-back is
tested through a relay in front of it that behaves as a 3.1.1-only broker (mosquitto 1.4, older
cloud brokers) does on an MQTT 5 CONNECT: CONNACK "unacceptable protocol version" (3.1.1 return
code 1), then close. Everything else goes through to mosquitto unchanged."""
from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from fleet_helpers import acl_tls_broker, cfg, wait_for

from appliance.fleet import Fleet, TlsConfig
from appliance.fleet.mosquitto import make_client_cert, make_tls


class Mqtt311OnlyRelay:
    """127.0.0.1 relay to `upstream_port` that refuses MQTT 5 CONNECTs as a 3.1.1 broker does."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.levels: list[int] = []  # protocol level of every CONNECT seen (4 = 3.1.1, 5 = MQTT 5)
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_packet(conn) -> tuple[bytes, int]:
        head = conn.recv(1, socket.MSG_WAITALL)
        length, shift, raw = 0, 0, b""
        while True:
            b = conn.recv(1, socket.MSG_WAITALL)
            raw += b
            length |= (b[0] & 0x7F) << shift
            shift += 7
            if not b[0] & 0x80:
                break
        return head + raw + conn.recv(length, socket.MSG_WAITALL), len(head + raw)

    def _serve(self, conn):
        try:
            packet, header_len = self._read_packet(conn)
        except (OSError, IndexError):
            conn.close()
            return
        # CONNECT variable header: protocol name (2-byte length + b"MQTT"), then the level byte
        level = packet[header_len + 6]
        self.levels.append(level)
        if packet[0] >> 4 != 1 or level != 4:
            conn.sendall(b"\x20\x02\x00\x01")  # CONNACK, return code 1: unacceptable protocol version
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", self.upstream_port))
        self._open.append(up)
        up.sendall(packet)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.sock.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass


def _deliver_one(fleet: Fleet, sub, box_id: str) -> tuple[str, str | None]:
    async def main():
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected), fleet.status
        event_id = fleet.publish_event("line.state", {"line": "sip1", "state": "idle"})
        assert await wait_for(lambda: any(e["id"] == event_id for e in sub.json_on(f"appliance/{box_id}/event/")))
        protocol = fleet.status.protocol
        await fleet.stop()
        return event_id, protocol

    return asyncio.run(main())


def test_mqtt5_first_and_311_when_configured(broker, collector_factory, tmp_path):
    sub = collector_factory(broker.port, topics=("appliance/#",))
    _, protocol = _deliver_one(Fleet(cfg(broker.port), "v5box", "1", tmp_path / "a"), sub, "v5box")
    assert protocol == "5"
    _, protocol = _deliver_one(Fleet(cfg(broker.port, protocol="3.1.1"), "v3box", "1", tmp_path / "b"), sub, "v3box")
    assert protocol == "3.1.1"
    # the last will / offline works in both versions
    assert [p for _, p in sub.on("appliance/v3box/status")] == [b"online", b"offline"]


def test_falls_back_to_311_on_a_broker_without_mqtt5(broker, collector_factory, tmp_path):
    relay = Mqtt311OnlyRelay(broker.port)
    try:
        sub = collector_factory(broker.port, topics=("appliance/#",))
        _, protocol = _deliver_one(Fleet(cfg(relay.port), "oldbroker", "1", tmp_path / "s"), sub, "oldbroker")
        assert protocol == "3.1.1"
        assert relay.levels[:2] == [5, 4]  # tried MQTT 5 first, then 3.1.1
        assert [p for _, p in sub.on("appliance/oldbroker/status")] == [b"online", b"offline"]
        # a box configured for MQTT 5 only does not fall back: it reports why it cannot connect
        relay.levels.clear()

        async def strict():
            fleet = Fleet(cfg(relay.port, protocol="5"), "strict", "1", tmp_path / "t")
            await fleet.start()
            assert await wait_for(lambda: len(relay.levels) >= 2 and fleet.status.last_error)
            status = fleet.status
            await fleet.stop()
            return status

        status = asyncio.run(strict())
        assert not status.connected and set(relay.levels) == {5}
        assert "protocol" in status.last_error.lower(), status.last_error
    finally:
        relay.close()


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory):
    yield from acl_tls_broker(tmp_path_factory.mktemp("mtls"), client_certs=True)


def test_tls_client_certificate_is_the_identity(mtls_broker, collector_factory, tmp_path):
    """The broker demands a client certificate; its CN (the device id) is the user name of the ACL."""
    tls = mtls_broker.tls
    sub = collector_factory(mtls_broker.port, topics=("appliance/#",))  # anonymous plain listener
    cert = make_client_cert(tls, tmp_path / "certs", "certbox")
    fleet = Fleet(cfg(mtls_broker.mtls_port, tls=TlsConfig(ca_file=str(tls["ca"]), cert_file=str(cert["cert"]),
                                                            key_file=str(cert["key"]))), "certbox", "1",
                  tmp_path / "s")
    _deliver_one(fleet, sub, "certbox")
    assert [p for _, p in sub.on("appliance/certbox/status")] == [b"online", b"offline"]

    async def refused(fleet):
        await fleet.start()
        fleet.publish_event("turn", {"n": 1})
        assert await wait_for(lambda: fleet.status.last_error or fleet.status.connected)
        await asyncio.sleep(1.0)
        status = fleet.status
        await fleet.stop()
        return status

    # no client certificate: the TLS handshake fails, the event stays in the outbox
    status = asyncio.run(refused(Fleet(cfg(mtls_broker.mtls_port, tls=TlsConfig(ca_file=str(tls["ca"]))),
                                       "nocert", "1", tmp_path / "n")))
    assert not status.connected and status.delivered == 0 and status.outbox_depth == 1 and status.last_error
    # a certificate from another CA: refused too
    other = make_tls(tmp_path / "other")
    rogue = make_client_cert(other, tmp_path / "rogue", "certbox")
    status = asyncio.run(refused(Fleet(cfg(mtls_broker.mtls_port, tls=TlsConfig(
        ca_file=str(tls["ca"]), cert_file=str(rogue["cert"]), key_file=str(rogue["key"]))), "certbox", "1",
        tmp_path / "r")))
    assert not status.connected and status.delivered == 0 and status.outbox_depth == 1
    # a genuine certificate for box2 cannot speak for certbox: the ACL keys on the certificate's CN
    box2 = make_client_cert(tls, tmp_path / "certs", "box2")
    status = asyncio.run(refused(Fleet(cfg(mtls_broker.mtls_port, root="appliance/certbox/", tls=TlsConfig(
        ca_file=str(tls["ca"]), cert_file=str(box2["cert"]), key_file=str(box2["key"]))), "box2", "1",
        tmp_path / "b2")))
    assert status.delivered == 0 and status.outbox_depth == 1
    assert len(sub.on("appliance/certbox/event/")) == 1 and json.loads(sub.on("appliance/certbox/event/")[0][1])
