"""`appliance run` as a subprocess (the way systemd runs it), an MQTT listener, and speech WAVs for
the real peers: shared by tests/test_runtime.py and tests/sip/test_run_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent


class Box:
    """One `python -m appliance run --config FILE` process with its log in a file."""

    def __init__(self, folder: Path, config: dict):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "appliance.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.state_dir = self.dir / "state"
        self.log = self.dir / "run.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Box:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "run",
                "--config",
                str(self.config_path),
                "--state-dir",
                str(self.state_dir),
            ],
            cwd=REPO,
            env=env,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, timeout_s: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while self.text().count(needle) < count:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"appliance run exited ({self.proc.returncode}) before {needle!r}:\n{self.text()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not logged in {timeout_s} s:\n{self.text()[-4000:]}")
            time.sleep(0.1)

    def terminate(self, timeout_s: float = 40.0) -> int:
        """SIGTERM (by pid), then the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"appliance run did not stop within {timeout_s} s:\n{self.text()[-4000:]}"
            ) from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Mqtt:
    """A real MQTT client (paho): records every message under `topic`, publishes commands."""

    def __init__(self, port: int, topic: str = "#"):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a, **k: self._subscribed.set()
        self.client.on_connect = lambda c, *a, **k: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("MQTT subscription not acknowledged")

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def events(self, type_: str | None = None) -> list[dict]:
        with self._cond:
            out = []
            for topic, payload in self.messages:
                if "/event/" in topic and (type_ is None or topic.endswith("/event/" + type_)):
                    out.append(json.loads(payload))
            return out

    def on(self, suffix: str) -> list[dict]:
        with self._cond:
            return [json.loads(p) for t, p in self.messages if t.endswith(suffix) and p]

    def wait(self, predicate, timeout_s: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                try:
                    if predicate():
                        return
                except (KeyError, IndexError, ValueError):
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [t for t, _ in self.messages]
                    raise AssertionError(
                        f"timed out waiting for {what or predicate}; topics seen: {seen[-40:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def wait_event(self, type_: str, timeout_s: float = 30.0, where=lambda e: True) -> dict:
        self.wait(lambda: any(where(e) for e in self.events(type_)), timeout_s, f"event {type_}")
        return [e for e in self.events(type_) if where(e)][0]

    def command(self, root: str, name: str, args: dict, timeout_s: float = 60.0) -> dict:
        rid = uuid.uuid4().hex[:12]
        self.client.publish(f"{root}cmd/{name}", json.dumps({"id": rid, "args": args}), qos=1)
        self.wait(
            lambda: any(r.get("id") == rid for r in self.on(f"cmd/{name}/result")),
            timeout_s,
            f"result of {name}",
        )
        return [r for r in self.on(f"cmd/{name}/result") if r.get("id") == rid][0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


_voice = None


def speech(text: str) -> np.ndarray:
    """`text` spoken by the project's TTS voice at 8 kHz (int16)."""
    global _voice
    if _voice is None:
        from appliance.agent.engines import get_tts
        from appliance.speech.config import SpeechConfig

        _voice = get_tts(SpeechConfig())
    return np.asarray(_voice.synthesize_to_array(text, 8000), dtype=np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(8000 * seconds), np.int16)


def transcribe(pcm: np.ndarray) -> str:
    """What the project's STT hears in 8 kHz audio."""
    from appliance.agent.engines import get_stt
    from appliance.speech.config import SpeechConfig

    return get_stt(SpeechConfig()).transcribe(np.asarray(pcm, np.int16), 8000)


def rms_dbfs(pcm: np.ndarray) -> float:
    x = np.asarray(pcm, np.float64)
    if len(x) == 0:
        return -120.0
    return 20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-3) / 32768.0)
