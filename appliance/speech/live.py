"""Transcribing a recording as if it arrived live, timing when the final transcript is ready.

Used by `appliance stt` and `appliance bench speech`. Audio is fed in 20 ms frames on a simulated
clock that advances with the audio and with the wall time of every decode (a decode holds up the
call's worker thread, as it would live). A VAD runs beside the STT stream; when the caller pauses
for `speculate_after_ms`, the stream decodes speculatively (`partial()`), so that if the caller has
finished, the transcript is already there when the turn ends.

`final_ms` = (clock time at which the final transcript exists) - (audio time at which the last
speech ended).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..detect.vad import Vad
from .config import VadConfig

FRAME = 160   # 20 ms at 8 kHz


@dataclass
class LiveResult:
    text: str
    final_ms: float | None          # None when no speech was heard
    speech_end_ms: float | None
    ready_at_ms: float | None = None  # simulated clock time at which the final transcript existed
    speculative_decodes: int = 0
    decode_ms: list[float] = field(default_factory=list)


def transcribe_live(engine, pcm8k: np.ndarray, vad_config: VadConfig | None = None,
                    speculate_after_ms: float = 32.0) -> LiveResult:
    """Run `engine.stream()` over int16 8 kHz audio as if live (see module doc)."""
    stream = engine.stream()
    vad = Vad(vad_config, 8000)
    now = 0.0                  # simulated clock, ms
    ready_at = None            # clock time at which the stream's current text was complete
    speech_end = None
    spoke = False
    spec = 0
    decodes: list[float] = []
    for i in range(0, len(pcm8k), FRAME):
        frame = pcm8k[i:i + FRAME]
        now = max(now, (i + len(frame)) / 8.0)
        was_ready = getattr(stream, "ready", True)
        t0 = time.perf_counter()
        stream.accept(frame)
        for ev in vad.feed(frame):
            if ev.kind == "speech_start":
                spoke, speech_end = True, None
            else:
                speech_end = ev.t_ms
        dt = (time.perf_counter() - t0) * 1000
        now += dt
        if not was_ready and getattr(stream, "ready", True):
            ready_at = now
        pause_ms = getattr(stream, "pause_ms", vad.pause_ms) if (spoke or vad.is_speech) else 0.0
        if vad.is_speech and pause_ms >= speculate_after_ms and not getattr(stream, "ready", True):
            t0 = time.perf_counter()
            stream.partial()
            dt = (time.perf_counter() - t0) * 1000
            now += dt
            decodes.append(dt)
            spec += 1
            ready_at = now
    if spoke and speech_end is None:          # speech ran to the end of the file
        speech_end = vad.time_ms - vad.pause_ms
    was_ready = getattr(stream, "ready", True)
    t0 = time.perf_counter()
    text = stream.finalize()
    dt = (time.perf_counter() - t0) * 1000
    now += dt
    if not was_ready or ready_at is None:
        ready_at = now
        decodes.append(dt)
    final_ms = None if speech_end is None else max(0.0, ready_at - speech_end)
    return LiveResult(text=text, final_ms=final_ms, speech_end_ms=speech_end, ready_at_ms=ready_at,
                      speculative_decodes=spec,
                      decode_ms=decodes)
