"""Configuration of modem lines: V.253 analog voice modem and 3GPP 27.007 GSM modem."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class ModemLineConfig:
    type: Literal["modem"] = "modem"
    name: str = "modem"
    port: str = field(default="/dev/ttyACM0", metadata={"help": "serial device or pyserial URL (loop://, socket://host:port)"})
    baudrate: int = field(default=115200, metadata={"min": 1200})
    dialect: Literal["auto", "conexant", "usrobotics", "agere", "zyxel", "generic"] = "auto"
    rings_before_answer: int = field(default=2, metadata={"min": 1, "max": 20})
    transfer_number: str | None = field(default=None, metadata={"help": "number dialled after a hook flash to hand off"})
    command_timeout_s: float = field(default=3.0, metadata={"help": "wait this long for a final result code", "min": 0.2, "max": 60})
    command_delay_ms: int = field(default=0, metadata={"help": "pause between commands (vgetty uses 100 ms for old modems)", "min": 0, "max": 1000})
    prime_ms: int = field(default=60, metadata={"help": "audio kept queued in the modem ahead of its 8 kHz clock", "min": 20, "max": 500})
    flash_settle_ms: int = field(default=800, metadata={"help": "wait after the hook flash for the exchange's dial tone", "min": 0, "max": 5000})
    health_check_s: float = field(default=10.0, metadata={"help": "idle AT probe period; two missed probes reset the modem", "min": 0.5, "max": 600})
    reopen_interval_s: float = field(default=0.5, metadata={"help": "retry period for reopening a vanished device", "min": 0.1, "max": 60})


@dataclass(frozen=True)
class GsmLineConfig:
    type: Literal["gsm"] = "gsm"
    name: str = "gsm"
    port: str = field(default="/dev/ttyUSB2", metadata={"help": "AT command port (device or pyserial URL)"})
    baudrate: int = field(default=115200, metadata={"min": 1200})
    dialect: Literal["auto", "sim7600", "sim800", "ec25", "generic"] = "auto"
    pin_env: str | None = field(default=None, metadata={"help": "environment variable holding the SIM PIN"})
    audio: Literal["usb", "serial-pcm"] = "usb"
    audio_device: str | None = field(default=None, metadata={"help": "sound device name for USB audio"})
    audio_port: str | None = field(default=None, metadata={"help": "serial PCM port for audio 'serial-pcm' (SIM7600 ttyUSB4, EC25 ttyUSB1)"})
    transfer_number: str | None = None
    rings_before_answer: int = field(default=1, metadata={"min": 1, "max": 20})
    command_timeout_s: float = field(default=5.0, metadata={"help": "wait this long for a final result code", "min": 0.2, "max": 120})
    health_check_s: float = field(default=10.0, metadata={"help": "signal/registration poll and AT probe period", "min": 0.5, "max": 600})
    reopen_interval_s: float = field(default=0.5, metadata={"help": "retry period for reopening a vanished device", "min": 0.1, "max": 60})
