"""Remote config over a real mosquitto: retained desired config validated (by the real config
schema), applied, written atomically, reported; an invalid one rejected with every reason; a
failed apply (a SIP line cannot bind its port) rolls back to the previous config."""
from __future__ import annotations

import asyncio
import json
import socket

import yaml
from fleet_helpers import cfg, wait_for

from appliance import config as appcfg
from appliance.errors import ConfigError
from appliance.fleet import ConfigApplyError, Fleet


class FakeRuntime:
    """What the runtime's config callback does, with real parts: the real schema validates, and
    'bringing up' a SIP line really binds its UDP port (busy port: the line fails)."""

    def __init__(self):
        self.applied: list[dict] = []
        self.sockets: list[socket.socket] = []

    async def apply(self, data: dict) -> list[str]:
        try:
            parsed = appcfg.parse(data, "remote")
        except ConfigError as exc:
            return exc.problems  # rejected, nothing changed
        for s in self.sockets:
            s.close()
        self.sockets = []
        for line in parsed.lines:
            if line.type == "sip":
                host, port = line.listen.rsplit(":", 1)
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.bind((host, int(port)))
                except OSError as exc:
                    s.close()
                    raise ConfigApplyError([f"lines.{line.name}: cannot listen on {line.listen}: {exc}"]) from exc
                self.sockets.append(s)
        self.applied.append(data)
        return []


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_remote_config_apply_reject_rollback(broker, collector_factory, tmp_path):
    ops = collector_factory(broker.port, topics=("appliance/rc1/config/reported",))
    config_file = tmp_path / "etc" / "appliance.yaml"
    first = {"device": {"id": "rc1"}, "lines": [{"type": "sip", "name": "sip1", "listen": f"127.0.0.1:{_free_udp_port()}"}]}
    bad = {"device": {"id": "rc1"}, "lines": [{"type": "sip", "nmae": "x"}], "agent": {"prompt": 5}, "bogus": 1}
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    clash = {"device": {"id": "rc1"},
             "lines": [{"type": "sip", "name": "sip2", "listen": f"127.0.0.1:{busy.getsockname()[1]}"}]}
    runtime = FakeRuntime()

    def reports():
        return [json.loads(p) for _, p in ops.on("appliance/rc1/config/reported")]

    async def push(data, n):
        ops.client.publish("appliance/rc1/config", json.dumps(data), qos=1, retain=True)
        assert await wait_for(lambda: len(reports()) >= n), reports()
        return reports()[-1]

    async def main():
        fleet = Fleet(cfg(broker.port), "rc1", "1", tmp_path / "state")
        fleet.on_config(runtime.apply, config_file)
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected)
        await asyncio.sleep(0.2)

        report = await push(first, 1)
        assert report["status"] == "applied" and report["problems"] == []
        assert yaml.safe_load(config_file.read_text()) == first
        assert appcfg.load(config_file).lines[0].name == "sip1"  # the written file is a valid config

        report = await push(bad, 2)
        assert report["status"] == "rejected"
        text = " ".join(report["problems"])
        assert "bogus" in text and "nmae" in text and "prompt" in text  # every reason, not the first
        assert yaml.safe_load(config_file.read_text()) == first  # running config stays

        report = await push(clash, 3)
        assert report["status"] == "rolled_back" and "cannot listen" in report["problems"][0]
        assert report["rollback_problems"] == []
        assert runtime.applied[-1] == first  # the previous config was applied again
        assert yaml.safe_load(config_file.read_text()) == first

        ops.client.publish("appliance/rc1/config", b"{not json: [", qos=1, retain=True)
        assert await wait_for(lambda: len(reports()) >= 4)
        assert reports()[-1]["status"] == "rejected"

        # the same desired config again (e.g. retained, on every reconnect) is not re-applied
        applied_before = len(runtime.applied)
        await push(first, 5)
        assert len(runtime.applied) == applied_before + 1
        ops.client.publish("appliance/rc1/cmd/config.set", json.dumps({"id": "c1", "args": {"config": first}}),
                           qos=1)
        await asyncio.sleep(0.5)
        assert len(runtime.applied) == applied_before + 1
        await fleet.stop()

        # a reboot with the retained desired config still there: processed before, not applied again
        fleet = Fleet(cfg(broker.port), "rc1", "1", tmp_path / "state")
        fleet.on_config(runtime.apply, config_file)
        await fleet.start()
        assert await wait_for(lambda: len(reports()) >= 7)
        assert reports()[-1].get("repeat") is True and len(runtime.applied) == applied_before + 1
        await fleet.stop()

    try:
        asyncio.run(main())
    finally:
        busy.close()
        for s in runtime.sockets:
            s.close()
    assert not list(config_file.parent.glob(".*.tmp"))  # no temp files left behind


def test_box_without_remote_config_says_so(broker, collector_factory, tmp_path):
    ops = collector_factory(broker.port, topics=("appliance/nc/config/reported",))

    async def main():
        fleet = Fleet(cfg(broker.port), "nc", "1", tmp_path / "s")
        await fleet.start()
        assert await wait_for(lambda: fleet.status.connected)
        await asyncio.sleep(0.2)
        ops.client.publish("appliance/nc/config", b"{}", qos=1, retain=True)
        assert await wait_for(lambda: ops.on("appliance/nc/config/reported"))
        await fleet.stop()

    asyncio.run(main())
    report = json.loads(ops.on("appliance/nc/config/reported")[-1][1])
    assert report["status"] == "rejected" and "remote configuration" in report["problems"][0]
