"""Configuration of the simulated line (a scripted caller; no hardware)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SimLineConfig:
    type: Literal["sim"] = "sim"
    name: str = "sim"
    script: str | None = field(default=None, metadata={"help": "caller script YAML; none: the built-in demo caller"})
    codec: Literal["PCMU", "PCMA"] = "PCMU"
    echo_db: float = field(default=-18.0, metadata={"help": "level of the agent's voice returned as line echo (dB)", "min": -90, "max": 0})
    echo_delay_ms: int = field(default=40, metadata={"min": 0, "max": 500})
    noise_dbfs: float = field(default=-60.0, metadata={"min": -120, "max": 0})
