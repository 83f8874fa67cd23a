"""The rig the modem line tests share: the emulators from tools/ on ptys, the lines built on them,
a line that is started and always stopped, a bounded runner, event and audio readers, a tone meter.
(Fixtures built from these live in conftest.py; tests import the helpers from here.)"""
from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parents[2] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

from gsm_modem_emulator import GsmModemEmulator  # noqa: E402
from voice_modem_emulator import VoiceModemEmulator  # noqa: E402

from appliance.audio import goertzel_bank  # noqa: E402
from appliance.lines.gsm import GsmLine  # noqa: E402
from appliance.lines.modem import ModemLine  # noqa: E402
from appliance.lines.modem_config import GsmLineConfig, ModemLineConfig  # noqa: E402

PIN_ENV = "APPLIANCE_TEST_SIM_PIN"      # the GSM lines read the SIM PIN from here (fixture `sim_pin`)
SIM_PIN = "1234"


def voice_emulator(tmp_path, profile: str = "conexant", name: str = "modem0", **kw) -> VoiceModemEmulator:
    """A voice modem emulator linked at tmp_path/name, not started yet: use it as `with ... as emu`."""
    return VoiceModemEmulator(profile, link=str(tmp_path / name), **kw)


def gsm_emulator(tmp_path, profile: str = "sim7600", **kw) -> GsmModemEmulator:
    """A GSM modem emulator linked at tmp_path/gsm0, not started yet: use it as `with ... as emu`."""
    return GsmModemEmulator(profile, link=str(tmp_path / "gsm0"), **kw)


def voice_line(emu, **kw) -> ModemLine:
    """The V.253 line on the emulator's port (`kw`: more ModemLineConfig fields)."""
    return ModemLine(ModemLineConfig(port=emu.port, **kw))


def gsm_line(emu, **kw) -> GsmLine:
    """The GSM line on the emulator's AT port, serial PCM audio on its audio port, the SIM PIN from
    PIN_ENV (`kw`: more GsmLineConfig fields, or overrides such as pin_env=None)."""
    opts = {"port": emu.port, "audio": "serial-pcm", "audio_port": emu.audio_port, "pin_env": PIN_ENV}
    opts.update(kw)
    return GsmLine(GsmLineConfig(**opts))


@contextlib.asynccontextmanager
async def running(line):
    """`line` started, and stopped on the way out whatever the test body raised."""
    await line.start()
    try:
        yield line
    finally:
        await line.stop()


def tone_power(pcm: np.ndarray, freq_hz: float) -> float:
    """Normalised power at `freq_hz` (about amplitude^2 / 2 of a full-scale-normalised sine)."""
    pcm16 = np.ascontiguousarray(pcm, dtype=np.int16)
    return float(goertzel_bank(pcm16, np.array([freq_hz], dtype=np.float64), 8000)[0])


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


async def read_audio(call, seconds: float) -> np.ndarray:
    """About `seconds` of the call's received audio (less if the call ends)."""
    frames = []
    for _ in range(int(seconds / 0.02)):
        f = await call.read_frame(2.0)
        if f is None:
            break
        frames.append(f.samples)
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)


async def dtmf_digits(call, n: int, polls: int) -> list[str]:
    """The DTMF digits the call reports, polled every 50 ms until `n` came or `polls` ran out."""
    got: list[str] = []
    for _ in range(polls):
        got += [e.data["digit"] for e in drain(call) if e.type == "dtmf"]
        if len(got) >= n:
            break
        await asyncio.sleep(0.05)
    return got
