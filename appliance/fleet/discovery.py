"""Home Assistant MQTT discovery: the box's health sensors, call counter and line states appear
in Home Assistant by themselves (retained `<prefix>/sensor/<device id>/<object>/config` messages
whose state is read from the box's retained `health` JSON)."""
from __future__ import annotations

import json
import re

# object id, name, value template path into health JSON, unit, device class, diagnostic?
_SENSORS = (
    ("uptime", "Uptime", "uptime_s.process_s", "s", "duration", True),
    ("cpu_load", "CPU load (1 min)", "cpu.load_1m", None, None, True),
    ("temperature", "Temperature", "temperature_c", "°C", "temperature", True),
    ("memory_used", "Memory used", "memory.used_pct", "%", None, True),
    ("disk_used", "Disk used", "disk.used_pct", "%", None, True),
    ("outbox_depth", "Events waiting", "fleet.outbox_depth", None, None, True),
    ("calls_today", "Calls today", "calls_today", None, None, False),
    ("handoffs", "Handoffs", "handoffs", None, None, False),
    ("barge_ins", "Barge-ins", "barge_ins", None, None, False),
    ("turn_latency_p50", "Reply latency P50", "turn_latency_ms.p50", "ms", "duration", False),
    ("turn_latency_p95", "Reply latency P95", "turn_latency_ms.p95", "ms", "duration", False),
    ("gsm_signal", "GSM signal", "gsm.signal_dbm", "dBm", "signal_strength", True),
    ("gsm_registration", "GSM registration", "gsm.registration", None, None, True),
    ("models_verified", "Models verified", "models_verified", None, None, True),
    ("last_error", "Last error", "last_error", None, None, True),
)


def _template(path: str) -> str:
    """A Jinja template that reads a nested key and yields nothing (unknown) when it is absent."""
    expr = "value_json"
    guards = []
    for part in path.split("."):
        expr = f"{expr}[{json.dumps(part)}]" if not re.fullmatch(r"[A-Za-z_]\w*", part) else f"{expr}.{part}"
        guards.append(f"{expr} is defined")
    return "{{ " + expr + " if (" + " and ".join(guards) + ") else none }}"


def messages(device_id: str, root: str, version: str, lines: list[str], prefix: str = "homeassistant",
             name: str = "") -> list[tuple[str, bytes]]:
    """(topic, payload) of every retained discovery message for this box."""
    device = {"identifiers": [f"appliance_{device_id}"], "name": name or f"Phone line {device_id}",
              "manufacturer": "phoneline-appliance", "model": "phone-line agent appliance", "sw_version": version}
    common = {"state_topic": f"{root}health", "availability_topic": f"{root}status",
              "payload_available": "online", "payload_not_available": "offline", "device": device}
    out = []
    sensors = list(_SENSORS) + [(f"line_{_slug(line)}", f"Line {line}", f"lines.{line}.state", None, None, False)
                                for line in lines]
    for object_id, label, path, unit, device_class, diagnostic in sensors:
        body = dict(common, name=label, unique_id=f"appliance_{device_id}_{object_id}",
                    value_template=_template(path))
        if unit:
            body["unit_of_measurement"] = unit
            body["state_class"] = "measurement"
        if device_class:
            body["device_class"] = device_class
        if diagnostic:
            body["entity_category"] = "diagnostic"
        out.append((f"{prefix}/sensor/{device_id}/{object_id}/config", json.dumps(body).encode()))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower() or "line"
