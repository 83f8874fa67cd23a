"""How `appliance run` wires its parts: the health report's `gsm` figures where the fleet reads
them (`gsm.signal_dbm`, `gsm.registration`: Home Assistant discovery and the fleet simulator), the
voice handed to SIP lines for attended-transfer briefings, the models `models.fetch` covers."""
from __future__ import annotations

import asyncio

from appliance.config import load
from appliance.fleet.discovery import _SENSORS
from appliance.lines.gsm import GsmLine, parse_creg
from appliance.lines.modem_config import GsmLineConfig
from appliance.runtime import LineRunner, Runtime


def _resolve(health: dict, path: str):
    value = health
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def test_health_gsm_figures_are_where_discovery_reads_them():
    async def scenario():
        rt = Runtime(load(None), preload=False)
        first, second = GsmLineConfig(name="cell", port="loop://"), GsmLineConfig(name="cell2", port="loop://")
        for cfg, dbm in ((first, -71), (second, -95)):
            runner = LineRunner(rt, cfg)
            runner.line = GsmLine(cfg)  # not started: health() reports what the line last knew
            runner.line._set_registration("CREG", parse_creg("+CREG: 0,2"))    # searching on 2G,
            runner.line._set_registration("CEREG", parse_creg("+CEREG: 0,1"))  # home on LTE
            runner.line.signal = {"dbm": dbm, "rssi": 21}
            rt.lines[cfg.name] = runner
        return rt.health()

    health = asyncio.run(scenario())
    gsm_paths = [path for _, _, path, *_ in _SENSORS if path.startswith("gsm.")]
    assert gsm_paths, "discovery has GSM sensors"
    for path in gsm_paths:
        assert _resolve(health, path) is not None, (path, health.get("gsm"))
    assert health["gsm"]["signal_dbm"] == -71 and health["gsm"]["line"] == "cell"
    assert health["gsm"]["registration"] == "home"  # one word for the sensor, as the fleet simulator sends
    assert health["lines"]["cell2"]["signal_dbm"] == -95  # every line's own figures stay under lines


def test_sip_lines_get_the_runtimes_voice_for_attended_transfer_briefings():
    """`appliance run` hands its voice to SIP lines, so an attended transfer briefs the human on
    the consultation call (the line had the hook, but nothing set it: no briefing was ever said)."""
    import socket

    from testutil import free_port

    from appliance.lines.sip.config import SipLineConfig
    from appliance.speech import corpus
    from appliance.speech.stt import get_stt

    async def scenario():
        rt = Runtime(load(None), preload=False)
        cfg = SipLineConfig(name="desk", listen=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", transfer_attended=True)
        runner = LineRunner(rt, cfg)
        rt.lines[cfg.name] = runner
        runner.start()
        try:
            for _ in range(100):
                if runner.line is not None:
                    break
                await asyncio.sleep(0.05)
            assert runner.line is not None, runner.detail
            assert runner.line.briefing_audio == rt.briefing_audio
            return await runner.line.briefing_audio("The caller wants to book an appointment on Tuesday.")
        finally:
            await runner.stop()

    pcm = asyncio.run(scenario())
    assert pcm.dtype.name == "int16" and len(pcm) > 8000
    heard = corpus.words(get_stt().transcribe(pcm, 8000))
    assert "appointment" in heard and "tuesday" in heard, heard


def test_models_fetch_by_default_covers_every_model_the_config_uses():
    """`cmd/models.fetch` without names: the VAD, the STT model and the voice (the VAD was left out)."""
    from appliance.speech.registry import required_models

    cfg = load(None)
    rt = Runtime(cfg, preload=False)
    result = asyncio.run(rt.fetch_models())
    assert set(result["models"]) == set(required_models(cfg.speech)) >= {"silero-vad"}, result
    assert result["all_ok"] and rt.models_verified
