"""Running AMD over a recording as if it were live, and the pieces that needs.

- `read_wav(path)`: any WAV sox writes (PCM 8/16/24/32, float, µ-law, A-law, extensible; any
  rate; mono or the first channel) as int16 at 8 kHz.
- `load_stt()`: a transcriber `fn(pcm_int16_8k) -> str`: the project's STT engine if it is built
  (`appliance.speech.stt`), else Whisper tiny.en through sherpa-onnx from the model mirror.
- `run_live(pcm, ...)`: feeds 20 ms frames to an `AmdDetector`; a transcript requested at audio
  time t is delivered at t + the STT's measured wall time (one STT worker, as on a call), so
  `decision_ms` is what a live call would see on this machine. `stt_clock="cpu"` uses the
  call's CPU time instead: what one core of its own would take (on a machine shared with other
  work, wall time is mostly waiting for a core).
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import LINE_RATE, SAMPLES_PER_FRAME, Resampler, alaw_decode, ulaw_decode
from ..errors import ApplianceError, ModelError
from .amd import AmdDetector, AmdResult
from .config import AmdConfig


class AudioFileError(ApplianceError):
    """A WAV file is missing, truncated, empty or in an encoding we cannot read."""


_EXT_PCM, _EXT_FLOAT, _EXT_ALAW, _EXT_ULAW = 1, 3, 6, 7


def read_wav(path: str | Path) -> np.ndarray:
    """Decode a WAV file to mono int16 at 8 kHz (resampled if needed)."""
    pcm, rate = read_wav_native(path)
    if rate != LINE_RATE:
        r = Resampler(rate, LINE_RATE)
        out = np.concatenate([r.process(pcm), r.process(np.zeros(rate // 10, dtype=np.int16))])
        # Drop the resampler's filter delay so audio times stay those of the file.
        delay = _resampler_delay(rate)
        pcm = np.ascontiguousarray(out[delay:delay + len(pcm) * LINE_RATE // rate])
    return pcm


_DELAYS: dict[int, int] = {}


def _resampler_delay(rate: int) -> int:
    """Output samples by which Resampler(rate, 8000) delays its input (measured on an impulse)."""
    if rate not in _DELAYS:
        x = np.zeros(rate, dtype=np.int16)
        pos = rate // 2
        x[pos] = 30000
        r = Resampler(rate, LINE_RATE)
        y = np.concatenate([r.process(x), r.process(np.zeros(rate // 10, dtype=np.int16))]).astype(np.float64)
        _DELAYS[rate] = max(0, int(np.argmax(np.abs(y))) - pos * LINE_RATE // rate)
    return _DELAYS[rate]


def read_wav_native(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a WAV file to mono int16 at its own rate."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise AudioFileError(f"{p}: no such file") from None
    except OSError as exc:
        raise AudioFileError(f"{p}: cannot read ({exc.strerror})") from None
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioFileError(f"{p}: not a WAV file (no RIFF/WAVE header)")
    if data[:4] == b"RIFX":
        raise AudioFileError(f"{p}: big-endian WAV (RIFX) is not supported")
    fmt = None
    body = None
    i = 12
    while i + 8 <= len(data):
        cid = data[i:i + 4]
        size = struct.unpack_from("<I", data, i + 4)[0]
        chunk = data[i + 8:i + 8 + size]
        if cid == b"fmt ":
            if len(chunk) < 16:
                raise AudioFileError(f"{p}: truncated fmt chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
            if tag == 0xFFFE and len(chunk) >= 26:
                tag = struct.unpack_from("<H", chunk, 24)[0]    # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            body = chunk          # a truncated data chunk keeps what is there
        i += 8 + size + (size & 1)
    if fmt is None:
        raise AudioFileError(f"{p}: no fmt chunk: not a valid WAV file")
    if body is None:
        raise AudioFileError(f"{p}: no data chunk: the file holds no audio")
    tag, channels, rate, block_align, bits = fmt
    if channels < 1 or rate < 1000 or rate > 192000:
        raise AudioFileError(f"{p}: implausible format ({channels} channels, {rate} Hz)")
    width = bits // 8 if bits else 0
    if tag in (_EXT_ALAW, _EXT_ULAW):
        width = 1
    if width < 1:
        raise AudioFileError(f"{p}: unsupported sample size of {bits} bits")
    frames = len(body) // (width * channels)
    if frames == 0:
        raise AudioFileError(f"{p}: the WAV file is empty (0 samples)")
    body = body[: frames * width * channels]
    if tag == _EXT_ULAW:
        x = ulaw_decode(body).astype(np.int16)
    elif tag == _EXT_ALAW:
        x = alaw_decode(body).astype(np.int16)
    elif tag == _EXT_PCM and width == 1:
        x = ((np.frombuffer(body, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag == _EXT_PCM and width == 2:
        x = np.frombuffer(body, dtype="<i2").astype(np.int16)
    elif tag == _EXT_PCM and width == 3:
        b = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        x = ((b[:, 2].astype(np.int8).astype(np.int32) << 8) | b[:, 1]).astype(np.int16)
    elif tag == _EXT_PCM and width == 4:
        x = (np.frombuffer(body, dtype="<i4") >> 16).astype(np.int16)
    elif tag == _EXT_FLOAT and width in (4, 8):
        f = np.frombuffer(body, dtype="<f4" if width == 4 else "<f8")
        x = np.clip(np.nan_to_num(f) * 32767.0, -32768, 32767).astype(np.int16)
    else:
        raise AudioFileError(f"{p}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    if channels > 1:
        x = x.reshape(-1, channels)[:, 0].copy()
    return np.ascontiguousarray(x), int(rate)


# ------------------------------------------------------------------------------------------ STT
def models_mirror() -> Path | None:
    env = os.environ.get("APPLIANCE_MODELS_MIRROR")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[2].parent / "shared" / "models"
    return guess if guess.is_dir() else None


def load_stt(threads: int = 1, speech_config=None):
    """A transcriber `fn(pcm_int16_8k) -> str`, and its name.

    The speech area's configured engine when it loads (`appliance.speech.stt.create_stt`); else
    Whisper tiny.en straight from the model mirror."""
    try:
        from dataclasses import replace

        from ..speech import stt as stt_mod
        from ..speech.config import SpeechConfig
        cfg = speech_config or SpeechConfig()
        cfg = replace(cfg, stt=replace(cfg.stt, threads=threads))
        engine = stt_mod.create_stt(cfg)
        return (lambda pcm: engine.transcribe(pcm, sample_rate=LINE_RATE)), f"appliance.speech.stt:{engine.name}"
    except (ImportError, AttributeError, ModelError, ApplianceError):
        pass
    import sherpa_onnx
    mirror = models_mirror()
    d = mirror / "whisper-tiny.en-sherpa" if mirror else None
    if d is None or not (d / "tiny.en-encoder.int8.onnx").is_file():
        raise ModelError("Whisper tiny.en not found: set APPLIANCE_MODELS_MIRROR to the folder holding "
                         "whisper-tiny.en-sherpa/, or run without transcripts (--no-stt)")
    rec = sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(d / "tiny.en-encoder.int8.onnx"), decoder=str(d / "tiny.en-decoder.int8.onnx"),
        tokens=str(d / "tiny.en-tokens.txt"), language="en", task="transcribe", num_threads=threads)

    def transcribe(pcm: np.ndarray) -> str:
        # Upsample here: sherpa would do it too, but logs a line on every stream.
        up = Resampler(LINE_RATE, 16000)
        x = np.concatenate([up.process(np.asarray(pcm, dtype=np.int16)), up.process(np.zeros(160, dtype=np.int16))])
        s = rec.create_stream()
        s.accept_waveform(16000, x.astype(np.float32) / 32768.0)
        rec.decode_stream(s)
        return s.result.text.strip()

    return transcribe, "whisper-tiny.en(sherpa-onnx)"


# ------------------------------------------------------------------------------------- runner
@dataclass
class LiveRun:
    """What happened when a recording was played to the detector."""

    result: AmdResult
    beep_ms: int | None
    greeting_end_ms: int | None
    transcript: str
    stt_calls: int = 0
    stt_ms: list[float] = field(default_factory=list)        # wall time per STT call
    stt_cpu_ms: list[float] = field(default_factory=list)    # CPU time per STT call


def run_live(pcm: np.ndarray, config: AmdConfig | None = None, stt=None, *, stt_latency_ms: float | None = None,
             until_greeting_end: bool = True, stt_clock: str = "wall") -> LiveRun:
    """Play 8 kHz int16 `pcm` to an `AmdDetector` frame by frame.

    `stt`: transcriber or None (timing and tones only). A transcript is delivered at request
    time + the measured STT wall time (CPU time with `stt_clock="cpu"`; `stt_latency_ms` if
    given). A transcriber may report its own `last_timing = (wall_ms, cpu_ms)` (a memo replaying
    a measured call). At the end of the audio an undecided detector reports `unknown` /
    `end_of_audio`."""
    if stt_clock not in ("wall", "cpu"):
        raise ValueError(f"stt_clock: got {stt_clock!r}, expected 'wall' or 'cpu'")
    cfg = config or AmdConfig()
    if stt is None and cfg.use_transcript:
        from dataclasses import replace
        cfg = replace(cfg, use_transcript=False)
    det = AmdDetector(cfg, LINE_RATE)
    n = SAMPLES_PER_FRAME
    in_flight: tuple[float, str] | None = None
    calls, stt_ms, stt_cpu = 0, [], []
    result = None
    for i in range(0, len(pcm) - n + 1, n):
        text = None
        if in_flight is not None and det.t_ms + 20 >= in_flight[0]:
            text, in_flight = in_flight[1], None
        r = det.feed(pcm[i:i + n], transcript=text)
        result = result or r
        if stt is not None and in_flight is None:
            req = det.stt_request()
            if req is not None:
                t0, c0 = time.perf_counter(), time.process_time()
                said = stt(req)
                wall, cpu = 1000.0 * (time.perf_counter() - t0), 1000.0 * (time.process_time() - c0)
                timing = getattr(stt, "last_timing", None)
                if timing is not None:
                    wall, cpu = timing
                calls += 1
                stt_ms.append(wall)
                stt_cpu.append(cpu)
                lat = stt_latency_ms if stt_latency_ms is not None else (cpu if stt_clock == "cpu" else wall)
                in_flight = (det.t_ms + lat, said)
        if result is not None and (det.greeting_ended or not until_greeting_end):
            break
    if result is None:
        result = AmdResult("unknown", int(det.t_ms), "end_of_audio")
    return LiveRun(result=result, beep_ms=det.beep_ms, greeting_end_ms=det.greeting_end_ms,
                   transcript=det.transcript, stt_calls=calls, stt_ms=stt_ms, stt_cpu_ms=stt_cpu)
