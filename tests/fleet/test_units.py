"""Fleet parts without a broker: outbox, request parsing and argument validation, health readers."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.fleet import health
from appliance.fleet.commands import BadRequest, check_schema, parse_request, validate
from appliance.fleet.config import FleetConfig
from appliance.fleet.discovery import _template
from appliance.fleet.outbox import Outbox
from appliance.fleet.remote_config import digest, parse_payload, write_atomically


def test_outbox_order_ack_bound_and_reopen(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_events=100)
    box.append_many([("t", f"{i}".encode()) for i in range(150)])
    assert box.depth == 100 and box.dropped == 50
    rows = box.pending_after(0, 10)
    assert [int(p) for _, _, p in rows] == list(range(50, 60))  # oldest dropped first
    box.ack([s for s, _, _ in rows[:5]], now=10.0)
    assert box.depth == 95
    assert [int(p) for _, _, p in box.pending_after(0, 3)] == [55, 56, 57]
    assert box.unack_since(9.0) == 5 and box.depth == 100  # re-send what was acked recently
    box.ack([s for s, _, _ in rows[:5]], now=10.0)
    box.purge_acked(before=11.0)
    assert box.unack_since(0.0) == 0
    box.close()
    again = Outbox(path, max_events=100)
    assert again.depth == 95 and again.dropped == 50  # both survive a restart
    assert int(again.pending_after(0, 1)[0][2]) == 55
    again.close()


def test_outbox_ack_out_of_order_gaps_and_repeats(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_events=100)
    box.append_many([("t", f"{i}".encode()) for i in range(10)])
    seqs = [s for s, _, _ in box.pending_after(0, 10)]
    box.ack([seqs[7], seqs[1], seqs[2], seqs[2], seqs[8], seqs[4]], now=5.0)  # PUBACKs may come in any order
    assert box.depth == 5
    assert [int(p) for _, _, p in box.pending_after(0, 10)] == [0, 3, 5, 6, 9]
    box.ack([seqs[1]], now=6.0)  # already acknowledged: not counted twice
    assert box.depth == 5 and box.unack_since(5.0) == 5 and box.depth == 10
    box.close()


def test_outbox_request_memory(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", 100)
    for i in range(20):
        box.remember_request(f"dial/{i}", "dial", json.dumps({"i": i}), at=float(i), keep=10)
    assert box.request_result("dial/19") == '{"i": 19}' and box.request_result("dial/5") is None
    box.close()


SCHEMA = {"type": "object", "required": ["number"], "additionalProperties": False,
          "properties": {"number": {"type": "string", "pattern": r"^\+?\d{3,15}$"},
                         "timeout_s": {"type": "number", "minimum": 1, "maximum": 120},
                         "line": {"type": "string", "enum": ["sip1", "gsm"]},
                         "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}}


def test_validate_reports_every_problem():
    problems = validate({"timeout_s": 0, "line": "pots", "tags": ["a", 1, "c"], "extra": True}, SCHEMA)
    text = "\n".join(problems)
    for needle in ("args.number: missing", "args.timeout_s", "args.line", "args.tags[1]", "at most 2 items",
                   "args.extra: unknown argument"):
        assert needle in text
    assert validate({"number": "+4930123456", "timeout_s": 30, "line": "gsm"}, SCHEMA) == []
    assert validate({"number": True}, SCHEMA) == ["args.number: got true, expected string"]
    with pytest.raises(ValueError):
        check_schema({"type": "object", "propertys": {}})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                              lambda kids: st.lists(kids, max_size=4)
                              | st.dictionaries(st.sampled_from(["id", "args", "x"]) | st.text(max_size=5), kids,
                                                max_size=4), max_leaves=20).map(
                     lambda v: json.dumps(v).encode())))
def test_parse_request_fuzz(payload):
    """Any payload either parses to a valid request or raises BadRequest, and validation never raises."""
    try:
        request = parse_request(payload)
    except BadRequest as exc:
        assert str(exc)
        return
    assert isinstance(request.id, str) and isinstance(request.args, dict)
    validate(request.args, SCHEMA)


def test_parse_payload_of_remote_config():
    assert parse_payload(b'{"device": {"id": "a"}}') == ({"device": {"id": "a"}}, [])
    for bad in (b"[1, 2]", b"\xff", b"{a: [", b"x" * 600000, b"null"):
        data, problems = parse_payload(bad)
        assert data is None and problems
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1}) != digest({"a": 2, "b": 1})


def test_write_atomically(tmp_path):
    target = tmp_path / "c.yaml"
    write_atomically(target, "one\n")
    write_atomically(target, "two\n")
    assert target.read_text() == "two\n" and [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def test_health_readers_on_a_fake_sys_and_proc(tmp_path):
    zone = tmp_path / "sys" / "class" / "thermal"
    (zone / "thermal_zone0").mkdir(parents=True)
    (zone / "thermal_zone0" / "temp").write_text("48312\n")
    (zone / "thermal_zone1").mkdir()
    (zone / "thermal_zone1" / "temp").write_text("51000\n")
    assert health.temperature_c(tmp_path / "sys") == 51.0
    assert health.temperature_c(tmp_path / "nothing") is None
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:        3884164 kB\nMemFree:          201744 kB\n"
                                  "MemAvailable:    2913836 kB\n")
    (proc / "self" / "status").write_text("Name:\tpython\nVmRSS:\t   51200 kB\n")
    (proc / "uptime").write_text("12345.67 20000.00\n")
    mem = health.memory(proc)
    assert mem == {"total_mb": 3793.1, "available_mb": 2845.5, "used_pct": 25.0, "process_rss_mb": 50.0}
    assert health.uptime_s(proc)["system_s"] == 12345.7
    snap = health.snapshot(tmp_path)
    assert snap["disk"]["total_mb"] > 0 and "uptime_s" in snap


def test_discovery_template_guards_missing_keys():
    assert _template("cpu.load_1m") == ("{{ value_json.cpu.load_1m if (value_json.cpu is defined and "
                                        "value_json.cpu.load_1m is defined) else none }}")
    assert '["fxo-1"]' in _template("lines.fxo-1.state")


def test_config_cross_checks():
    with pytest.raises(ValueError):
        FleetConfig(reconnect_min_s=10, reconnect_max_s=1)
    with pytest.raises(ValueError):
        FleetConfig(root="appliance/+/")


def test_fleet_section_in_the_appliance_config():
    from appliance import config as appcfg
    from appliance.errors import ConfigError

    cfg = appcfg.parse({"fleet": {"host": "broker.local", "port": 8883, "tls": {"ca_file": "/etc/ca.crt"},
                                  "protocol": "3.1.1", "home_assistant": True}})
    assert cfg.fleet.tls.ca_file == "/etc/ca.crt" and cfg.fleet.protocol == "3.1.1"
    with pytest.raises(ConfigError) as err:
        appcfg.parse({"fleet": {"port": 0, "protocol": "4", "tls": {"cert_file": "c"}, "inflight": 3}})
    text = "\n".join(err.value.problems)
    for needle in ("fleet.port", "fleet.protocol", "fleet.tls.ca_file", "inflight_max"):
        assert needle in text
