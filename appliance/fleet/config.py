"""Configuration of the MQTT fleet link."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = field(default=False, metadata={"help": "skip host name check (tests only)"})


@dataclass(frozen=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    root: str | None = field(default=None, metadata={"help": "topic root; default appliance/<device id>/"})
    username: str | None = None
    password_env: str | None = field(default=None, metadata={"help": "environment variable holding the MQTT password"})
    tls: TlsConfig | None = None
    keepalive_s: int = field(default=30, metadata={"min": 5, "max": 3600})
    health_interval_s: int = field(default=60, metadata={"min": 5, "max": 86400})
    outbox_path: str | None = field(default=None, metadata={"help": "sqlite outbox; default beside the recordings"})
    outbox_max_events: int = field(default=100000, metadata={"min": 100})
    home_assistant: bool = field(default=False, metadata={"help": "publish Home Assistant MQTT discovery"})
