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
from .peers import active_part, free_port, free_range, read_wav, tone, write_wav

pytestmark = [needs_baresip, pytest.mark.peers]


def sip_line(**kw) -> dict:
    lo, hi = free_range(20)
    return {
        "type": "sip",
        "name": "sip1",
        "listen": f"127.0.0.1:{free_port()}",
        "rtp_ports": f"{lo}-{hi}",
        **kw,
    }


def box_config(tmp_path, lines: list[dict], broker: Mosquitto, device="e2e") -> dict:
    return {
        "device": {"id": device},
        "lines": lines,
        "detect": {
            "amd": {
                "voicemail_message": "Hi, this is Acme Dental about your appointment. Please call us back."
            }
        },
        "recording": {"dir": str(tmp_path / "calls")},
        "fleet": {
            "port": broker.port,
            "health_interval_s": 1,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
        },
    }


def far_end(baresip) -> np.ndarray:
    recs = baresip.recordings("dec")
    assert recs, f"baresip {baresip.name} recorded nothing"
    pcm, rate = read_wav(recs[-1])
    assert rate == 8000
    return pcm


def test_baresip_calls_run_and_run_calls_baresip(tmp_path, baresip_factory):
    question = tmp_path / "bob.wav"  # the greeting plays during the first seconds of silence
    write_wav(question, np.concatenate([silence(6.5), speech("What are your opening hours?"), silence(60)]))
    hello = tmp_path / "carol.wav"
    write_wav(hello, np.concatenate([silence(0.5), speech("Hello?"), silence(60)]))
    bob = baresip_factory(name="bob", source_wav=question)
    carol = baresip_factory(name="carol", source_wav=hello)
    dave = baresip_factory(name="dave")
    machine = tmp_path / "erin.wav"
    write_wav(
        machine,
        np.concatenate(
            [
                silence(0.3),
                speech(
                    "Hi, you've reached Erin. I can't take your call right now. "
                    "Please leave a message after the tone."
                ),
                silence(0.4),
                tone(1000.0, 0.6),
                silence(40),
            ]
        ),
    )
    erin = baresip_factory(name="erin", source_wav=machine)
    with Mosquitto(tmp_path / "broker") as broker:
        mq = Mqtt(broker.port, "appliance/e2e/#")
        front, back = sip_line(name="front"), sip_line(name="back")
        box = Box(tmp_path / "box", box_config(tmp_path, [front, back], broker)).start()
        try:
            mq.wait(
                lambda: [ln["state"] for ln in mq.on("/health")[-1]["lines"].values()] == ["idle", "idle"],
                90,
                "both lines idle in health",
            )
            # -- baresip calls the box ---------------------------------------------------------
            bob.command("dial", f"sip:box@{front['listen']}")
            started = mq.wait_event("call.started", 20)["data"]
            assert (
                started["direction"] == "inbound"
                and started["remote"] == "bob"
                and started["line"] == "front"
            )
            bob_call = started["call_id"]
            mq.wait_event("call.answered", 20)
            dave.command("dial", f"sip:box@{front['listen']}")  # the front line is taken: 486 Busy Here
            closed = dave.wait_event("CALL_CLOSED", 10)
            assert "486" in json.dumps(closed) or "Busy" in json.dumps(closed), closed
            mq.wait(
                lambda: any(
                    # "thinking" can be shorter than a health interval: the reply may already be playing
                    c["state"] in ("thinking", "speaking") and c["turns"] == 1
                    for c in mq.on("/health")[-1]["calls"]
                ),
                60,
                "the agent answering bob's question",
            )
            # -- meanwhile the box calls baresip on the other line, on a fleet command ------------
            result = mq.command(
                "appliance/e2e/",
                "dial",
                {"number": f"sip:carol@127.0.0.1:{carol.sip_port}", "line": "back", "timeout_s": 15,
                 "amd": True, "context": {"campaign": "reminders"}},
                30,
            )
            assert result["ok"], result
            carol_call = result["result"]["call_id"]
            assert result["result"]["line"] == "back"
            started = mq.wait_event("call.started", 5, lambda e: e["data"]["call_id"] == carol_call)["data"]
            assert started["context"] == {"campaign": "reminders"}, started
            carol.wait_event("CALL_ESTABLISHED", 10)
            amd = mq.wait_event("amd.result", 20, lambda e: e["data"]["call_id"] == carol_call)["data"]
            assert amd["label"] == "human", amd
            mq.wait_event("call.answered", 10, lambda e: e["data"]["call_id"] == carol_call)
            time.sleep(6.0)  # the greeting plays to carol
            turn = mq.wait_event("turn", 30, lambda e: e["data"]["call_id"] == bob_call)["data"]
            assert "open" in turn["text"].lower() and turn["v2v"] is not None, turn
            assert mq.on("/health")[-1]["calls_active"] == 2
            bob.command("hangup")
            ended = mq.wait_event("call.ended", 20, lambda e: e["data"]["call_id"] == bob_call)["data"]
            assert ended["cause"] == "remote hangup" and ended["turns"] >= 1, ended
            hung = mq.command("appliance/e2e/", "hangup", {"call": carol_call}, 20)
            assert hung["ok"] and hung["result"]["hung_up"] == [carol_call], hung
            ended = mq.wait_event("call.ended", 20, lambda e: e["data"]["call_id"] == carol_call)["data"]
            assert ended["cause"] == "hangup command", ended
            bob.wait_event("CALL_CLOSED", 10)
            carol.wait_event("CALL_CLOSED", 10)
            # -- an answering machine picks up: AMD says machine, the message is left after the beep
            result = mq.command(
                "appliance/e2e/",
                "dial",
                {"number": f"sip:erin@127.0.0.1:{erin.sip_port}", "timeout_s": 15},
                30,
            )
            assert result["ok"], result
            erin_call = result["result"]["call_id"]
            ended = mq.wait_event("call.ended", 60, lambda e: e["data"]["call_id"] == erin_call)["data"]
            amd = mq.wait_event("amd.result", 5, lambda e: e["data"]["call_id"] == erin_call)["data"]
            assert amd["label"] == "machine" and amd["beep_ms"] is not None, amd
            assert amd["voicemail"]["left"], amd
            assert ended["cause"] == "voicemail_left", ended
            erin.wait_event("CALL_CLOSED", 10)
            mq.wait(lambda: mq.on("/health")[-1]["calls_active"] == 0, 10, "no call in health")
            health = mq.on("/health")[-1]
            # the front line refused dave itself (486), so the runtime refused nobody
            assert health["calls_today"] == 3 and health["busy_refused"] == 0, health
            assert health["turn_latency_ms"]["p50"] is not None, health
            assert box.terminate() == 0
        finally:
            box.stop()
            mq.close()
    time.sleep(0.5)
    heard = far_end(bob)  # what bob heard from the box
    agent = active_part(heard)
    assert len(agent) > 8000 * 3, "less than 3 s of agent audio reached baresip"
    assert rms_dbfs(agent) > -35, f"agent audio too quiet at baresip: {rms_dbfs(agent):.1f} dBFS"
    text = transcribe(heard).lower()
    assert "thanks for calling" in text or "help you" in text, text  # the greeting
    assert "open" in text or "monday" in text, text  # the answer to the question
    heard = far_end(carol)
    assert len(active_part(heard)) > 8000 * 2, "the greeting did not reach carol"
    text = transcribe(heard).lower()
    assert "thanks for calling" in text or "help you" in text, text
    text = transcribe(far_end(erin)).lower()  # the machine recorded the message, not a greeting
    assert "appointment" in text and "thanks for calling" not in text, text
    assert "Traceback" not in box.text(), box.text()[-4000:]


