"""Real SIP peers for the interop tests and `appliance bench sip`: baresip (softphone), kamailio
(registrar/proxy), and audio measuring helpers.

Each peer runs on 127.0.0.1 with free ports, is stopped by its pid, and the test waits for its
ports to be free again. Configurations follow /work/shared/PEERS.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np

BARESIP = shutil.which("baresip")
KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if os.path.exists("/usr/sbin/kamailio") else None)
SIPSAK = shutil.which("sipsak")


def free_port(kind=socket.SOCK_DGRAM, also_tcp=False) -> int:
    """A port free for UDP (and TCP if asked), even, with port+1 free too (RTP/RTCP pairs)."""
    for _ in range(200):
        port = random.randrange(20000, 60000, 2)
        ok = True
        socks = []
        try:
            for p in (port, port + 1):
                for k in ((socket.SOCK_DGRAM, socket.SOCK_STREAM) if also_tcp else (kind,)):
                    s = socket.socket(socket.AF_INET, k)
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            for s in socks:
                s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


def free_range(n: int) -> tuple[int, int]:
    """n consecutive free UDP ports (start, end)."""
    for _ in range(100):
        start = random.randrange(20000, 60000 - n, 2)
        socks = []
        try:
            for p in range(start, start + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return start, start + n
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def port_free(port: int, kind=socket.SOCK_DGRAM) -> bool:
    s = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:   # TIME_WAIT of our own control connection is not "busy"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_ports_free(ports, timeout_s: float = 10.0, strict: bool = True) -> bool:
    """Wait until the ports can be bound; False (or RuntimeError when `strict`) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for port, kind in ports:
        while not port_free(port, kind):
            if time.monotonic() > deadline:
                if strict:
                    raise RuntimeError(f"port {port} still busy")
                return False
            time.sleep(0.05)
    return True


