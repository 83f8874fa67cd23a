"""Kill the broker mid-stream (SIGKILL, a crash) and restart it: no event is lost; duplicates only as
QoS 1 allows, removable by event id. And a broker that never comes back does not hurt the box."""
from __future__ import annotations

import asyncio
import json
import time

from fleet_helpers import wait_for

from appliance.fleet import Fleet, FleetConfig
from appliance.fleet.mosquitto import Mosquitto

EVENTS = 3000


def test_broker_crash_mid_stream_loses_nothing(tmp_path, collector_factory):
    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        # A watcher with a persistent session, saved to the broker's file before the crash, so the
        # restarted broker queues for it whatever arrives before it has reconnected.
        watcher = collector_factory(broker.port, topics=("appliance/box1/event/#",), client_id="watcher",
                                    clean=False)
        watcher.client.reconnect_delay_set(0.05, 0.2)
        broker.save()
        time.sleep(0.3)
        crashed = {}

        async def main():
            fleet = Fleet(FleetConfig(port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.4,
                                      replay_after_loss_s=0.5),
                          "box1", "1", tmp_path / "state")
            await fleet.start()
            ids = []
            for i in range(EVENTS):
                ids.append(fleet.publish_event("turn", {"n": i}))
                if i % 20 == 19:
                    await asyncio.sleep(0.005)  # a busy box: a steady stream, not one burst
                if i == EVENTS // 3:
                    assert await wait_for(lambda: fleet.status.connected and len(watcher.messages) > 100)
                    broker.stop(kill=True)
                    crashed["received_before"] = len(watcher.messages)
                    crashed["depth_at_crash"] = fleet.status.outbox_depth
                if i == 2 * EVENTS // 3:
                    assert not fleet.status.connected
                    crashed["depth_in_outage"] = fleet.status.outbox_depth
                    broker.start()
            assert await wait_for(lambda: fleet.status.outbox_depth == 0 and fleet.status.connected, 30)
            assert fleet.status.connects >= 2 and fleet.status.dropped == 0
            await fleet.stop()
            return ids

        ids = asyncio.run(main())
        seen: set[str] = set()
        read = [0]

        def have_all() -> bool:
            # parses only what arrived since the last look: re-parsing all ~3,000 messages on every
            # arrival, under the collector's lock, may starve its network thread on a busy machine
            new = watcher.messages[read[0]:]
            read[0] += len(new)
            seen.update(json.loads(p)["id"] for _, p, _ in new)
            return len(seen) >= EVENTS

        watcher.wait(have_all, 20)
    finally:
        broker.stop()
    received = [json.loads(p)["id"] for _, p, _ in watcher.messages]
    missing = [i for i, event_id in enumerate(ids) if event_id not in set(received)]
    assert not missing, f"lost {len(missing)} events: {missing[:20]}...; {crashed}"
    assert crashed["depth_in_outage"] > 0  # events really waited in the outbox
    assert set(received) == set(ids)  # zero lost
    duplicates = len(received) - len(set(received))
    # the replay after the loss re-sends what was acknowledged in the last 0.5 s, no more
    assert 0 < duplicates < EVENTS // 2, duplicates
    first_seen = list(dict.fromkeys(received))
    assert first_seen == ids  # and in order


def test_broker_that_never_comes_back(tmp_path):
    """The broker dies for good: the box keeps working, stores events up to its bound (dropping the
    oldest and counting them), answers status, and stops promptly."""
    broker = Mosquitto(tmp_path / "broker").start()

    async def main():
        fleet = Fleet(FleetConfig(port=broker.port, reconnect_min_s=0.05, reconnect_max_s=0.2,
                                  outbox_max_events=1000), "box9", "1", tmp_path / "state")
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected)
        broker.stop(kill=True)
        assert await wait_for(lambda: not fleet.status.connected)
        for i in range(5000):
            fleet.publish_event("turn", {"n": i})
        await asyncio.sleep(2.0)  # many reconnect attempts, all refused
        status = fleet.status
        assert not status.connected and status.last_error
        assert status.outbox_depth == 1000 and status.dropped == 4000
        t0 = time.monotonic()
        await fleet.stop()
        return time.monotonic() - t0

    stop_s = asyncio.run(main())
    assert stop_s < 5
    # the 1,000 newest survive in the file, in order
    from appliance.fleet.outbox import Outbox

    box = Outbox(tmp_path / "state" / "outbox.sqlite", 1000)
    rows = box.pending_after(0, 2000)
    assert [json.loads(p)["data"]["n"] for _, _, p in rows] == list(range(4000, 5000))
    assert box.dropped == 4000
    box.close()


def test_reconnect_backs_off_exponentially(tmp_path):
    """A 'broker' that accepts TCP and hangs up at once (a crash loop): the box retries with
    exponential backoff up to its ceiling, not in a tight loop."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    attempts = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            attempts.append(time.monotonic())
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    async def main():
        fleet = Fleet(FleetConfig(port=server.getsockname()[1], reconnect_min_s=0.1, reconnect_max_s=0.4),
                      "flappy", "1", tmp_path / "s")
        await fleet.start()
        await asyncio.sleep(3.0)
        status = fleet.status
        await fleet.stop()
        return status

    try:
        status = asyncio.run(main())
    finally:
        stop.set()
        thread.join(2)
        server.close()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # 0.1, 0.2, 0.4, 0.4, ... s (+-20 % jitter): about 9 attempts in 3 s; a tight loop would make 30+
    assert 5 <= len(attempts) <= 14, gaps
    assert max(gaps) >= 0.3 and min(gaps[3:] or [1]) >= 0.25, gaps
    assert not status.connected and status.last_error


def test_stop_sends_events_still_being_stored_on_a_slow_disk(tmp_path, collector_factory):
    """A slow SD card: events the link thread is still writing to the outbox count as waiting, so
    `stop()` flushes them to the broker instead of ending its flush early and leaving them on disk
    until the next start (the likely way a CI run of the crash test lost its last 227 events)."""
    broker = Mosquitto(tmp_path / "broker").start()
    try:
        watcher = collector_factory(broker.port, topics=("appliance/box1/event/#",))

        async def main():
            fleet = Fleet(FleetConfig(port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.4),
                          "box1", "1", tmp_path / "state")
            outbox = fleet._link.outbox
            real_append = outbox.append_many

            def slow_append(rows):
                time.sleep(0.3)                  # the card stalls mid-write
                return real_append(rows)

            outbox.append_many = slow_append
            await fleet.start()
            assert await wait_for(lambda: fleet.status.connected)
            ids = [fleet.publish_event("turn", {"n": i}) for i in range(500)]   # > inflight_max (100)
            await fleet.stop()
            return ids

        ids = asyncio.run(main())
        watcher.wait(lambda: len(watcher.messages) >= len(ids), 5)
    finally:
        broker.stop()
    received = {json.loads(p)["id"] for _, p, _ in watcher.messages}
    assert received == set(ids), f"{len(set(ids) - received)} of {len(ids)} events not sent before stop"
