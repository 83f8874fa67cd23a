"""`appliance run`: bad config (exit 2, every problem), a line that cannot start retried with backoff
and logged once, remote config applied or rolled back with the real runtime, and SIGTERM during a
real SIP call (baresip) with the events reaching a real mosquitto.

Everything runs on 127.0.0.1 with free ports; the SIP peer is baresip, the broker mosquitto."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import yaml
from runbox import REPO, Box, Mqtt, silence, speech, transcribe

from appliance import config as appcfg
from appliance.fleet.mosquitto import Mosquitto
from appliance.runtime import Runtime

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None, reason="mosquitto not installed (Debian: mosquitto)"
)


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sip_options(port: int, timeout_s: float = 2.0) -> bytes | None:
    """One OPTIONS request to 127.0.0.1:port; the response, or None if nothing answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        me = s.getsockname()[1]
        s.settimeout(timeout_s)
        msg = (
            f"OPTIONS sip:box@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{time.monotonic_ns()}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1:{me}>;tag=1\r\nTo: <sip:box@127.0.0.1>\r\n"
            f"Call-ID: {time.monotonic_ns()}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", port))
        try:
            return s.recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            return None


async def until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # noqa: ASYNC110 - polling the runner's counters
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# ---- configuration ---------------------------------------------------------------------------
def test_bad_config_exits_2_naming_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "lines": [{"type": "sip", "name": "a", "listen": 5060, "max_calls": 0}, {"type": "fax"}],
                "agent": {"prompt": "hi"},
                "fleet": {"port": 70000},
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc
    err = proc.stderr
    assert str(bad) in err
    for needle in (
        "lines[0].listen",
        "lines[0].max_calls",
        "lines[1].type",
        "'fax'",
        "agent.prompt: unknown key",
        "fleet.port",
        "70000",
    ):
        assert needle in err, f"{needle!r} missing from:\n{err}"
    assert "Traceback" not in err
    missing = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--config", str(tmp_path / "nope.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr and "cannot read" in missing.stderr


# ---- a line that cannot start ----------------------------------------------------------------
def test_failed_line_is_retried_with_backoff_and_logged_once(tmp_path, caplog):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    other = udp_port()
    cfg = appcfg.parse(
        {
            "device": {"id": "t1"},
            "lines": [
                {"type": "sip", "name": "blocked", "listen": f"127.0.0.1:{port}", "rtp_ports": "41000-41010"},
                {"type": "sip", "name": "fine", "listen": f"127.0.0.1:{other}", "rtp_ports": "41020-41030"},
            ],
        }
    )
    caplog.set_level(logging.DEBUG, logger="appliance.runtime")

    async def scenario():
        rt = Runtime(cfg, state_dir=tmp_path / "state", preload=False, restart_min_s=0.05, restart_max_s=0.4)
        await rt.start()
        try:
            blocked, fine = rt.lines["blocked"], rt.lines["fine"]
            assert await blocked.wait_first(5) is not None  # the first attempt failed
            assert await fine.wait_first(5) is None  # the other line is not held up
            await until(lambda: blocked.failed_attempts >= 7)
            assert blocked.line is None and blocked.state == "error"
            assert "cannot listen" in blocked.last_error
            health = rt.health()["lines"]
            assert health["blocked"]["state"] == "error" and health["blocked"]["retry_in_s"] == 0.4
            assert health["fine"]["state"] == "idle"
            delays = list(blocked.retry_delays_s)[:7]
            busy.close()  # the port is free again
            await until(lambda: blocked.line is not None)
            assert blocked.state == "idle" and blocked.restarts == 1
            assert await asyncio.to_thread(sip_options, port), "the restarted line does not answer OPTIONS"
            return delays
        finally:
            await rt.shutdown()

    delays = asyncio.run(scenario())
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4], delays  # doubling, capped
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "blocked" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # the outage is logged once
    assert "retrying with backoff" in errors[0].getMessage()
    assert any("up again after" in r.getMessage() for r in caplog.records)


