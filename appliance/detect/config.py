"""Configuration of the detectors: answering-machine detection, endpointing, echo."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AmdConfig:
    enabled: bool = True
    total_analysis_ms: int = field(default=5000, metadata={"min": 1000, "max": 30000})
    voicemail_message: str | None = field(default=None, metadata={"help": "message left after the beep; {name} is the callee's name"})


@dataclass(frozen=True)
class EndpointConfig:
    min_silence_ms: int = field(default=500, metadata={"help": "silence after a complete-sounding turn", "min": 100, "max": 5000})
    max_silence_ms: int = field(default=1600, metadata={"help": "silence after which the turn ends whatever was said", "min": 200, "max": 10000})
    semantic: bool = field(default=True, metadata={"help": "use the smart-turn model to judge completeness"})


@dataclass(frozen=True)
class EchoConfig:
    cancel: bool = True
    tail_ms: int = field(default=128, metadata={"min": 16, "max": 512})


@dataclass(frozen=True)
class DetectConfig:
    amd: AmdConfig = field(default_factory=AmdConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    echo: EchoConfig = field(default_factory=EchoConfig)
