"""Reading and writing WAV files for the speech commands.

`read_wav(path, sample_rate)` accepts what sox writes for speech: PCM 8/16/24/32-bit, 32/64-bit
float, µ-law and A-law (format tag 1, 3, 6, 7 and WAVE_FORMAT_EXTENSIBLE), mono or more channels
(mixed down), any rate (resampled with the native resampler). Anything else is handed to `sox`
if it is installed.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np

from ..errors import ApplianceError

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class AudioFileError(ApplianceError):
    """An audio file cannot be read."""


def _parse(path: Path) -> tuple[np.ndarray, int]:
    data = path.read_bytes()
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioFileError(f"{path}: not a RIFF/WAVE file")
    if data[:4] == b"RIFX":
        raise AudioFileError(f"{path}: big-endian RIFX is not supported")
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            payload = body       # sox writes 0xFFFFFFFF sizes when streaming: body is then the rest
        pos += 8 + size + (size & 1)
    if fmt is None or payload is None:
        raise AudioFileError(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if channels < 1 or rate < 1000:
        raise AudioFileError(f"{path}: {channels} channels at {rate} Hz is not audio we can use")
    frames = len(payload) // max(align, 1)
    payload = payload[:frames * align]
    if tag == _PCM and bits == 16:
        x = np.frombuffer(payload, "<i2").astype(np.float32) / 32768
    elif tag == _PCM and bits == 8:
        x = (np.frombuffer(payload, np.uint8).astype(np.float32) - 128) / 128
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(payload, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / (1 << 23)
    elif tag == _PCM and bits == 32:
        x = np.frombuffer(payload, "<i4").astype(np.float32) / 2**31
    elif tag == _FLOAT and bits in (32, 64):
        x = np.frombuffer(payload, "<f4" if bits == 32 else "<f8").astype(np.float32)
    elif tag in (_MULAW, _ALAW) and bits == 8:
        from ..audio import alaw_decode, ulaw_decode

        x = (ulaw_decode if tag == _MULAW else alaw_decode)(payload).astype(np.float32) / 32768
    else:
        raise AudioFileError(f"{path}: WAV format tag {tag} with {bits} bits is not supported")
    x = x.reshape(-1, channels).mean(axis=1) if channels > 1 else x
    return x, rate


def _via_sox(path: Path, sample_rate: int) -> np.ndarray:
    if not shutil.which("sox"):
        raise AudioFileError(f"{path}: cannot read this format without sox (apt install sox libsox-fmt-all)")
    proc = subprocess.run(["sox", str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1",
                           "-r", str(sample_rate), "-"], capture_output=True)
    if proc.returncode != 0:
        raise AudioFileError(f"{path}: sox cannot read it: {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, np.int16).copy()


def read_wav(path: str | Path, sample_rate: int = 8000) -> np.ndarray:
    """Mono int16 samples at `sample_rate` from an audio file."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        x, rate = _parse(path)
    except AudioFileError:
        return _via_sox(path, sample_rate)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    if rate == sample_rate:
        return pcm
    from ..audio import Resampler

    r = Resampler(rate, sample_rate)
    return np.concatenate((r.process(np.ascontiguousarray(pcm)), r.process(np.zeros(128, np.int16))))


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int, encoding: str = "pcm16") -> None:
    """Write mono int16 audio as 16-bit PCM, or as 'ulaw' / 'alaw' (format tags 7 / 6)."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    if encoding == "pcm16":
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            w.writeframes(pcm.astype("<i2").tobytes())
        return
    from ..audio import alaw_encode, ulaw_encode

    tag, body = {"ulaw": (_MULAW, ulaw_encode), "alaw": (_ALAW, alaw_encode)}[encoding]
    data = bytes(body(pcm))
    fmt = struct.pack("<HHIIHHH", tag, 1, sample_rate, sample_rate, 1, 8, 0)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    if len(data) & 1:
        riff += b"\0"
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