# ---- remote configuration --------------------------------------------------------------------
@needs_mosquitto
def test_remote_config_applies_and_rolls_back_when_a_line_cannot_come_up(tmp_path):
    first_port, second_port = udp_port(), udp_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    with Mosquitto(tmp_path / "broker") as broker:
        base = {
            "device": {"id": "rc"},
            "fleet": {
                "port": broker.port,
                "health_interval_s": 1,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 1.0,
            },
        }

        def with_line(port, name="sip1"):
            return {
                **base,
                "lines": [
                    {"type": "sip", "name": name, "listen": f"127.0.0.1:{port}", "rtp_ports": "42000-42010"}
                ],
            }

        config_file = tmp_path / "appliance.yaml"
        config_file.write_text(yaml.safe_dump(with_line(first_port)))
        mq = Mqtt(broker.port, "appliance/rc/#")

        async def scenario():
            rt = Runtime(
                appcfg.load(config_file),
                config_path=config_file,
                state_dir=tmp_path / "state",
                preload=False,
                restart_min_s=0.05,
                restart_max_s=0.2,
            )
            await rt.start()
            try:
                assert await rt.lines["sip1"].wait_first(5) is None
                # the box has subscribed to its commands once it says it is online
                online = lambda: (  # noqa: E731
                    b"online" in [p for t, p in mq.messages if t.endswith("/status")]
                )
                await asyncio.to_thread(mq.wait, online, 20, "the box online")

                def ask(data):
                    return asyncio.to_thread(mq.command, "appliance/rc/", "config.set", {"config": data}, 30)

                # a good change: the line moves to another port
                moved = await ask(with_line(second_port))
                assert moved["ok"] and moved["result"]["status"] == "applied", moved
                assert await asyncio.to_thread(sip_options, second_port)
                assert await asyncio.to_thread(sip_options, first_port, 0.5) is None
                assert yaml.safe_load(config_file.read_text())["lines"][0]["listen"].endswith(
                    str(second_port)
                )
                # an invalid one: rejected with every reason, nothing changes
                bad = await ask({**with_line(second_port), "agent": {"greting": "x"}, "bogus": 1})
                assert bad["result"]["status"] == "rejected"
                assert len(bad["result"]["problems"]) == 2, bad
                # a line that cannot come up (its port is taken): the previous config is restored
                clash = await ask(with_line(busy.getsockname()[1], name="sip2"))
                assert clash["result"]["status"] == "rolled_back", clash
                assert "sip2" in clash["result"]["problems"][0] and clash["result"]["rollback_problems"] == []
                assert list(rt.lines) == ["sip1"] and rt.lines["sip1"].state == "idle"
                assert await asyncio.to_thread(sip_options, second_port), "the restored line does not answer"
                assert yaml.safe_load(config_file.read_text())["lines"][0]["name"] == "sip1"
                pong = await asyncio.to_thread(mq.command, "appliance/rc/", "ping", {}, 10)
                assert pong["ok"] and pong["result"]["device"] == "rc"
                nodial = await asyncio.to_thread(mq.command, "appliance/rc/", "dial", {"number": ""}, 10)
                assert not nodial["ok"] and "args.number" in nodial["problems"][0]
                # reload: the file changed on disk (the line moves again); a broken file changes nothing
                third_port = udp_port()
                config_file.write_text(yaml.safe_dump(with_line(third_port)))
                reloaded = await asyncio.to_thread(mq.command, "appliance/rc/", "reload", {}, 30)
                assert reloaded["ok"] and reloaded["result"]["status"] == "applied", reloaded
                assert await asyncio.to_thread(sip_options, third_port)
                config_file.write_text("lines: [{type: sip, listen: 5}]\n")
                broken = await asyncio.to_thread(mq.command, "appliance/rc/", "reload", {}, 30)
                assert (
                    broken["result"]["status"] == "rejected"
                    and "lines[0].listen" in broken["result"]["problems"][0]
                )
                assert await asyncio.to_thread(sip_options, third_port), "a rejected reload stopped the line"
                # models.fetch: installs/verifies from the local mirror; an unknown name is reported
                fetched = await asyncio.to_thread(
                    mq.command,
                    "appliance/rc/",
                    "models.fetch",
                    {"models": ["silero-vad", "no-such-model"], "verify": True},
                    60,
                )
                models = fetched["result"]["models"]
                assert models["silero-vad"]["ok"] and not models["no-such-model"]["ok"], fetched
                assert "no-such-model" in models["no-such-model"]["error"] and not fetched["result"]["all_ok"]
            finally:
                await rt.shutdown()

        try:
            asyncio.run(scenario())
        finally:
            busy.close()
            mq.close()
        reported = mq.on("config/reported")
        assert [r["status"] for r in reported][-3:] == ["applied", "rejected", "rolled_back"]


