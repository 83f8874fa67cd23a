"""`appliance stt FILE --json` and `appliance say` as other tools use them (DESIGN.md contracts)."""
from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from appliance.speech import corpus
from appliance.speech.wavio import read_wav, write_wav

REPO = Path(__file__).resolve().parents[2]


def _cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def test_say_then_stt_json(tmp_path, speech_models):
    out = tmp_path / "say.wav"
    p = _cli("say", "Please hold, I will check the 2 dates.", "-o", str(out))
    assert p.returncode == 0, p.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
        assert 1.0 < w.getnframes() / 8000 < 6.0
    # to the line and back: µ-law with noise, padded, as a recording from a call would be
    line = corpus.to_line(np.concatenate((np.zeros(2400, np.int16), read_wav(str(out), 8000),
                                          np.zeros(8000, np.int16))), 25.0, np.random.default_rng(0))
    rec = tmp_path / "call.wav"
    write_wav(str(rec), line, 8000, "ulaw")
    p = _cli("stt", str(rec), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert set(r) >= {"text", "engine", "final_ms"}
    assert isinstance(r["text"], str) and r["engine"] == "whisper-ct2:whisper-tiny.en-ct2"
    assert isinstance(r["final_ms"], int) and r["final_ms"] >= 0
    e, n = corpus.wer("Please hold, I will check the two dates.", r["text"])
    assert e / n <= 0.3, r["text"]


def test_say_bad_arguments(tmp_path):
    out = tmp_path / "x.wav"
    p = _cli("say", "Hello.", "-o", str(out), "--rate", "100")
    assert p.returncode == 2 and "--rate" in p.stderr and not out.exists()
    p = _cli("say", "Hello.", "-o", str(out), "--encoding", "ulaw", "--rate", "16000")
    assert p.returncode == 2 and "8000" in p.stderr


def test_stt_on_silence_and_on_a_bad_file(tmp_path, speech_models):
    quiet = tmp_path / "quiet.wav"
    write_wav(str(quiet), np.zeros(16000, np.int16), 16000)
    p = _cli("stt", str(quiet), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["text"] == "" and json.loads(p.stdout)["final_ms"] is None
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    p = _cli("stt", str(junk), "--json")
    assert p.returncode != 0 and "junk.wav" in p.stderr and "Traceback" not in p.stderr
    p = _cli("stt", str(tmp_path / "absent.wav"))
    assert p.returncode != 0 and "absent.wav" in p.stderr and "Traceback" not in p.stderr


def test_models_list_and_verify_json(speech_models):
    p = _cli("models", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = {m["name"]: m for m in json.loads(p.stdout)["models"]}
    assert rows["whisper-tiny.en"]["status"] == "ok" and rows["piper-joe-medium"]["kind"] == "tts"
    p = _cli("models", "verify", "silero-vad", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["ok"] is True
