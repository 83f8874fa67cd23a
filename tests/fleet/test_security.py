"""Password, TLS (a CA made here with openssl) and the example ACL of firmware-config/ on a real mosquitto."""
from __future__ import annotations

import asyncio
import json

import pytest
from fleet_helpers import acl_tls_broker, cfg, wait_for

from appliance.fleet import Fleet, TlsConfig
from appliance.fleet.mosquitto import make_tls

USERS = {"box1": "secret-1", "box2": "secret-2", "fleet-ops": "ops-secret"}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    yield from acl_tls_broker(tmp_path_factory.mktemp("secure"), users=USERS)


def _roundtrip(fleet: Fleet, ops, box_id: str) -> None:
    """Start the box, send an event and a ping, see both (as the operator), stop."""

    async def main():
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected), fleet.status
        await asyncio.sleep(0.2)
        event_id = fleet.publish_event("call.started", {"line": "sip1"})
        ops.client.publish(f"appliance/{box_id}/cmd/ping", json.dumps({"id": f"ping-{box_id}"}), qos=1)
        assert await wait_for(lambda: ops.on(f"appliance/{box_id}/cmd/ping/result")
                              and ops.on(f"appliance/{box_id}/event/"))
        assert ops.json_on(f"appliance/{box_id}/event/")[0]["id"] == event_id
        assert ops.json_on(f"appliance/{box_id}/cmd/ping/result")[0]["ok"] is True
        await fleet.stop()

    asyncio.run(main())


def test_password_login_and_acl_allows_own_topics(secure_broker, collector_factory, tmp_path, monkeypatch):
    ops = collector_factory(secure_broker.auth_port, topics=("appliance/#",), username="fleet-ops",
                            password=USERS["fleet-ops"])
    monkeypatch.setenv("TEST_MQTT_PASSWORD", USERS["box1"])
    fleet = Fleet(cfg(secure_broker.auth_port, username="box1", password_env="TEST_MQTT_PASSWORD"),
                  "box1", "1", tmp_path / "box1")
    _roundtrip(fleet, ops, "box1")
    assert [p for _, p in ops.on("appliance/box1/status")][-1] == b"offline"


def test_wrong_password_is_refused_and_the_box_keeps_running(secure_broker, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_MQTT_PASSWORD", "wrong")

    async def main():
        fleet = Fleet(cfg(secure_broker.auth_port, username="box1", password_env="TEST_MQTT_PASSWORD"),
                      "box1", "1", tmp_path / "s")
        await fleet.start()
        fleet.publish_event("turn", {})
        assert await wait_for(lambda: fleet.status.last_error and "refused" in fleet.status.last_error)
        assert not fleet.status.connected and fleet.status.outbox_depth == 1
        await fleet.stop()

    asyncio.run(main())


def test_tls_with_own_ca(secure_broker, collector_factory, tmp_path):
    ops = collector_factory(secure_broker.port, topics=("appliance/#",))
    tls = TlsConfig(ca_file=str(secure_broker.tls["ca"]))
    fleet = Fleet(cfg(secure_broker.tls_port, tls=tls), "tlsbox", "1", tmp_path / "s")
    _roundtrip(fleet, ops, "tlsbox")


def test_tls_rejects_a_broker_signed_by_another_ca(secure_broker, tmp_path):
    other = make_tls(tmp_path / "other")

    async def main():
        fleet = Fleet(cfg(secure_broker.tls_port, tls=TlsConfig(ca_file=str(other["ca"]))), "tlsbox", "1",
                      tmp_path / "s")
        await fleet.start()
        assert await wait_for(lambda: fleet.status.last_error and "CERTIFICATE" in fleet.status.last_error.upper())
        assert not fleet.status.connected
        await fleet.stop()

    asyncio.run(main())


def test_acl_denies_another_box(secure_broker, collector_factory, tmp_path, monkeypatch):
    """box2 can neither read box1's commands and config, nor publish under box1's id."""
    ops = collector_factory(secure_broker.auth_port, topics=("appliance/#",), username="fleet-ops",
                            password=USERS["fleet-ops"])
    # box2 subscribing to box1's command and config topics: mosquitto 2.0 grants the subscription
    # but delivers nothing the ACL does not let box2 read (box2's own commands: the control)
    spy = collector_factory(secure_broker.auth_port, topics=("appliance/box1/cmd/+", "appliance/box1/config",
                                                             "appliance/box2/cmd/+"),
                            username="box2", password=USERS["box2"])
    ops.client.publish("appliance/box1/config", b"{}", qos=1, retain=True).wait_for_publish(5)
    ops.client.publish("appliance/box1/cmd/ping", json.dumps({"id": "x"}), qos=1).wait_for_publish(5)
    ops.client.publish("appliance/box2/cmd/ping", json.dumps({"id": "y"}), qos=1).wait_for_publish(5)
    assert spy.wait(lambda: spy.on("appliance/box2/cmd/ping"))
    # box2 publishing into box1's event and status topics: dropped by the broker
    _denied_publish(spy, "appliance/box1/event/turn", b'{"id": "forged"}')
    _denied_publish(spy, "appliance/box1/status", b"offline", retain=True)
    # the control: box2 under its own id (a fresh connection: the broker may have dropped the spy's)
    own = collector_factory(secure_broker.auth_port, topics=("appliance/box2/cmd/+",), username="box2",
                            password=USERS["box2"])
    own.client.publish("appliance/box2/event/turn", b'{"id": "own"}', qos=1).wait_for_publish(5)
    assert ops.wait(lambda: ops.on("appliance/box2/event/"))
    live_status = [m for m in ops.messages if m[0] == "appliance/box1/status" and not m[2]]
    assert not ops.on("appliance/box1/event/") and not live_status
    assert not spy.on("appliance/box1/")

    # A box logged in as box2 but configured with box1's topic root gets nowhere: mosquitto drops
    # the connection at its first denied publish (its `online` status), so nothing is delivered.
    monkeypatch.setenv("TEST_MQTT_PASSWORD", USERS["box2"])

    async def main():
        fleet = Fleet(cfg(secure_broker.auth_port, username="box2", password_env="TEST_MQTT_PASSWORD",
                          root="appliance/box1/"), "box2", "1", tmp_path / "impostor")
        await fleet.start()
        fleet.publish_event("turn", {"forged": True})
        await asyncio.sleep(1.0)
        status = fleet.status
        await fleet.stop()
        return status

    status = asyncio.run(main())
    assert not ops.on("appliance/box1/event/")
    assert status.delivered == 0 and not status.connected and status.outbox_depth == 1, status


def _denied_publish(collector, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish where the ACL forbids it. mosquitto either acknowledges and drops it, or drops the
    connection (both are refusals); what matters is checked by the subscribers afterwards."""
    try:
        collector.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    except RuntimeError:  # "not currently connected": the broker closed the connection
        pass
