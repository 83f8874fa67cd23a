"""A local mosquitto for tests, benchmarks and demos: free 127.0.0.1 ports, started and stopped by
process id, with optional password, TLS and ACL listeners. Not used by a box in the field."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ApplianceError


class BrokerError(ApplianceError):
    """mosquitto is missing or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(folder: Path, cn: str = "127.0.0.1") -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (subjectAltName IP), made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    p = {k: folder / f"{k}" for k in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "san.cnf")}

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=appliance-test-ca",
        "-keyout", str(p["ca.key"]), "-out", str(p["ca.crt"]))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
        "-keyout", str(p["server.key"]), "-out", str(p["server.csr"]))
    p["san.cnf"].write_text(f"subjectAltName=IP:{cn}\n")
    run("x509", "-req", "-in", str(p["server.csr"]), "-CA", str(p["ca.crt"]), "-CAkey", str(p["ca.key"]),
        "-CAcreateserial", "-days", "2", "-extfile", str(p["san.cnf"]), "-out", str(p["server.crt"]))
    return {"ca": p["ca.crt"], "cert": p["server.crt"], "key": p["server.key"]}


def make_client_cert(tls: dict[str, Path], folder: Path, cn: str) -> dict[str, Path]:
    """A client certificate with common name `cn` (the device id, with `use_identity_as_username`),
    signed by the CA of `tls` (from `make_tls`)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, csr, crt = folder / f"{cn}.key", folder / f"{cn}.csr", folder / f"{cn}.crt"
    ca_key = Path(tls["ca"]).with_name("ca.key")
    for args in (("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr)),
                 ("x509", "-req", "-in", str(csr), "-CA", str(tls["ca"]), "-CAkey", str(ca_key),
                  "-CAcreateserial", "-days", "2", "-out", str(crt))):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return {"cert": crt, "key": key}


@dataclass
class Mosquitto:
    """One mosquitto process. Listeners: `port` (anonymous), and optionally `auth_port`
    (password file, optional ACL file), `tls_port` (anonymous over TLS) and, with `client_certs`,
    `mtls_port` (TLS demanding a client certificate signed by the same CA, whose CN is the user name
    for the ACL file)."""

    folder: Path
    users: dict[str, str] = field(default_factory=dict)
    acl_file: Path | None = None
    tls: dict[str, Path] | None = None
    persistence: bool = False
    extra: str = ""
    port: int = field(default_factory=free_port)
    auth_port: int | None = None
    tls_port: int | None = None
    client_certs: bool = False
    mtls_port: int | None = None
    proc: subprocess.Popen | None = None

    def __post_init__(self):
        if shutil.which("mosquitto") is None:
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto mosquitto-clients)")
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.users and self.auth_port is None:
            self.auth_port = free_port()
        if self.tls and self.tls_port is None:
            self.tls_port = free_port()
        if self.client_certs and not self.tls:
            raise ValueError("Mosquitto: client_certs needs tls (the CA that signs them)")
        if self.client_certs and self.mtls_port is None:
            self.mtls_port = free_port()

    def _write_config(self) -> Path:
        lines = ["per_listener_settings true", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
                 "max_queued_messages 0"]
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # otherwise it drops to 'mosquitto' and cannot read 0600 files
        if self.users:
            passwd = self.folder / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                               capture_output=True, timeout=30)
            lines += [f"listener {self.auth_port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}",
                      "max_queued_messages 0"]
            if self.acl_file:
                lines.append(f"acl_file {self.acl_file}")
        if self.tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", "allow_anonymous true", f"cafile {self.tls['ca']}",
                      f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}"]
        if self.client_certs:
            lines += [f"listener {self.mtls_port} 127.0.0.1", "allow_anonymous false", f"cafile {self.tls['ca']}",
                      f"certfile {self.tls['cert']}", f"keyfile {self.tls['key']}", "require_certificate true",
                      "use_identity_as_username true", "max_queued_messages 0"]
            if self.acl_file:
                lines.append(f"acl_file {self.acl_file}")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 3600"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stdout", "log_type error", "log_type warning", "log_type notice",
                  "max_keepalive 3600", self.extra]
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        conf = self._write_config()
        log = open(self.folder / "mosquitto.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        ports = [p for p in (self.port, self.auth_port, self.tls_port, self.mtls_port) if p]
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited ({self.proc.returncode}): {self.log_tail()}")
            if all(_listening(p) for p in ports):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {ports} within {timeout_s} s: {self.log_tail()}")

    def stop(self, kill: bool = False, timeout_s: float = 5.0) -> None:
        """SIGTERM (or SIGKILL: a crash) by process id, and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)

    def save(self) -> None:
        """Ask mosquitto to write its persistence file now (SIGUSR1)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGUSR1)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.folder / "mosquitto.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def cpu_s(self) -> float | None:
        """CPU time (user + system) the broker used so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, TypeError):
            return None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
