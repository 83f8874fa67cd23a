"""The appliance's configuration: one YAML file -> one frozen ApplianceConfig.

Sections are declared by their components (see each package's config.py); this module
composes them, loads YAML and reports every problem at once (file, key, value, expectation).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from . import schema
from .agent.config import AgentConfig, LLMConfig, RecordingConfig
from .detect.config import DetectConfig
from .errors import ConfigError
from .fleet.config import FleetConfig
from .lines.modem_config import GsmLineConfig, ModemLineConfig
from .lines.sim_config import SimLineConfig
from .lines.sip.config import SipLineConfig
from .speech.config import SpeechConfig

LineConfig = SimLineConfig | SipLineConfig | ModemLineConfig | GsmLineConfig


def _default_device_id() -> str:
    return socket.gethostname().split(".")[0] or "appliance"


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(default_factory=_default_device_id,
                    metadata={"help": "unique id in the fleet (MQTT topics); default: host name",
                              "pattern": r"[A-Za-z0-9_-]{1,64}",
                              "pattern_help": "1-64 letters, digits, '_' or '-' (it is part of MQTT topics)"})
    name: str = ""


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class ApplianceConfig:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    lines: tuple[LineConfig, ...] = field(default=(SimLineConfig(),), metadata={"help": "the lines this box serves"})
    agent: AgentConfig = field(default_factory=AgentConfig)
    llm: LLMConfig | None = field(default=None, metadata={"help": "none: the offline call flow drives calls"})
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    fleet: FleetConfig | None = field(default=None, metadata={"help": "none: no MQTT"})
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self):
        names = [line.name for line in self.lines]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"lines: names must be unique, {', '.join(dupes)} used twice")


def parse(data, source: str = "<config>") -> ApplianceConfig:
    """Validate plain data (as loaded from YAML). Raises ConfigError listing every problem."""
    if data is None:
        data = {}
    cfg, problems = schema.build(ApplianceConfig, data)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def load(path: str | os.PathLike | None) -> ApplianceConfig:
    """Load and validate a YAML file; None gives the embedded defaults (simulated line, call flow)."""
    if path is None:
        return parse({}, "<defaults>")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([f"{where}not valid YAML ({getattr(exc, 'problem', exc)})"], str(p)) from exc
    if data is not None and not isinstance(data, dict):
        raise ConfigError([f"<top>: got {type(data).__name__}, expected a mapping of sections"], str(p))
    return parse(data, str(p))


def secret(env_name: str | None) -> str | None:
    """Resolve a secret reference (an environment variable name). Never log the result."""
    return os.environ.get(env_name) if env_name else None
