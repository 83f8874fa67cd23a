"""Configuration of the MQTT fleet link."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str = field(metadata={"help": "CA certificate (PEM) that signed the broker's certificate"})
    cert_file: str | None = field(default=None, metadata={"help": "client certificate (PEM), if the broker asks"})
    key_file: str | None = field(default=None, metadata={"help": "private key of the client certificate"})
    insecure: bool = field(default=False, metadata={"help": "skip host name check (tests only)"})

    def __post_init__(self):
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together")


@dataclass(frozen=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = field(default=1883, metadata={"min": 1, "max": 65535})
    root: str | None = field(default=None, metadata={"help": "topic root; default appliance/<device id>/"})
    username: str | None = field(default=None, metadata={"help": "MQTT user name; the example ACL expects the device id"})
    password_env: str | None = field(default=None, metadata={"help": "environment variable holding the MQTT password"})
    tls: TlsConfig | None = None
    protocol: Literal["auto", "5", "3.1.1"] = field(
        default="auto", metadata={"help": "MQTT version; auto tries 5 and falls back to 3.1.1"})
    keepalive_s: int = field(default=30, metadata={"min": 5, "max": 3600})
    health_interval_s: int = field(default=60, metadata={"min": 1, "max": 86400})
    reconnect_min_s: float = field(default=1.0, metadata={"min": 0.05, "max": 600,
                                                          "help": "first retry delay after a lost broker"})
    reconnect_max_s: float = field(default=60.0, metadata={"min": 0.1, "max": 3600,
                                                           "help": "retry delay ceiling (exponential backoff)"})
    outbox_path: str | None = field(default=None, metadata={"help": "sqlite outbox; default <state dir>/outbox.sqlite"})
    outbox_max_events: int = field(default=100000, metadata={"min": 100,
                                                             "help": "when full, the oldest events are dropped"})
    inflight_max: int = field(default=100, metadata={"min": 1, "max": 65535,
                                                     "help": "QoS 1 events sent but not yet acknowledged"})
    replay_after_loss_s: float = field(
        default=2.0, metadata={"min": 0, "max": 3600,
                               "help": "after losing the broker, re-send the events it acknowledged in this "
                                       "many seconds before its last acknowledgement (a crashing broker loses "
                                       "what it acked but had not yet forwarded); 0: never"})
    command_timeout_s: float = field(default=120.0, metadata={"min": 1, "max": 3600})
    home_assistant: bool = field(default=False, metadata={"help": "publish Home Assistant MQTT discovery"})
    discovery_prefix: str = field(default="homeassistant", metadata={"help": "Home Assistant discovery prefix"})

    def __post_init__(self):
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("fleet: reconnect_max_s must be at least reconnect_min_s")
        if self.root is not None and any(c in self.root for c in "+#"):
            raise ValueError(f"fleet.root: {self.root!r} may not contain MQTT wildcards + or #")
