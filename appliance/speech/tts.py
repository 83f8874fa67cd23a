"""Text to speech: sherpa-onnx `OfflineTts` with a Piper voice, streamed sentence by sentence.

`create_tts(cfg)` loads a voice (verified through the model registry, prepared once for sherpa-onnx
2.x, see `piper.py`); `get_tts(cfg)` returns the process-wide shared instance. `Tts.synthesize`
normalises the text for the phone (`normalize.py`), phonemizes it, and generates one sentence at a
time, handing int16 audio at the requested rate (resampled with the native speexdsp resampler) to
`on_audio` as soon as each sentence exists. `on_audio` returning False, or `cancel` being set,
stops at once: sherpa-onnx's per-sentence callback returns 0 and no further audio is delivered.

Thread safety: one `OfflineTts` is shared by all calls; sherpa-onnx's synthesis is thread safe and
releases the GIL. A reply's first clause is urgent and never waits for another call's synthesis
(four replies synthesized at once from four threads took 2.6 s under one lock, 1.3 s without, one
thread each, here); the later clauses, made while the first plays, go one at a time in the
process, so that they do not take both cores from the calls' audio loops (with no lock at all,
barge-in stop in `appliance bench call` went from 120 to 143 ms on average, 6 interruptions
each). Phonemizing (espeak-ng, global state) has its own lock in `piper.py`.

Phrase cache (`phrase`, `cached`, `prewarm`): audio of the greeting, fillers, the handoff line and
short opening clauses is kept (LRU, `PHRASE_CACHE_SIZE`), so a reply that starts with "Sure," does
not wait for the voice. Each text's lead-in silence (~30-50 ms in Piper's output) is trimmed.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ..errors import ModelError
from .config import SpeechConfig
from .normalize import normalize, split_sentences

OnAudio = Callable[[np.ndarray], bool]
PHRASE_CACHE_SIZE = 256   # phrases kept (8 kHz: ~16 KB per second of speech)
LEAD_SILENCE = 32      # |sample| at or below this before a text's first sound is silence (trimmed)


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
        # phrase cache: audio of fixed phrases and short clauses, reused instead of synthesized
        self._phrases: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._phrases_lock = threading.Lock()
        self.phrase_cache_size = PHRASE_CACHE_SIZE   # 0: no phrase cache
        self._prewarm_lock = threading.Lock()
        self._background = threading.Lock()   # one non-urgent synthesis at a time (see synthesize)

    def synthesize(self, text: str, on_audio: OnAudio, sample_rate: int = 8000,
                   cancel: threading.Event | None = None, speed: float | None = None,
                   keep: bool = False, urgent: bool = True) -> bool:
        """Speak `text`, streaming int16 audio at `sample_rate` to `on_audio` in chunks of
        `chunk_ms` as each sentence is generated. Returns False if cancelled (on_audio returned
        False or `cancel` was set), True when all text was spoken. `speed` overrides the
        configured speaking rate for this call. `keep`: the finished audio goes into the phrase
        cache. `urgent=False`
        (a reply's later clauses, made while the first plays): one such synthesis at a time in
        the process, so they never take both cores from the calls' audio loops (barge-in)."""
        chunk = max(1, sample_rate * self.chunk_ms // 1000)
        if keep and speed is None:
            parts: list[np.ndarray] = []
            outer = on_audio

            def on_audio(a: np.ndarray) -> bool:   # noqa: F811 - the caller's, plus a copy kept
                parts.append(np.array(a, dtype=np.int16))
                return outer(a)

            done = self._synthesize(text, on_audio, sample_rate, cancel, speed, chunk, urgent)
            if done:
                self._keep(text, sample_rate, np.concatenate(parts) if parts else np.zeros(0, np.int16))
            return done
        return self._synthesize(text, on_audio, sample_rate, cancel, speed, chunk, urgent)

    def _synthesize(self, text: str, on_audio: OnAudio, sample_rate: int, cancel: threading.Event | None,
                    speed: float | None, chunk: int, urgent: bool = True) -> bool:
        import sherpa_onnx

        from ..audio import Resampler
        from .piper import phonemize

        resampler = Resampler(self.voice_sample_rate, sample_rate) if sample_rate != self.voice_sample_rate else None
        state = {"cancelled": False}

        def deliver(pcm16: np.ndarray) -> bool:
            for i in range(0, len(pcm16), chunk):
                if (cancel is not None and cancel.is_set()) or on_audio(pcm16[i:i + chunk]) is False:
                    state["cancelled"] = True
                    return False
            return True

        lead = {"on": True}

        def callback(samples, _progress) -> int:
            if state["cancelled"] or (cancel is not None and cancel.is_set()):
                state["cancelled"] = True
                return 0
            pcm = _to_int16(np.asarray(samples, dtype=np.float32))
            if resampler is not None:
                pcm = resampler.process(pcm)
            if lead["on"]:
                # the voice starts each text with ~30-50 ms of near silence: the caller would wait
                # for it, so it goes (10 ms are kept, not to start on a click)
                loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > LEAD_SILENCE)
                if not len(loud):
                    return 1
                lead["on"] = False
                pcm = pcm[max(0, int(loud[0]) - sample_rate // 100):]
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
            # sherpa-onnx's synthesis is thread safe (phonemes are made above, under their own
            # lock): urgent ones run at once (tests/speech/test_tts.py checks the words)
            if urgent:
                self._tts.generate(sentence, gen, callback)
            else:
                with self._background:
                    self._tts.generate(sentence, gen, callback)
            if state["cancelled"]:
                return False
        if resampler is not None and not state["cancelled"]:
            tail = resampler.process(np.zeros(getattr(resampler, "latency_samples", 0) or 64, dtype=np.int16))
            if len(tail) and not deliver(tail):
                return False
        return not state["cancelled"]

    # ---- phrase cache ---------------------------------------------------------------------------
    def cached(self, text: str, sample_rate: int = 8000) -> np.ndarray | None:
        """The cached audio of `text` (at the voice's configured speed), or None."""
        key = (text.strip(), sample_rate)
        with self._phrases_lock:
            pcm = self._phrases.get(key) if self.phrase_cache_size > 0 else None
            if pcm is not None:
                self._phrases.move_to_end(key)
            return pcm

    def phrase(self, text: str, sample_rate: int = 8000) -> np.ndarray:
        """Audio of `text` from the phrase cache, synthesized (and kept) on first use. For the
        greeting, fillers, the handoff line and short opening clauses ("Sure,", "Thanks,"), which
        calls say again and again: a reply can start without waiting for the voice."""
        pcm = self.cached(text, sample_rate)
        if pcm is None:
            pcm = self.synthesize_to_array(text, sample_rate)
            self._keep(text, sample_rate, pcm)
        return pcm

    def prewarm(self, texts, sample_rate: int = 8000) -> int:
        """Synthesize into the cache every text of `texts` not in it yet; returns how many were
        made. One prewarm at a time (calls starting together share the work)."""
        made = 0
        with self._prewarm_lock:
            for text in texts:
                key = (text.strip(), sample_rate)
                with self._phrases_lock:
                    if key in self._phrases:
                        continue
                self._keep(text, sample_rate, self.synthesize_to_array(text, sample_rate))
                made += 1
        return made

    def _keep(self, text: str, sample_rate: int, pcm: np.ndarray) -> None:
        if self.phrase_cache_size <= 0:
            return                      # cache off: keep nothing (and drop nothing already kept)
        pcm = np.asarray(pcm, dtype=np.int16)
        pcm.setflags(write=False)
        with self._phrases_lock:
            self._phrases[(text.strip(), sample_rate)] = pcm
            while len(self._phrases) > self.phrase_cache_size:
                self._phrases.popitem(last=False)

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
