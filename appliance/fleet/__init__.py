"""Fleet over MQTT: health, events, commands, remote config, durable outbox.

`Fleet` is the whole API the runtime needs; see client.py for the topic layout."""
from .client import Fleet, FleetStatus
from .config import FleetConfig, TlsConfig
from .remote_config import ConfigApplyError

__all__ = ["ConfigApplyError", "Fleet", "FleetConfig", "FleetStatus", "TlsConfig"]
