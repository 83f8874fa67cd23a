"""Shared test helpers: the repo root, the model mirror beside it, free ports."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from testutil import REPO, SHARED_MODELS, free_port  # noqa: F401 - re-exported for fixtures

# Tests find mirrored models (Whisper) in ../shared/models unless told otherwise.
if SHARED_MODELS.is_dir():
    os.environ.setdefault("APPLIANCE_MODELS_MIRROR", str(SHARED_MODELS))


@pytest.fixture
def repo_root() -> Path:
    return REPO
