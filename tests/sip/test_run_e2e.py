"""End to end (issue 6, "Done when"): `appliance run` as a subprocess with a SIP line on
127.0.0.1:PORT and the offline call flow (the embedded default), against real peers.

- baresip calls the box: the call is answered, the caller's question gets a turn, and baresip's
  recording of the far end holds the agent's speech (measured level, and the project's STT hears
  the greeting and the answer);
- the box calls baresip on a fleet `cmd/dial` through a real mosquitto: baresip answers ("Hello?"),
  the box's answering-machine detection says human, the agent greets, and `cmd/hangup` ends it;
- when the caller asks for a person, the agent hands off and the SIP line transfers the call with
  REFER through kamailio to a third UA.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from runbox import Box, Mqtt, rms_dbfs, silence, speech, transcribe

from appliance.fleet.mosquitto import Mosquitto

from .conftest import needs_baresip, needs_kamailio
from .peers import active_part, free_port, free_range, read_wav, write_wav

pytestmark = [needs_baresip, pytest.mark.peers]


def sip_line(**kw) -> dict:
    lo, hi = free_range(20)
    return {"type": "sip", "name": "sip1", "listen": f"127.0.0.1:{free_port()}", "rtp_ports": f"{lo}-{hi}", **kw}


def box_config(tmp_path, line: dict, broker: Mosquitto, device="e2e") -> dict:
    return {"device": {"id": device}, "lines": [line],
            "recording": {"dir": str(tmp_path / "calls")},
            "fleet": {"port": broker.port, "health_interval_s": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0}}


def far_end(baresip) -> np.ndarray:
    recs = baresip.recordings("dec")
    assert recs, f"baresip {baresip.name} recorded nothing"
    pcm, rate = read_wav(recs[-1])
    assert rate == 8000
    return pcm


def test_baresip_calls_run_and_run_calls_baresip(tmp_path, baresip_factory):
    question = tmp_path / "bob.wav"      # the greeting plays during the first seconds of silence
    write_wav(question, np.concatenate([silence(6.5), speech("What are your opening hours?"), silence(25)]))
    hello = tmp_path / "carol.wav"
    write_wav(hello, np.concatenate([silence(0.5), speech("Hello?"), silence(25)]))
    bob = baresip_factory(name="bob", source_wav=question)
    carol = baresip_factory(name="carol", source_wav=hello)
    with Mosquitto(tmp_path / "broker") as broker:
        mq = Mqtt(broker.port, "appliance/e2e/#")
        line = sip_line()
        box = Box(tmp_path / "box", box_config(tmp_path, line, broker)).start()
        try:
            mq.wait(lambda: mq.on("/health") and mq.on("/health")[-1]["lines"]["sip1"]["state"] == "idle", 90,
                    "line sip1 idle in health")
            # -- baresip calls the box ---------------------------------------------------------
            bob.command("dial", f"sip:box@{line['listen']}")
            started = mq.wait_event("call.started", 20)
            assert started["data"]["direction"] == "inbound" and started["data"]["remote"] == "bob"
            mq.wait_event("call.answered", 20)
            turn = mq.wait_event("turn", 40)["data"]
            assert "hours" in turn["text"].lower(), turn
            time.sleep(4.0)                                    # part of the answer reaches bob
            bob.command("hangup")
            ended = mq.wait_event("call.ended", 20)["data"]
            assert ended["cause"] == "remote hangup" and ended["turns"] >= 1, ended
            bob.wait_event("CALL_CLOSED", 10)
            time.sleep(0.5)
            heard = far_end(bob)
            agent = active_part(heard)
            assert len(agent) > 8000 * 3, "less than 3 s of agent audio reached baresip"
            assert rms_dbfs(agent) > -35, f"agent audio too quiet at baresip: {rms_dbfs(agent):.1f} dBFS"
            text = transcribe(heard).lower()
            assert "thanks for calling" in text or "help you" in text, text      # the greeting
            assert "open" in text or "monday" in text, text                     # the answer to the question
            # -- the box calls baresip on a fleet command --------------------------------------
            result = mq.command("appliance/e2e/", "dial",
                                {"number": f"sip:carol@127.0.0.1:{carol.sip_port}", "timeout_s": 15}, 30)
            assert result["ok"], result
            call_id = result["result"]["call_id"]
            carol.wait_event("CALL_ESTABLISHED", 10)
            amd = mq.wait_event("amd.result", 20, lambda e: e["data"]["call_id"] == call_id)["data"]
            assert amd["label"] == "human", amd
            mq.wait_event("call.answered", 10, lambda e: e["data"]["call_id"] == call_id)
            time.sleep(6.0)                                     # the greeting plays
            hung = mq.command("appliance/e2e/", "hangup", {"call_id": call_id}, 20)
            assert hung["ok"] and hung["result"]["hung_up"] == [call_id], hung
            ended = mq.wait_event("call.ended", 20, lambda e: e["data"]["call_id"] == call_id)["data"]
            assert ended["cause"] == "hangup command", ended
            carol.wait_event("CALL_CLOSED", 10)
            time.sleep(0.5)
            heard = far_end(carol)
            assert len(active_part(heard)) > 8000 * 2, "the greeting did not reach carol"
            text = transcribe(heard).lower()
            assert "thanks for calling" in text or "help you" in text, text
            health = mq.on("/health")[-1]
            assert health["calls_today"] == 2 and health["turn_latency_ms"]["p50"] is not None, health
            assert box.terminate() == 0
        finally:
            box.stop()
            mq.close()
    log = box.text()
    assert "Traceback" not in log, log[-4000:]


@needs_kamailio
def test_handoff_transfers_with_refer_through_kamailio(tmp_path, baresip_factory, kamailio_factory, monkeypatch):
    kam = kamailio_factory(password="s3cret")
    monkeypatch.setenv("BOX_SIP_PASSWORD", "s3cret")
    ask = tmp_path / "bob.wav"
    write_wav(ask, np.concatenate([silence(6.5), speech("Can I speak to a real person please?"), silence(30)]))
    bob = baresip_factory(name="bob", source_wav=ask,
                          account=f"<sip:bob@127.0.0.1:{kam.port}>;regint=60;answermode=auto;audio_codecs=PCMU")
    carol = baresip_factory(name="carol",
                            account=f"<sip:carol@127.0.0.1:{kam.port}>;regint=60;answermode=auto;audio_codecs=PCMU")
    bob.wait_log("200 OK", 10)
    carol.wait_log("200 OK", 10)
    with Mosquitto(tmp_path / "broker") as broker:
        mq = Mqtt(broker.port, "appliance/e2e/#")
        line = sip_line(registrar=f"127.0.0.1:{kam.port}", username="box", password_env="BOX_SIP_PASSWORD",
                        transfer_target="carol", register_expires_s=60)
        box = Box(tmp_path / "box", box_config(tmp_path, line, broker)).start()
        try:
            mq.wait(lambda: mq.on("/health") and mq.on("/health")[-1]["lines"]["sip1"].get("registered"), 90,
                    "line sip1 registered")
            bob.command("dial", f"sip:box@127.0.0.1:{kam.port}")
            handoff = mq.wait_event("handoff", 40)["data"]
            assert handoff["target"] == "carol" and handoff["mode"] == "blind", handoff
            assert "person" in json.dumps(handoff["transcript"]).lower()
            ended = mq.wait_event("call.ended", 30)["data"]
            assert ended["cause"] == "transferred", ended
            carol.wait_event("CALL_ESTABLISHED", 10)          # bob now talks to carol, not the box
            transfers = [e["data"]["status"] for e in mq.events("transfer")]
            assert transfers and transfers[-1] == "ok", transfers
            assert box.terminate() == 0
            bob.command("hangup")                             # (baresip quits at once when idle)
            carol.wait_event("CALL_CLOSED", 10)
        finally:
            box.stop()
            mq.close()
    assert "Traceback" not in box.text(), box.text()[-4000:]
