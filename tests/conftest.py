"""Shared test helpers: the repo root, the model mirror beside it, free ports."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models"

# Tests find mirrored models (Whisper) in ../shared/models unless told otherwise.
if SHARED_MODELS.is_dir():
    os.environ.setdefault("APPLIANCE_MODELS_MIRROR", str(SHARED_MODELS))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO
