"""The `appliance` command: help, exit codes, JSON contracts of the foundation's subcommands."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.cli import COMMANDS


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=300, **kw)


def test_help_lists_every_subcommand():
    out = run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_has_help(name):
    out = run(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: appliance " + name in out.stdout


def test_no_subcommand_is_bad_usage():
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2


def test_config_check_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("lines:\n  - type: sim\n")
    out = run("config", "check", str(good))
    assert out.returncode == 0 and "OK" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("lines:\n  - type: sip\n    listn: 1\nagent:\n  barge_in_min_ms: 1\n")
    out = run("config", "check", str(bad))
    assert out.returncode == 2
    assert "2 problem(s)" in out.stderr and "did you mean 'listen'" in out.stderr
    assert str(bad) in out.stderr


def test_config_check_json_hides_nothing_secret(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("llm:\n  api_key_env: MY_KEY\n")
    out = run("config", "check", str(f), "--json", env={**__import__("os").environ, "MY_KEY": "sk-secretvalue"})
    assert out.returncode == 0
    assert json.loads(out.stdout)["llm"]["api_key_env"] == "MY_KEY"
    assert "sk-secretvalue" not in out.stdout


def test_config_reference_covers_every_section():
    out = run("config", "reference")
    assert out.returncode == 0
    for section in ("device:", "lines:", "agent:", "llm:", "speech:", "detect:", "recording:", "fleet:"):
        assert section in out.stdout


def test_bench_native_json_contract():
    out = run("bench", "native", "--json", "--rounds", "1", "--seconds", "0.2")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert set(r["frame_us"]) == {"compiled", "pure"}
    assert r["frame_us"]["compiled"] > 0 and r["frame_us"]["pure"] > 0
    assert r["speedup"] == pytest.approx(r["frame_us"]["pure"] / r["frame_us"]["compiled"], rel=0.06)
    assert r["ring_speedup"] > 0


def test_doctor_json_reports_the_native_core():
    out = run("doctor", "--json")
    assert out.returncode in (0, 1), out.stderr
    r = json.loads(out.stdout)
    native = next(c for c in r["checks"] if c["name"] == "native core")
    assert native["implementation"] == "compiled"
    names = {c["name"] for c in r["checks"]}
    assert {"python", "packages", "serial ports", "sound devices", "models", "broker"} <= names


def test_doctor_reports_the_twin_when_forced():
    out = run("doctor", "--json", env={**__import__("os").environ, "APPLIANCE_NO_EXTENSIONS": "1"})
    r = json.loads(out.stdout)
    native = next(c for c in r["checks"] if c["name"] == "native core")
    assert native["ok"] is False and native["implementation"] == "pure"
    assert out.returncode == 1


def test_doctor_finds_an_unreachable_broker(tmp_path):
    from testutil import free_port

    f = tmp_path / "c.yaml"
    f.write_text(f"fleet:\n  host: 127.0.0.1\n  port: {free_port()}\n")
    out = run("doctor", "--json", "--config", str(f))
    broker = next(c for c in json.loads(out.stdout)["checks"] if c["name"] == "broker")
    assert broker["ok"] is False and "unreachable" in broker["detail"]
