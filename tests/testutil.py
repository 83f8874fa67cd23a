"""Helpers the tests import by name (a `conftest` module cannot be imported reliably: several exist)."""
from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models"
ACL_EXAMPLE = REPO / "firmware-config" / "mosquitto" / "aclfile.example"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on 127.0.0.1 right now (TCP by default; pass socket.SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