def stop_pid(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---- audio helpers -----------------------------------------------------------------------
def tone(freq_hz: float, seconds: float, amplitude: int = 8000, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def write_wav(path: Path, pcm: np.ndarray, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            data = data[::w.getnchannels()]
        return data.astype(np.int16), w.getframerate()


def tone_ratio_db(pcm: np.ndarray, freq_hz: float, rate: int = 8000) -> float:
    """Energy within ±30 Hz of freq over the rest of the spectrum (dB); ~-30 for noise or silence."""
    x = pcm.astype(np.float64)
    if len(x) < 256 or not np.any(x):
        return -100.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate)
    band = np.abs(freqs - freq_hz) <= 30
    inside = spec[band].sum()
    outside = spec[~band].sum() + 1e-9
    return 10 * np.log10(inside / outside + 1e-12)


def active_part(pcm: np.ndarray, threshold: int = 500) -> np.ndarray:
    """Samples from the first to the last 20 ms frame whose peak exceeds threshold."""
    n = len(pcm) // 160
    frames = pcm[: n * 160].reshape(n, 160) if n else pcm.reshape(0, 160)
    loud = np.nonzero(np.abs(frames).max(axis=1) > threshold)[0] if n else []
    if len(loud) == 0:
        return pcm[:0]
    return frames[loud[0]: loud[-1] + 1].reshape(-1)


# ---- baresip -----------------------------------------------------------------------------
class Baresip:
    """A headless baresip driven over ctrl_tcp (netstring JSON)."""

    def __init__(self, workdir: Path, name: str = "bob", source_wav: Path | None = None,
                 account: str | None = None, codecs: str = "PCMU"):
        self.dir = workdir / f"baresip-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rec = self.dir / "rec"
        self.rec.mkdir(exist_ok=True)
        self.name = name
        self.sip_port = free_port(also_tcp=True)
        self.ctrl_port = free_port(socket.SOCK_STREAM)
        self.rtp_lo, self.rtp_hi = free_range(40)
        src = source_wav or (self.dir / "silence.wav")
        if source_wav is None:
            write_wav(src, np.zeros(8000 * 30, np.int16))
        self.account = account or (f"<sip:{name}@127.0.0.1:{self.sip_port}>;regint=0;"
                                   f"answermode=auto;audio_codecs={codecs}")
        (self.dir / "config").write_text(f"""
net_interface 127.0.0.1
sip_listen 127.0.0.1:{self.sip_port}
audio_source aufile,{src}
audio_player aubridge,nullplay_{name}
audio_alert aubridge,nullalert_{name}
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports {self.rtp_lo}-{self.rtp_hi}
rtp_timeout 0
call_max_calls 16
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module cons.so
module_tmp uuid.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
snd_path {self.rec}
""")
        (self.dir / "accounts").write_text(self.account + "\n")
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.events: list[dict] = []
        self.responses: list[dict] = []
        self._cond = threading.Condition()
        self.log = self.dir / "baresip.log"

    def start(self) -> Baresip:
        wait_ports_free([(self.sip_port, socket.SOCK_DGRAM), (self.ctrl_port, socket.SOCK_STREAM)])
        self.proc = subprocess.Popen([BARESIP, "-f", str(self.dir)], stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        self.sock.settimeout(None)
        threading.Thread(target=self._reader, daemon=True).start()
        return self

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b":" in buf:
                head, _, rest = buf.partition(b":")
                if not head.isdigit() or len(rest) < int(head) + 1:
                    break
                n = int(head)
                payload, buf = rest[:n], rest[n + 1:]
                try:
                    obj = json.loads(payload)
                except ValueError:
                    continue
                with self._cond:
                    (self.events if obj.get("event") else self.responses).append(obj)
                    self._cond.notify_all()

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": f"t{random.randrange(1 << 30)}"})
        data = body.encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data + b",")

    def wait_event(self, kind: str, timeout_s: float = 10.0, after: int = 0) -> dict:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for ev in self.events[after:]:
                    if ev.get("type") == kind:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"baresip {self.name}: no {kind} event; got "
                                       f"{[e.get('type') for e in self.events]}")
                self._cond.wait(left)

    def wait_log(self, text: str, timeout_s: float = 10.0) -> None:
        """Wait for `text` in baresip's log (events before ctrl_tcp connected are only logged)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log.read_text(errors="replace"):
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise TimeoutError(f"baresip {self.name}: {text!r} not in log:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def recordings(self, suffix: str = "dec") -> list[Path]:
        return sorted(self.rec.glob(f"dump-*-{suffix}.wav"))

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.command("quit")
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            stop_pid(self.proc)
        if self.sock:
            self.sock.close()
        wait_ports_free([(self.sip_port, socket.SOCK_DGRAM), (self.ctrl_port, socket.SOCK_STREAM)])
        self.proc = None


# ---- kamailio ----------------------------------------------------------------------------
def kamailio_modules_dir() -> str | None:
    for d in Path("/usr/lib").glob("*/kamailio/modules"):
        return str(d)
    if Path("/usr/lib/kamailio/modules").is_dir():
        return "/usr/lib/kamailio/modules"
    return None


class Kamailio:
    """A registrar/proxy with digest authentication (password for every user) and record-routing."""

    def __init__(self, workdir: Path, password: str = "secret", algorithm: str = "MD5",
                 auth_invite: bool = True, max_expires: int | None = None):
        self.dir = workdir / "kamailio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(also_tcp=True)
        self.password = password
        mods = kamailio_modules_dir()
        expires = (f'modparam("registrar", "max_expires", {max_expires})\n'
                   'modparam("registrar", "min_expires", 1)') if max_expires else ""
        proxy_auth = f"""
    if (is_method("INVITE|REFER") && !has_totag() && $fU != "bob" && $fU != "carol") {{
        if (!pv_proxy_authenticate("$fd", "{password}", "0")) {{ proxy_challenge("$fd", "0"); exit; }}
        consume_credentials();
    }}""" if auth_invite else ""
        self.cfg = self.dir / "kamailio.cfg"
        self.cfg.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
listen=udp:127.0.0.1:{self.port}
auto_aliases=no
alias="127.0.0.1:{self.port}"
mpath="{mods}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)
modparam("rr", "enable_full_lr", 1)
modparam("auth", "algorithm", "{algorithm}")
{expires}
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483","Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        t_relay(); exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
    if (is_method("OPTIONS") && $rU == $null) {{
        xlog("L_NOTICE", "keepalive OPTIONS from $fU\n"); sl_send_reply("200", "OK"); exit;
    }}
    if (is_method("REGISTER")) {{
        xlog("L_NOTICE", "REGISTER from $fU expires $hdr(Expires)\n");
        if ($tU != "bob" && $tU != "carol") {{
            if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
            consume_credentials();
        }}
        save("location"); exit;
    }}{proxy_auth}
    if (!lookup("location")) {{ sl_send_reply("404","Not Found"); exit; }}
    record_route();
    t_relay();
}}
""")
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "kamailio.log"

    def start(self) -> Kamailio:
        wait_ports_free([(self.port, socket.SOCK_DGRAM)])
        pidfile = self.dir / "kamailio.pid"
        self.proc = subprocess.Popen(
            [KAMAILIO, "-f", str(self.cfg), "-DD", "-E", "-Y", str(self.dir), "-P", str(pidfile),
             "-m", "64", "-M", "8"], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)   # its worker children share a group
        deadline = time.monotonic() + 10
        while port_free(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc)
        try:   # kamailio's worker children too (they hold the SIP socket)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # Every kamailio process is gone. If the port is still taken after that, another process has
        # picked it as an ephemeral port (seen in CI): not this peer's business; the next start()
        # checks its own port.
        wait_ports_free([(self.port, socket.SOCK_DGRAM)], strict=False)
        self.proc = None
