"""Fixtures for the modem line tests: emulators from tools/ on ptys, a tone meter, a runner."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from gsm_modem_emulator import GsmModemEmulator  # noqa: E402
from voice_modem_emulator import VoiceModemEmulator  # noqa: E402

from appliance.audio import goertzel_bank  # noqa: E402


def tone_power(pcm: np.ndarray, freq_hz: float) -> float:
    """Normalised power at `freq_hz` (about amplitude^2 / 2 of a full-scale-normalised sine)."""
    return float(goertzel_bank(np.ascontiguousarray(pcm, dtype=np.int16), np.array([freq_hz], dtype=np.float64),
                               8000)[0])


def run(coro, timeout_s: float = 60.0):
    """Run one async test body with an overall bound, so a hang fails instead of stalling CI."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout_s)
    return asyncio.run(bounded())


async def next_event(line, kind: str, timeout_s: float = 10.0):
    """The next line event of type `kind` (others are skipped)."""
    async def find():
        async for e in line.events():
            if e.type == kind:
                return e
    return await asyncio.wait_for(find(), timeout_s)


def drain(call) -> list:
    out = []
    while not call.events.empty():
        out.append(call.events.get_nowait())
    return out


@pytest.fixture
def voice_emu(tmp_path, request):
    """A voice modem emulator (profile from `@pytest.mark.parametrize('voice_emu', [...], indirect=True)`)."""
    profile = getattr(request, "param", "conexant")
    emu = VoiceModemEmulator(profile, link=str(tmp_path / "modem0"), ring_period_s=1.0, cid_delay_s=0.3,
                             drift_ppm=150.0).start()
    yield emu
    emu.stop()


@pytest.fixture
def gsm_emu(tmp_path, request):
    profile = getattr(request, "param", "sim7600")
    emu = GsmModemEmulator(profile, link=str(tmp_path / "gsm0"), ring_period_s=1.0, pin="1234",
                           drift_ppm=-150.0).start()
    yield emu
    emu.stop()