# ---- SIGTERM during a call, events on MQTT ---------------------------------------------------
@needs_mosquitto
def test_sigterm_during_a_call_ends_it_politely_and_events_reach_mosquitto(tmp_path):
    from sip.peers import BARESIP, Baresip, free_port, free_range, read_wav, write_wav

    if BARESIP is None:
        pytest.skip("baresip not installed (Debian: baresip-core)")
    wav = tmp_path / "caller.wav"
    write_wav(wav, np.concatenate([silence(6.5), speech("What are your opening hours?"), silence(30)]))
    bob = Baresip(tmp_path, name="bob", source_wav=wav).start()
    lo, hi = free_range(20)
    sip_port = free_port()
    calls_dir = tmp_path / "calls"
    with Mosquitto(tmp_path / "broker") as broker:
        mq = Mqtt(broker.port, "appliance/term/#")
        box = Box(
            tmp_path / "box",
            {
                "device": {"id": "term"},
                "lines": [
                    {
                        "type": "sip",
                        "name": "desk",
                        "listen": f"127.0.0.1:{sip_port}",
                        "rtp_ports": f"{lo}-{hi}",
                    }
                ],
                "recording": {"dir": str(calls_dir)},
                "fleet": {"port": broker.port, "health_interval_s": 1, "reconnect_min_s": 0.1},
            },
        ).start()
        try:
            box.wait_log("line desk (sip): up", 90)
            box.proc.send_signal(signal.SIGHUP)  # re-read the (unchanged) file: nothing restarts
            box.wait_log("SIGHUP: config applied", 10)
            bob.command("dial", f"sip:box@127.0.0.1:{sip_port}")
            mq.wait(
                lambda: any(
                    # "thinking" can be shorter than a health interval: the reply may already be playing
                    c["state"] in ("thinking", "speaking") and c["turns"] == 1 for c in mq.on("/health")[-1]["calls"]
                ),
                60,
                "the agent answering the caller's question",
            )
            time.sleep(1.0)  # the agent is answering: stop the box now
            rc = box.terminate()
            assert rc == 0, box.text()[-3000:]
            bob.wait_event("CALL_CLOSED", 10)
            time.sleep(0.5)
        finally:
            box.stop()
            bob.stop()
            mq.close()
    # every event: id, type, ts, device, data; the keys DESIGN.md lists
    events = mq.events()
    assert len({e["id"] for e in events}) == len(events)
    for e in events:
        assert {"id", "type", "ts", "device", "data"} <= set(e) and e["device"] == "term"
    started = mq.events("call.started")[0]["data"]
    assert {"call_id", "direction", "remote", "line"} <= set(started) and started["line"] == "desk"
    turn = mq.events("turn")[0]
    assert {"endpoint", "stt", "llm_first_token", "tts_first_audio", "v2v"} <= set(turn["data"])
    assert turn["data"]["v2v"] is not None and "open" in turn["data"]["text"].lower(), turn  # "opening hours"
    ended = mq.events("call.ended")
    assert len(ended) == 1 and ended[0]["data"]["cause"] == "shutdown", ended
    assert ended[0]["data"]["call_id"] == started["call_id"]
    states = [e["data"]["state"] for e in mq.events("line.state")]
    assert states[0] == "idle" and "in_call" in states and states[-1] == "down", states
    assert [p for t, p in mq.messages if t.endswith("/status")][-1] == b"offline"
    # the recording was closed properly: a whole stereo WAV and its transcript
    wavs = sorted(calls_dir.glob("*.wav"))
    assert len(wavs) == 1
    with wave.open(str(wavs[0])) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000 and w.getnframes() > 8000 * 8
    meta = json.loads(wavs[0].with_suffix(".json").read_text())
    assert meta["end_cause"] == "shutdown"
    assert ended[0]["data"]["recording"] == str(wavs[0])
    # the caller heard a goodbye before the line went quiet
    far, _ = read_wav(bob.recordings("dec")[-1])
    last = far[-8000 * 6 :]
    text = transcribe(last).lower()
    assert "goodbye" in text or "end the call" in text, text
    assert "Traceback" not in box.text(), box.text()[-4000:]


