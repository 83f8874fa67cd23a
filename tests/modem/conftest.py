"""Fixtures for the modem line tests: emulators from tools/ on ptys, the SIM PIN in the environment.
The helpers the tests import are in modemrig.py (never import from a conftest)."""
from __future__ import annotations

import pytest

from .modemrig import PIN_ENV, SIM_PIN, gsm_emulator, voice_emulator


@pytest.fixture
def voice_emu(tmp_path, request):
    """A voice modem emulator (profile from `@pytest.mark.parametrize('voice_emu', [...], indirect=True)`)."""
    profile = getattr(request, "param", "conexant")
    with voice_emulator(tmp_path, profile, ring_period_s=1.0, cid_delay_s=0.3, drift_ppm=150.0) as emu:
        yield emu


@pytest.fixture
def gsm_emu(tmp_path, request):
    profile = getattr(request, "param", "sim7600")
    with gsm_emulator(tmp_path, profile, ring_period_s=1.0, pin=SIM_PIN, drift_ppm=-150.0) as emu:
        yield emu


@pytest.fixture
def sim_pin(monkeypatch):
    """The emulated SIM's PIN where the GSM lines read it (PIN_ENV)."""
    monkeypatch.setenv(PIN_ENV, SIM_PIN)
