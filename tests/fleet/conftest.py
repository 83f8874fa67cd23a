"""Fleet tests run against a real mosquitto started here, on free 127.0.0.1 ports."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from appliance.fleet.mosquitto import Mosquitto

from testutil import ACL_EXAMPLE, REPO  # noqa: F401

pytestmark = pytest.mark.peers

if shutil.which("mosquitto") is None:  # pragma: no cover
    pytest.skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)", allow_module_level=True)


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


class Collector:
    """A real MQTT subscriber (paho) that records every message; thread-safe waits."""

    def __init__(self, port, topics=("#",), client_id=None, clean=True, username=None, password=None, tls_ca=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.subacks: list = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=clean,
                                  protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, rcs, props=None: self.subacks.append(rcs)
        self.topics = topics
        self.client.on_connect = lambda c, u, f, rc, p=None: [c.subscribe(t, qos=1) for t in self.topics]
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: len(self.subacks) >= len(topics), 10)

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait(self, predicate, timeout_s=10.0) -> bool:
        end = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def on(self, topic_prefix):
        with self._cond:
            return [(t, p) for t, p, _ in self.messages if t.startswith(topic_prefix)]

    def json_on(self, topic_prefix):
        return [json.loads(p) for _, p in self.on(topic_prefix)]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collector_factory():
    made = []

    def make(*args, **kwargs):
        c = Collector(*args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
