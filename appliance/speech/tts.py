"""Text to speech: sherpa-onnx `OfflineTts` with a Piper voice, streamed sentence by sentence.

`create_tts(cfg)` loads a voice (verified through the model registry, prepared once for sherpa-onnx
2.x, see `piper.py`); `get_tts(cfg)` returns the process-wide shared instance. `Tts.synthesize`
normalises the text for the phone (`normalize.py`), phonemizes it, and generates one sentence at a
time, handing int16 audio at the requested rate (resampled with the native speexdsp resampler) to
`on_audio` as soon as each sentence exists. `on_audio` returning False, or `cancel` being set,
stops at once: sherpa-onnx's per-sentence callback returns 0 and no further audio is delivered.

Thread safety: one `OfflineTts` is shared by all calls; `generate` runs under a lock, taken per
sentence, so concurrent calls interleave sentence by sentence instead of one long reply blocking
another. sherpa-onnx releases the GIL while it computes.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import ModelError
from .config import SpeechConfig
from .normalize import normalize, split_sentences

OnAudio = Callable[[np.ndarray], bool]


class Tts:
    """A loaded voice. Create with `create_tts` / `get_tts`."""

    def __init__(self, voice: str, tts, voice_sample_rate: int, espeak_voice: str, speed: float = 1.0,
                 chunk_ms: int = 100):
        self.voice = voice
        self.name = f"piper:{voice}"
        self._tts = tts
        self.voice_sample_rate = voice_sample_rate
        self._espeak_voice = espeak_voice
        self.speed = speed
        self.chunk_ms = chunk_ms
        self._lock = threading.Lock()

    def synthesize(self, text: str, on_audio: OnAudio, sample_rate: int = 8000,
                   cancel: threading.Event | None = None, speed: float | None = None) -> bool:
        """Speak `text`, streaming int16 audio at `sample_rate` to `on_audio` in chunks of
        `chunk_ms` as each sentence is generated. Returns False if cancelled (on_audio returned
        False or `cancel` was set), True when all text was spoken. `speed` overrides the
        configured speaking rate for this call."""
        import sherpa_onnx

        from ..audio import Resampler
        from .piper import phonemize

        resampler = Resampler(self.voice_sample_rate, sample_rate) if sample_rate != self.voice_sample_rate else None
        chunk = max(1, sample_rate * self.chunk_ms // 1000)
        state = {"cancelled": False}

        def deliver(pcm16: np.ndarray) -> bool:
            for i in range(0, len(pcm16), chunk):
                if (cancel is not None and cancel.is_set()) or on_audio(pcm16[i:i + chunk]) is False:
                    state["cancelled"] = True
                    return False
            return True

        def callback(samples, _progress) -> int:
            if state["cancelled"] or (cancel is not None and cancel.is_set()):
                state["cancelled"] = True
                return 0
            pcm = _to_int16(np.asarray(samples, dtype=np.float32))
            if resampler is not None:
                pcm = resampler.process(pcm)
            return 1 if deliver(pcm) else 0

        for sentence in split_sentences(normalize(text)):
            if state["cancelled"] or (cancel is not None and cancel.is_set()):
                return False
            codepoints = phonemize(sentence, self._espeak_voice)
            if not codepoints:
                continue
            gen = sherpa_onnx.GenerationConfig()
            gen.phoneme_codepoints = codepoints
            gen.speed = speed or self.speed
            with self._lock:
                self._tts.generate(sentence, gen, callback)
            if state["cancelled"]:
                return False
        if resampler is not None and not state["cancelled"]:
            tail = resampler.process(np.zeros(getattr(resampler, "latency_samples", 0) or 64, dtype=np.int16))
            if len(tail) and not deliver(tail):
                return False
        return not state["cancelled"]

    def synthesize_to_array(self, text: str, sample_rate: int = 8000, speed: float | None = None) -> np.ndarray:
        """All of `text` as one int16 array at `sample_rate`."""
        parts: list[np.ndarray] = []
        self.synthesize(text, lambda a: parts.append(a.copy()) or True, sample_rate, speed=speed)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def time_to_first_audio_ms(self, text: str, sample_rate: int = 8000) -> float:
        """Wall time from the call to the first audio chunk (stops after it)."""
        t0 = time.perf_counter()
        self.synthesize(text, lambda _a: False, sample_rate)
        return (time.perf_counter() - t0) * 1000


def _to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def create_tts(cfg: SpeechConfig | None = None, registry=None) -> Tts:
    """Load the configured voice (verified, test-loaded in a child process when new)."""
    from .registry import ModelRegistry

    cfg = cfg or SpeechConfig()
    registry = registry or ModelRegistry.from_config(cfg)
    info = registry.info(cfg.tts.voice)
    if info.kind != "tts" or info.engine != "piper":
        raise ModelError(f"model {info.name!r} is a {info.kind}/{info.engine} model, not a Piper voice")
    return load_piper(registry, info.name, threads=cfg.tts.threads, speed=cfg.tts.speed)


def load_piper(registry, name: str, threads: int = 2, speed: float = 1.0) -> Tts:
    """Prepare (once) and load a Piper voice of the registry. Used by the child-process probe too."""
    try:
        import sherpa_onnx
    except ImportError:
        raise ModelError("TTS needs sherpa-onnx: pip install sherpa-onnx") from None
    from .piper import default_cache_dir, prepare_voice

    info = registry.info(name)
    folder = registry.path(name)
    model = folder / info.roles["model"]
    onnx, tokens, voice_cfg = prepare_voice(model, folder / info.roles["config"],
                                            default_cache_dir(registry.models_dir),
                                            info.files[info.roles["model"]]["sha256"])
    inference = voice_cfg.get("inference", {})
    vits = sherpa_onnx.OfflineTtsVitsModelConfig(
        model=str(onnx), tokens=str(tokens),
        noise_scale=float(inference.get("noise_scale", 0.667)),
        noise_scale_w=float(inference.get("noise_w", 0.8)),
        length_scale=float(inference.get("length_scale", 1.0)))
    config = sherpa_onnx.OfflineTtsConfig(
        model=sherpa_onnx.OfflineTtsModelConfig(vits=vits, num_threads=threads), max_num_sentences=1)
    tts = sherpa_onnx.OfflineTts(config)
    return Tts(name, tts, int(tts.sample_rate), voice_cfg.get("espeak", {}).get("voice", "en-us"), speed)


_cache_lock = threading.Lock()
_cache: dict[tuple, Tts] = {}


def get_tts(cfg: SpeechConfig | None = None) -> Tts:
    """The process-wide shared voice for this configuration (loaded once)."""
    cfg = cfg or SpeechConfig()
    key = (cfg.tts.voice, cfg.tts.threads, cfg.tts.speed, cfg.models_dir, cfg.mirror)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = create_tts(cfg)
        return _cache[key]