# ---- two kinds of line at once ---------------------------------------------------------------
def test_a_modem_call_while_a_sip_line_serves(tmp_path):
    """A V.253 voice modem (the emulator from tools/ on a pty) and a SIP line run side by side; a call
    rings on the modem, the agent answers and greets (the far end hears it), the far end hangs up."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from voice_modem_emulator import VoiceModemEmulator
    finally:
        sys.path.remove(str(REPO / "tools"))
    emu = VoiceModemEmulator(
        "conexant", link=str(tmp_path / "modem0"), ring_period_s=1.0, cid_delay_s=0.3
    ).start()
    sip_port = udp_port()
    cfg = appcfg.parse(
        {
            "device": {"id": "two"},
            "lines": [
                {
                    "type": "modem",
                    "name": "analog",
                    "port": str(tmp_path / "modem0"),
                    "rings_before_answer": 2,  # caller ID comes after the first ring
                },
                {
                    "type": "sip",
                    "name": "desk",
                    "listen": f"127.0.0.1:{sip_port}",
                    "rtp_ports": "43000-43010",
                },
            ],
            "recording": {"dir": str(tmp_path / "calls")},
        }
    )
    events: list[tuple[str, dict]] = []

    async def scenario():
        rt = Runtime(cfg, state_dir=tmp_path / "state", on_event=lambda t, d: events.append((t, d)))
        await rt.start()
        try:
            assert await rt.lines["analog"].wait_first(20) is None
            assert await rt.lines["desk"].wait_first(5) is None
            emu.ring(number="5551234", name="ALICE")
            await until(lambda: any(t == "call.answered" for t, _ in events), 30)
            # the far end hears the greeting: more than a second of loud agent audio
            await until(lambda: int((np.abs(emu.far.heard_audio().astype(np.int32)) > 300).sum()) > 8000, 30)
            assert rt.health()["calls"][0]["line"] == "analog"
            assert await asyncio.to_thread(sip_options, sip_port), (
                "the SIP line stopped answering during the call"
            )
            emu.far_hangup()
            await until(lambda: any(t == "call.ended" for t, _ in events), 20)
            await until(lambda: not rt.calls, 10)
        finally:
            await rt.shutdown()

    try:
        asyncio.run(scenario())
    finally:
        emu.stop()
    started = next(d for t, d in events if t == "call.started")
    assert (
        started["line"] == "analog" and started["direction"] == "inbound" and started["remote"] == "5551234"
    )
    ended = next(d for t, d in events if t == "call.ended")
    assert ended["call_id"] == started["call_id"] and ended["cause"] != "error", ended
    states = [(d["line"], d["state"]) for t, d in events if t == "line.state"]
    assert ("analog", "in_call") in states or ("analog", "ringing") in states, states
    assert not [d for t, d in events if t == "error"], events
