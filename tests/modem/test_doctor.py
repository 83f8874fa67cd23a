"""`appliance doctor --port`: the capability matrix against the emulators (full and half duplex
voice modems, cellular modems) and against iaxmodem, a real Hayes command parser on a pty that
is not a voice modem (`AT+FCLASS=8` -> ERROR): it must say exactly that."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from testutil import free_port

from appliance.modem_doctor import format_report, qualify

REPO = Path(__file__).resolve().parents[2]
IAX_DIR = Path("/etc/iaxmodem")


@pytest.mark.parametrize("voice_emu", ["conexant", "usrobotics", "agere"], indirect=True)
def test_full_duplex_voice_modems_qualify(voice_emu):
    res = qualify(voice_emu.port)
    assert res["ok"] and res["kind"] == "voice-modem" and res["voice"]
    assert res["dialect"] == voice_emu.profile.name
    assert res["full_duplex"] is True and res["barge_in"] is True and res["caller_id"] is True
    assert res["dtmf_detection"] is True and res["dtmf_generation"] is True
    assert res["format"] and len(res["sample_formats"]) == len(voice_emu.profile.vsm)
    assert "usable as a phone line" in res["summary"] and res["gsm"] is None
    assert voice_emu.fclass == "0"          # left in data mode as found
    text = format_report(res)
    assert "full duplex (+VTR)       yes" in text


@pytest.mark.parametrize("voice_emu", ["zyxel"], indirect=True)
def test_half_duplex_voice_modem_is_reported(voice_emu):
    res = qualify(voice_emu.port)
    assert res["ok"] and res["kind"] == "voice-modem" and res["full_duplex"] is False
    assert res["barge_in"] is False and "HALF DUPLEX (barge-in impossible)" in res["summary"]
    assert any("barge-in is impossible" in n for n in res["notes"])
    text = format_report(res)
    assert "barge-in possible        no" in text and "note: half duplex (no +VTR)" in text


@pytest.mark.parametrize("gsm_emu", ["sim7600", "ec25"], indirect=True)
def test_cellular_modems_qualify(gsm_emu):
    gsm_emu.pin = None
    gsm_emu.sim_ready = True
    res = qualify(gsm_emu.port)
    assert res["ok"] and res["kind"] == "gsm-modem"
    g = res["gsm"]
    assert g["dialect"] == gsm_emu.profile.name and g["sim"] == "ready" and g["registered"]
    assert g["signal_dbm"] == -113 + 2 * gsm_emu.rssi and g["operator"] == "Emulated Net"
    assert g["hold_chld"] and g["transfer_ctfr"] and res["caller_id"] and res["dtmf_detection"]
    assert "registered" in res["summary"] and "NOT registered" not in res["summary"]


def test_sim_waiting_for_pin_is_shown(gsm_emu):
    res = qualify(gsm_emu.port)          # the fixture's SIM asks for PIN 1234
    assert res["kind"] == "gsm-modem" and res["gsm"]["sim"] == "sim pin"


def test_nothing_on_the_port(tmp_path):
    res = qualify(str(tmp_path / "absent"))
    assert not res["ok"] and "cannot open" in res["summary"]


@pytest.fixture
def iaxmodem(tmp_path):
    """A real iaxmodem on a pty (its config must live in /etc/iaxmodem, PEERS.md)."""
    exe = shutil.which("iaxmodem")
    if exe is None:
        pytest.skip("iaxmodem is not installed (Debian package iaxmodem)")
    try:
        IAX_DIR.mkdir(exist_ok=True)
        name = f"appliance-test-{uuid.uuid4().hex[:8]}"
        conf = IAX_DIR / name
        device = Path(tempfile.gettempdir()) / f"iaxm-{uuid.uuid4().hex[:8]}"
        if len(str(device)) >= 60:      # iaxmodem cuts longer device paths
            pytest.skip(f"iaxmodem truncates device paths of 60+ characters; TMPDIR {tempfile.gettempdir()} is too long")
        conf.write_text(f"device {device}\nport {free_port()}\nrefresh 0\nserver 127.0.0.1\n"
                        "peername appliancetest\nsecret unused\ncodec ulaw\n")
    except PermissionError:
        pytest.skip(f"iaxmodem reads its configuration only from {IAX_DIR}, which is not writable here")
    proc = subprocess.Popen([exe, name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        for _ in range(100):
            if device.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert device.exists(), f"iaxmodem did not create {device} (exit code {proc.poll()})"
        yield str(device)
    finally:
        conf.unlink(missing_ok=True)
        device.unlink(missing_ok=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_iaxmodem_is_a_hayes_modem_but_not_a_voice_modem(iaxmodem):
    res = qualify(iaxmodem)
    assert res["responds"] and not res["ok"]
    assert res["kind"] == "data-modem" and res["fclass8"] is False and res["voice"] is False
    assert res["identity"]["ATI"] == "spandsp"
    assert "8" not in res["classes"] and "1" in res["classes"]
    assert res["gsm"] is None
    assert "NOT a voice modem (AT+FCLASS=8 -> ERROR)" in res["summary"]
    assert "AT+FCLASS=8 -> ERROR" in res["transcript"]


def test_appliance_doctor_cli_on_iaxmodem(iaxmodem):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "appliance", "doctor", "--port", iaxmodem, "--json"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert out.returncode == 1, out.stderr          # the modem check fails
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    modem = checks["modem"]
    assert modem["ok"] is False and "NOT a voice modem" in modem["detail"]
    assert modem["capabilities"]["kind"] == "data-modem"
    text = subprocess.run([sys.executable, "-m", "appliance", "doctor", "--port", iaxmodem],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO).stdout
    assert "V.253 voice (+FCLASS=8)  no  (AT+FCLASS=8 -> ERROR)" in text
