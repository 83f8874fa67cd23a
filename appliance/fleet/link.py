"""The MQTT link of one box: its own thread, reconnect with backoff, durable in-order event delivery.

One thread owns the paho client (network loop, callbacks) and the outbox: it persists events handed
over by `enqueue` (any thread, never blocks), sends stored events in order with QoS 1, at most
`inflight_max` unacknowledged, and deletes each on its PUBACK. A fresh paho client is made for each
connection so that nothing but the outbox decides what is re-sent after an outage.
"""
from __future__ import annotations

import collections
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import FleetConfig
from .outbox import Outbox

log = logging.getLogger("appliance.fleet")

_LOOP_S = 0.05  # network loop tick: bounds event latency when idle
_PERSIST_BATCH = 5000
_STABLE_S = 10.0  # a connection that lasted this long ends an outage


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


class Link:
    """A self-healing MQTT connection feeding from an Outbox. Thread-safe entry points:
    `enqueue`, `publish_now`, `start`, `stop`, and the read-only properties."""

    def __init__(self, cfg: FleetConfig, client_id: str, outbox: Outbox, will: Will,
                 password: str | None = None,
                 on_connect: Callable[[Link], None] | None = None,
                 on_message: Callable[[str, bytes], None] | None = None):
        self.cfg = cfg
        self.client_id = client_id
        self.outbox = outbox
        self.will = will
        self.password = password
        self._on_connect_cb = on_connect
        self._on_message_cb = on_message
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._pending_dropped = 0
        self._storing = 0  # events taken from _pending and not yet counted by the outbox
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None
        self._connected = False
        self._connack: int | None = None  # reason code value of the last CONNACK, None before it
        self._acks: collections.deque[tuple[int, bool]] = collections.deque()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._last_sent_seq = 0
        self._last_ack_at = 0.0
        self._outage_since: float | None = None
        self._protocol = "5" if cfg.protocol in ("auto", "5") else "3.1.1"
        self._final: list[tuple[str, bytes, int, bool]] = []
        self.connects = 0
        self.delivered = 0
        self.replayed = 0
        self.last_error: str | None = None
        self.protocol_in_use: str | None = None

    # -- any thread ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def depth(self) -> int:
        """Events not yet acknowledged by the broker (stored, being stored, handed over). Never
        less than the truth, so a wait for 0 (a flush before stopping) cannot end early."""
        return self.outbox.depth + self._storing + len(self._pending)

    @property
    def dropped(self) -> int:
        return self.outbox.dropped + self._pending_dropped

    def enqueue(self, topic: str, payload: bytes) -> None:
        """Hand an event over for durable delivery. O(1), no I/O, no lock."""
        self._pending.append((topic, payload))
        if len(self._pending) > self.outbox.max_events:  # the disk is stuck: bound memory as well
            self._pending.popleft()
            self._pending_dropped += 1

    def publish_now(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Best-effort publish (health, results, reports): False when not connected."""
        client = self._client
        if client is None or not self._connected:
            return False
        try:
            return client.publish(topic, payload, qos=qos, retain=retain).rc == 0
        except (ValueError, OSError) as exc:  # paho raises ValueError on a bad topic
            log.warning("fleet: publish to %s failed: %s", topic, exc)
            return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"fleet-link-{self.client_id}", daemon=True)
        self._thread.start()

    def stop(self, final: list[tuple[str, bytes, int, bool]] | None = None, timeout_s: float = 5.0) -> None:
        """Publish `final` (topic, payload, qos, retain) if connected, disconnect cleanly, store what
        is still pending, and close the outbox. Blocks up to `timeout_s` (call it off the event loop)."""
        self._final = list(final or [])
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._persist()
        self.outbox.close()

    # -- link thread ---------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            self._persist()
            try:
                up_s = self._session()
            except Exception as exc:  # a paho or broker oddity must never end the link thread
                log.exception("fleet: connection failed unexpectedly")
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._connected = False
                up_s = None
            if self._stop.is_set():
                break
            if up_s is not None and up_s >= _STABLE_S:  # a real session ended: retry soon
                delay = self.cfg.reconnect_min_s
                self._outage_since = time.monotonic()
                log.warning("fleet: lost the broker %s:%s (%s); storing events, reconnecting",
                            self.cfg.host, self.cfg.port, self.last_error)
            elif self._outage_since is None:  # log an outage once, not every retry
                self._outage_since = time.monotonic()
                log.warning("fleet: cannot %s the broker %s:%s (%s); storing events, retrying with backoff",
                            "reach" if up_s is None else "stay connected to", self.cfg.host, self.cfg.port,
                            self.last_error)
            # A session cut short (e.g. the broker drops us at once) does not reset the backoff.
            self._idle(delay * random.uniform(0.8, 1.2))  # jitter: a fleet must not reconnect in lockstep
            delay = min(delay * 2, self.cfg.reconnect_max_s)
        self._persist()

    def _idle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, 0.5))
            self._wake.clear()
            self._persist()

    def _persist(self) -> None:
        if self._pending_dropped:
            n = self._pending_dropped
            self.outbox.count_dropped(n)
            self._pending_dropped -= n
        while self._pending:
            # counted as being stored before they leave _pending and until the outbox counts them
            # (an event counted twice for a moment is harmless; one counted nowhere made a flush
            # before stopping end early, leaving the last events on disk until the next start)
            self._storing = min(len(self._pending), _PERSIST_BATCH)
            batch = [self._pending.popleft() for _ in range(self._storing)]
            try:
                self.outbox.append_many(batch)
            except Exception as exc:  # a broken disk must not kill the link; keep them in memory
                log.error("fleet: cannot store %d events: %s", len(batch), exc)
                self._pending.extendleft(reversed(batch))
                return
            finally:
                self._storing = 0

    def _make_client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        v5 = self._protocol == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else True)
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self.password)
        tls = self.cfg.tls
        if tls is not None:
            client.tls_set(ca_certs=tls.ca_file, certfile=tls.cert_file, keyfile=tls.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.will.topic, self.will.payload, qos=1, retain=self.will.retain)
        client.max_inflight_messages_set(self.cfg.inflight_max)
        client.max_queued_messages_set(0)
        client.connect_timeout = 10.0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _session(self) -> float | None:
        """One connection: connect, deliver until lost or stopped. Seconds it was up (None: never)."""
        import paho.mqtt.client as mqtt

        try:
            client = self._make_client()
        except (OSError, ValueError, ssl.SSLError) as exc:  # unreadable CA or key file
            self.last_error = f"TLS set-up: {exc}"
            return None
        self._connack = None
        self._acks.clear()
        self._inflight.clear()
        self._last_sent_seq = 0
        try:
            kwargs = {"clean_start": True} if self._protocol == "5" else {}
            client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, **kwargs)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        self._client = client
        deadline = time.monotonic() + max(10.0, self.cfg.keepalive_s)
        try:
            while self._connack is None and not self._stop.is_set():
                rc = client.loop(timeout=_LOOP_S)
                if self._connack is not None:
                    break  # the CONNACK came (a refusal may come with the close in one loop call)
                if rc != mqtt.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                    self.last_error = self.last_error or "no CONNACK"
                    self._maybe_fall_back(before_connack=True)
                    return None
            if not self._connected:
                return None
            return self._deliver(client)
        finally:
            self._connected = False
            self._client = None
            try:
                client.disconnect()
                client.loop(timeout=0.01)
            except Exception:  # socket already gone
                pass
            try:
                sock = client.socket()
                if sock is not None:
                    sock.close()
            except Exception:
                pass

    def _deliver(self, client) -> float:
        import paho.mqtt.client as mqtt

        connected_at = time.monotonic()
        self.connects += 1
        if self._on_connect_cb is not None:
            try:
                self._on_connect_cb(self)
            except Exception:
                log.exception("fleet: on-connect hook failed")
        next_purge = 0.0
        while self._connected and not self._stop.is_set():
            self._persist()
            now = time.monotonic()
            if self._outage_since is not None and now - connected_at >= _STABLE_S:
                log.warning("fleet: connected to %s:%s again (MQTT %s) after %.0f s",
                            self.cfg.host, self.cfg.port, self.protocol_in_use, connected_at - self._outage_since)
                self._outage_since = None
            if now >= next_purge:
                self.outbox.purge_acked(now - self.cfg.replay_after_loss_s)
                next_purge = now + 1.0
            self._settle_acks()
            self._fill_window(client)
            rc = client.loop(timeout=_LOOP_S if not self._inflight else 0.01)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.last_error = self.last_error or mqtt.error_string(rc)
                self._connected = False
        if self._stop.is_set() and self._connected:
            self._finish(client)
        self._settle_acks()
        if not self._stop.is_set() and self.cfg.replay_after_loss_s > 0:
            # counted back from the last acknowledgement, not from when the loss was noticed: a broker
            # that vanished silently is only noticed after the keep-alive timeout
            replay = self.outbox.unack_since(self._last_ack_at - self.cfg.replay_after_loss_s)
            self.replayed += replay
            if replay:
                log.info("fleet: will re-send the %d events acknowledged in the last %g s", replay,
                         self.cfg.replay_after_loss_s)
        return time.monotonic() - connected_at

    def _finish(self, client) -> None:
        """Clean shutdown: send the final messages, wait briefly for their acknowledgement."""
        infos = []
        for topic, payload, qos, retain in self._final:
            try:
                infos.append(client.publish(topic, payload, qos=qos, retain=retain))
            except (ValueError, OSError):
                pass
        end = time.monotonic() + 2.0
        while self._connected and time.monotonic() < end and not all(i.is_published() for i in infos):
            client.loop(timeout=0.02)
            self._settle_acks()

    def _fill_window(self, client) -> None:
        room = self.cfg.inflight_max - len(self._inflight)
        if room <= 0:
            return
        for seq, topic, payload in self.outbox.pending_after(self._last_sent_seq, room):
            info = client.publish(topic, payload, qos=1)
            if info.rc != 0:
                return
            self._inflight[info.mid] = seq
            self._last_sent_seq = seq

    def _settle_acks(self) -> None:
        done, refused = [], 0
        while self._acks:
            mid, ok = self._acks.popleft()
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # not an outbox event (health, results, status)
            done.append(seq)
            refused += not ok
        if done:
            self._last_ack_at = time.monotonic()
            self.outbox.ack(done, self._last_ack_at)
            self.delivered += len(done) - refused
            if refused:
                log.error("fleet: the broker refused %d events (not authorised?); dropped", refused)
                self.outbox.count_dropped(refused)

    def _maybe_fall_back(self, before_connack: bool = False, refused_protocol: bool = False) -> None:
        if self.cfg.protocol == "auto" and self._protocol == "5" and (refused_protocol or before_connack):
            self._protocol = "3.1.1"
        elif self.cfg.protocol == "auto" and self._protocol == "3.1.1" and before_connack:
            self._protocol = "5"  # try both, alternately, until one answers

    # -- paho callbacks (run in this thread, inside client.loop) -----------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._connack = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        if getattr(reason_code, "is_failure", self._connack != 0):
            self.last_error = f"refused: {reason_code}"
            self._maybe_fall_back(refused_protocol=self._connack in (1, 132))
            return
        self._connected = True
        self.protocol_in_use = self._protocol
        self.last_error = None

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self._connected:
            self.last_error = f"disconnected: {reason_code}"
        self._connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties=None):
        self._acks.append((mid, not getattr(reason_code, "is_failure", False)))

    def _on_message(self, client, userdata, message):
        if self._on_message_cb is not None:
            try:
                self._on_message_cb(message.topic, bytes(message.payload))
            except Exception:
                log.exception("fleet: message handler failed for %s", message.topic)
