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
    transfer_number: str | None = None
