"""The smart-turn v3 semantic end-of-turn model ("has the speaker finished?"), run with onnxruntime.

The model is a Whisper-tiny encoder with a classifier head, trained on 16 kHz speech. It takes the
last <= 8 s of the turn as 80 x 800 Whisper log-mel features and returns P(turn complete).
Phone audio is 8 kHz: callers upsample with `appliance.audio.Resampler` first (fed 8 kHz samples
as if they were 16 kHz the model fails silently, pipecat#3844).

The feature extraction below reproduces `transformers.WhisperFeatureExtractor(chunk_length=8)`
(as pipecat's smart-turn code uses it): zero-mean/unit-variance waveform, centred 400-point STFT
with a periodic Hann window and hop 160, Slaney mel filterbank (80 bands, 0-8 kHz), log10 with a
1e-10 floor, dynamic range clamped to 8 (log10 units), scaled as (x + 4) / 4, last frame dropped.

The model file ships inside the `pipecat-ai` wheel (installed with `--no-deps`, only for the file);
a models mirror folder (`APPLIANCE_MODELS_MIRROR` or `../shared/models` beside the repo) is searched
as well, under `smart-turn/`.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_RATE = 16000
WINDOW_SAMPLES = 8 * MODEL_RATE  # 128000: the model's fixed 8 s input

_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.atleast_1d(np.asarray(freq, dtype=np.float64))
    mels = 3.0 * freq / 200.0
    log = freq >= 1000.0
    mels[log] = 15.0 + np.log(freq[log] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    freq = 200.0 * mels / 3.0
    log = mels >= 15.0
    freq[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log] - 15.0))
    return freq


def _mel_filterbank() -> np.ndarray:
    """(201 FFT bins, 80 mels) Slaney-normalised triangles over 0..8 kHz."""
    n_bins = _N_FFT // 2 + 1
    mel_edges = np.linspace(_hz_to_mel(0.0)[0], _hz_to_mel(MODEL_RATE / 2)[0], _N_MELS + 2)
    hz_edges = _mel_to_hz(mel_edges)
    fft_hz = np.linspace(0, MODEL_RATE // 2, n_bins)
    widths = np.diff(hz_edges)
    slopes = hz_edges[None, :] - fft_hz[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    fb *= (2.0 / (hz_edges[2:_N_MELS + 2] - hz_edges[:_N_MELS]))[None, :]
    return fb


_WINDOW = np.hanning(_N_FFT + 1)[:-1]   # periodic Hann, as torch.hann_window
_MEL_T = _mel_filterbank().T            # (80, 201)


def log_mel_features(audio_16k: np.ndarray) -> np.ndarray:
    """Whisper log-mel features (80, 800) float32 of float audio at 16 kHz, padded/cut to 8 s at the end."""
    x = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
    if x.size < WINDOW_SAMPLES:
        x = np.pad(x, (0, WINDOW_SAMPLES - x.size))
    else:
        x = x[:WINDOW_SAMPLES]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)   # float32, like the reference
    pad = _N_FFT // 2
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2      # (801, 201)
    mel = np.maximum(1e-10, _MEL_T @ power.T)                         # (80, 801)
    log = np.log10(mel)[:, :-1]
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def find_model() -> Path | None:
    """Where the smart-turn ONNX file is on this machine, or None."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("pipecat")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates.append(Path(root) / "audio" / "turn" / "smart_turn" / "data" / MODEL_FILE)
    mirror = os.environ.get("APPLIANCE_MODELS_MIRROR")
    if mirror:
        candidates.append(Path(mirror) / "smart-turn" / MODEL_FILE)
    repo_root = Path(__file__).resolve().parents[2]
    candidates.append(repo_root.parent / "shared" / "models" / "smart-turn" / MODEL_FILE)
    for path in candidates:
        if path.is_file():
            return path
    return None


class SmartTurnModel:
    """P(turn complete) from the last <= 8 s of a turn. Thread-safe; ~50 ms per call on one core."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int = 1):
        found = Path(path) if path else find_model()
        if found is None or not found.is_file():
            raise ModelError(
                f"smart-turn model {MODEL_FILE} not found"
                + (f" at {path}" if path else "")
                + ": install it with `pip install --no-deps pipecat-ai` or put it in the models mirror under smart-turn/"
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"onnxruntime is needed for the smart-turn model: pip install onnxruntime ({exc})") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(found), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types; a corrupt file must say which file
            raise ModelError(f"cannot load smart-turn model {found}: {exc}") from exc
        self.path = found

    def probability(self, audio_16k: np.ndarray) -> float:
        """P(complete) for int16 or float audio at 16 kHz (only the last 8 s are used)."""
        a = np.asarray(audio_16k)
        x = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
        if x.size > WINDOW_SAMPLES:
            x = x[-WINDOW_SAMPLES:]
        elif x.size < WINDOW_SAMPLES:   # the model was trained with silence padded before the turn
            x = np.pad(x, (WINDOW_SAMPLES - x.size, 0))
        feats = log_mel_features(x)[None, :, :]
        out = self._session.run(None, {"input_features": feats})
        return float(np.asarray(out[0]).reshape(-1)[0])


_shared: SmartTurnModel | None = None
_shared_lock = threading.Lock()


def shared_model() -> SmartTurnModel:
    """One model per process (the session is read-only and thread-safe); raises ModelError if missing."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SmartTurnModel()
        return _shared