@needs_kamailio
def test_handoff_transfers_with_refer_through_kamailio(
    tmp_path,
    kamailio_factory,  # set up first, torn down last: the UAs unregister on the way out
    baresip_factory,
    monkeypatch,
):
    kam = kamailio_factory(password="s3cret")
    monkeypatch.setenv("BOX_SIP_PASSWORD", "s3cret")
    ask = tmp_path / "bob.wav"
    write_wav(
        ask, np.concatenate([silence(6.5), speech("Can I speak to a real person please?"), silence(30)])
    )
    bob = baresip_factory(
        name="bob",
        source_wav=ask,
        account=f"<sip:bob@127.0.0.1:{kam.port}>;regint=60;answermode=auto;audio_codecs=PCMU",
    )
    carol = baresip_factory(
        name="carol", account=f"<sip:carol@127.0.0.1:{kam.port}>;regint=60;answermode=auto;audio_codecs=PCMU"
    )
    bob.wait_log("200 OK", 10)
    carol.wait_log("200 OK", 10)
    with Mosquitto(tmp_path / "broker") as broker:
        mq = Mqtt(broker.port, "appliance/e2e/#")
        line = sip_line(
            registrar=f"127.0.0.1:{kam.port}",
            username="box",
            password_env="BOX_SIP_PASSWORD",
            transfer_target="carol",
            register_expires_s=60,
        )
        box = Box(tmp_path / "box", box_config(tmp_path, [line], broker)).start()
        try:
            mq.wait(
                lambda: mq.on("/health") and mq.on("/health")[-1]["lines"]["sip1"].get("registered"),
                90,
                "line sip1 registered",
            )
            bob.command("dial", f"sip:box@127.0.0.1:{kam.port}")
            handoff = mq.wait_event("handoff", 40)["data"]
            assert handoff["target"] == "carol" and handoff["mode"] == "blind", handoff
            assert "person" in json.dumps(handoff["transcript"]).lower()
            ended = mq.wait_event("call.ended", 30)["data"]
            assert ended["cause"] == "transferred", ended
            carol.wait_event("CALL_ESTABLISHED", 10)  # bob now talks to carol, not the box
            transfers = [e["data"]["status"] for e in mq.events("transfer")]
            assert transfers and transfers[-1] == "ok", transfers
            assert box.terminate() == 0
            bob.command("hangup")  # (baresip quits at once when idle)
            carol.wait_event("CALL_CLOSED", 10)
        finally:
            box.stop()
            mq.close()
    assert "Traceback" not in box.text(), box.text()[-4000:]
