"""`appliance amd FILE.wav --json`: the JSON contract on every WAV encoding sox writes, and clear errors."""
from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.detect.amd_run import AudioFileError, read_wav, read_wav_native

REPO = Path(__file__).resolve().parents[2]
APPLIANCE = [sys.executable, "-m", "appliance"]
RATE = 8000


def _greeting_with_beep(path: Path) -> tuple[int, int]:
    """espeak-ng greeting, a 1 kHz beep; returns (speech_end_ms, beep_end_ms)."""
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "--stdout",
                          "Hi, you have reached Sam. I can't take your call right now. Please leave a message after the tone."],
                         capture_output=True, check=True).stdout
    from appliance.audio import Resampler
    speech = Resampler(22050, RATE).process(np.frombuffer(wav[44:len(wav) - (len(wav) - 44) % 2], dtype="<i2"))
    speech = speech.astype(np.float64) * 0.5
    t = np.arange(int(0.4 * RATE)) / RATE
    beep = 8000 * np.sin(2 * np.pi * 1000 * t)
    lead, gap = np.zeros(int(0.5 * RATE)), np.zeros(int(0.6 * RATE))
    x = np.concatenate([lead, speech, gap, beep, np.zeros(2 * RATE)])
    x += np.random.default_rng(1).normal(0, 30, len(x))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(x, -32768, 32767).astype(np.int16).tobytes())
    speech_end = 500 + 1000 * len(speech) // RATE
    return speech_end, speech_end + 600 + 400


@pytest.fixture(scope="module")
def greeting(tmp_path_factory):
    d = tmp_path_factory.mktemp("amdcli")
    src = d / "greeting.wav"
    _, beep_end = _greeting_with_beep(src)
    return d, src, beep_end


def _run(*args):
    return subprocess.run([*APPLIANCE, "amd", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("enc,rate", [(["-e", "mu-law", "-b", "8"], 8000), (["-e", "a-law", "-b", "8"], 8000),
                                      (["-e", "signed-integer", "-b", "16"], 16000), (["-e", "mu-law", "-b", "8"], 16000),
                                      (["-e", "floating-point", "-b", "32"], 8000), (["-e", "signed-integer", "-b", "24"], 8000)])
def test_json_contract_on_sox_encodings(greeting, enc, rate):
    d, src, beep_end = greeting
    out = d / f"g_{enc[1]}_{enc[3]}_{rate}.wav"
    subprocess.run(["sox", "-q", str(src), *enc, "-r", str(rate), str(out)], check=True)
    # The reader decodes each encoding to the same audio (within G.711 / resampling error).
    ref = read_wav(src).astype(np.float64)
    got = read_wav(out).astype(np.float64)
    n = min(len(ref), len(got))
    shift = int(np.argmax(np.correlate(got[:n][8000:16000], ref[:n][8000:16000], "full"))) - 7999
    assert abs(shift) <= 2
    p = _run(out, "--json", "--no-stt")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert set(res) == {"label", "decision_ms", "beep_ms", "cause"}
    assert res["label"] == "machine" and isinstance(res["decision_ms"], int) and isinstance(res["cause"], str)
    assert isinstance(res["beep_ms"], int) and abs(res["beep_ms"] - beep_end) <= 40


def test_with_transcripts_the_greeting_words_decide(greeting):
    d, src, beep_end = greeting
    p = _run(src, "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["label"] == "machine"
    assert res["beep_ms"] is not None and abs(res["beep_ms"] - beep_end) <= 40
    assert res["decision_ms"] < beep_end          # decided before the beep, on words or length


def test_broken_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.wav"
    subprocess.run(["sox", "-q", "-n", "-r", "8000", "-e", "mu-law", "-b", "8", str(empty), "trim", "0", "0"], check=True)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00")
    for f, words in [(empty, "empty"), (garbage, "not a WAV"), (zero, "not a WAV"), (truncated, "fmt")]:
        p = _run(f, "--json")
        assert p.returncode == 1, (f, p.stdout, p.stderr)
        assert words in p.stderr and str(f.name) in p.stderr
        assert p.stdout == ""
        with pytest.raises(AudioFileError):
            read_wav_native(f)
    p = _run(tmp_path / "nope.wav", "--json")
    assert p.returncode == 2 and "no such file" in p.stderr
