"""The AT channel against a scripted device on a real pty: response matching, URC routing,
echo, stray bytes, timeouts, data mode switching, and a vanished port."""
from __future__ import annotations

import threading
import time

import pytest
from modem_emulator_base import PtyEndpoint

from appliance.lines.at import ATChannel, CommandError, ModemGone, ModemTimeout


class ScriptedDevice:
    """Answers each command line with the bytes `script(cmd)` returns (None: stay silent)."""

    def __init__(self, tmp_path, script):
        self.script = script
        self.buf = bytearray()
        self.received = bytearray()
        self.pty = PtyEndpoint(self._on_bytes, link=str(tmp_path / "dev0"), name="scripted")
        self.pty.start()

    def _on_bytes(self, data: bytes) -> None:
        self.received += data
        self.buf += data
        while b"\r" in self.buf:
            line, _, rest = bytes(self.buf).partition(b"\r")
            self.buf = bytearray(rest)
            out = self.script(line.decode("latin-1"))
            if out:
                self.pty.write(out)

    def stop(self):
        self.pty.stop()


@pytest.fixture
def device(tmp_path):
    devs = []

    def make(script):
        d = ScriptedDevice(tmp_path, script)
        devs.append(d)
        return d
    yield make
    for d in devs:
        d.stop()


def open_channel(dev, **kw) -> tuple[ATChannel, list, list]:
    urcs, lost = [], []
    ch = ATChannel(dev.pty.path, on_urc=urcs.append, on_lost=lost.append, open_delay_s=0.05, **kw)
    ch.open()
    return ch, urcs, lost


def test_urc_in_the_middle_of_a_response_is_routed_as_event(device):
    def script(cmd):
        if cmd == "AT+CLCC":   # echo on, a RING and a +CREG URC interleaved with the call list
            return (b"AT+CLCC\r\r\n+CLCC: 1,1,4,0,0,\"+15551234\",145\r\n\r\nRING\r\n"
                    b"\r\n+CREG: 5\r\n\r\n+CLCC: 2,0,2,0,0,\"123\",129\r\n\r\nOK\r\n")
        if cmd == "AT+CREG?":
            return b"\r\n+CREG: 2,1\r\n\r\nOK\r\n"
        return b"\r\nOK\r\n"
    ch, urcs, _ = open_channel(device(script))
    r = ch.command("AT+CLCC")
    assert r.final == "OK" and [x[:8] for x in r.lines] == ["+CLCC: 1", "+CLCC: 2"]
    r2 = ch.command("AT+CREG?")           # the command's own prefix is a response, not a URC
    assert r2.lines == ["+CREG: 2,1"]
    time.sleep(0.05)
    assert urcs == ["RING", "+CREG: 5"]
    ch.close()


def test_errors_timeouts_and_call_results(device):
    def script(cmd):
        return {"AT+CPIN=\"0000\"": b"\r\n+CME ERROR: 16\r\n", "ATX": b"\r\nERROR\r\n",
                "ATD123;": b"\r\nBUSY\r\n", "ATSILENT": None}.get(cmd, b"\r\nOK\r\n")
    ch, urcs, _ = open_channel(device(script))
    with pytest.raises(CommandError) as e:
        ch.command('AT+CPIN="0000"')
    assert e.value.final == "+CME ERROR: 16"
    with pytest.raises(CommandError):
        ch.command("ATX")
    assert ch.command("ATD123;", call_finals=True, check=False).final == "BUSY"
    with pytest.raises(ModemTimeout):
        ch.command("ATSILENT", 0.3)
    assert ch.command("AT").final == "OK"      # the channel is still in step after a timeout
    assert urcs == []
    ch.close()


def test_stray_bytes_and_stray_ok_do_not_shift_replies(device):
    dev = device(lambda cmd: b"\r\nOK\r\n" if cmd != "ATI" else b"\x00\xff\r\nMODEL 1\r\n\r\nOK\r\n")
    ch, urcs, _ = open_channel(dev)
    dev.pty.write(b"\r\nOK\r\n\xfe\xfd junk")      # unsolicited: nothing pending
    time.sleep(0.1)
    assert ch.command("ATI").lines == ["MODEL 1"]
    assert ch.stray_lines >= 1
    ch.close()


class Sink:
    def __init__(self):
        self.data = bytearray()
        self.done = threading.Event()

    def feed(self, data):
        i = data.find(b"\x10\x03")
        if i < 0:
            self.data += data
            return None
        self.data += data[:i]
        self.done.set()
        return data[i + 2:]


def test_connect_switches_to_data_mode_in_the_reader_thread(device):
    dev = None

    def script(cmd):
        if cmd == "AT+VTR":    # voice bytes right behind CONNECT, in the same write
            return b"\r\nCONNECT\r\n\x7f\x7fOK\r\nRING\x7f"
        return b"\r\nOK\r\n"
    dev = device(script)
    ch, urcs, _ = open_channel(dev)
    sink = Sink()
    ch.command("AT+VTR", data_sink=sink)
    time.sleep(0.1)
    assert ch.in_data_mode and urcs == []
    dev.pty.write(b"\x7f\x10\x03\r\nOK\r\n\r\nRING\r\n")
    assert sink.done.wait(2)
    time.sleep(0.1)
    assert bytes(sink.data).startswith(b"\x7f\x7fOK\r\nRING\x7f")   # text inside voice data stays data
    assert not ch.in_data_mode and urcs == ["RING"]
    ch.close()


def test_vanished_port_fails_pending_command_and_reports_loss(device):
    dev = device(lambda cmd: None if cmd == "ATWAIT" else b"\r\nOK\r\n")
    ch, _, lost = open_channel(dev)
    threading.Timer(0.2, dev.pty.unplug).start()
    with pytest.raises(ModemGone):
        ch.command("ATWAIT", 5.0)
    time.sleep(0.1)
    assert lost and not ch.is_open
    with pytest.raises(ModemGone):
        ch.command("AT")
    ch.close()


def test_open_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(ModemGone, match="cannot open"):
        ATChannel(str(tmp_path / "nope")).open()
