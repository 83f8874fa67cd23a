"""Speech to text behind one interface, with partial and final results.

Engines (`speech.stt.engine`):
- `whisper`: sherpa-onnx `OfflineRecognizer.from_whisper` with Whisper tiny.en (int8). The embedded
  default here: the best engine these machines can install (measured in `appliance bench speech`).
  Whisper is not a streaming model, so its stream works by VAD segment: each stretch of speech is
  decoded once, as soon as the caller pauses (`partial()`, speculative, while the pause is still
  being timed by the endpointer); `finalize()` then only decodes audio that came after the last
  speculative decode, so the transcript is ready when the turn ends.
- `transducer`: a sherpa-onnx streaming zipformer transducer (the box's production engine,
  fetched through the registry): it decodes while the caller speaks; `partial()` is the running
  hypothesis, `finalize()` flushes the last frames.

Thread safety: engines are shared by all calls of a process (`get_stt`). sherpa-onnx recognizers
are thread safe, their streams are not (the maintainer, k2-fsa/sherpa-onnx#1450); all per-utterance
state lives in streams, and onnxruntime's `Run` is safe to call concurrently. So Whisper decodes of
different calls run at once, each on its own stream (sherpa-onnx releases the GIL while decoding):
no process-wide lock, which made the second of two calls that paused together wait a whole decode.
(The transducer engine, not the default, still serialises its decodes.)
Our streams belong to one call / one thread (the whisper stream creates a sherpa stream per decode;
the transducer stream's sherpa stream is only touched from its call's worker).
"""
from __future__ import annotations

import re
import threading
import time

import numpy as np

from ..detect.vad import WINDOW_MS
from ..errors import ModelError
from .config import SpeechConfig

LINE_RATE = 8000


def _f32(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if pcm.dtype in (np.float32, np.float64):
        return pcm.astype(np.float32)
    raise TypeError(f"STT wants int16 (or float) PCM, got {pcm.dtype}")


class SttStream:
    """Audio of one caller turn (or of a whole call, segment by segment)."""

    def accept(self, frame: np.ndarray) -> None:
        """Append int16 audio at the line rate (8 kHz)."""
        raise NotImplementedError

    def partial(self) -> str:
        """The transcript so far (may decode speculatively; blocking)."""
        raise NotImplementedError

    def finalize(self) -> str:
        """The final transcript of all audio accepted so far (blocking). The stream is then reset."""
        raise NotImplementedError

    def reset(self) -> None:
        """Drop all audio and results."""
        raise NotImplementedError


class SttEngine:
    """A loaded STT model. `name` says which (e.g. "whisper-ct2:whisper-tiny.en-ct2")."""

    name: str = "?"

    def transcribe(self, pcm: np.ndarray, sample_rate: int = LINE_RATE) -> str:
        """Transcribe a whole recording (blocking)."""
        raise NotImplementedError

    def stream(self) -> SttStream:
        raise NotImplementedError


# ---- offline engines, decoded per VAD segment ------------------------------------------------

class SegmentEngine(SttEngine):
    """An engine that decodes whole utterances (not streaming). Its stream (`WhisperStream`) cuts
    the line audio at the VAD's pauses and decodes each stretch of speech, speculatively while the
    caller's pause is still being timed. Subclasses implement `decode16k`."""

    vad_config = None
    MIN_SAMPLES = 1600    # < 0.1 s at 16 kHz: nothing to say (and Whisper would invent text)

    def decode16k(self, samples16k: np.ndarray, stop: threading.Event | None = None) -> str | None:
        """Decode float32 16 kHz samples of one utterance ("" for less than 0.1 s). None when
        `stop` was set before the decode finished: an engine that can, gives up part-way (the
        caller went on speaking, so the result would be stale)."""
        if len(samples16k) < self.MIN_SAMPLES:
            return ""
        if stop is not None and stop.is_set():
            return None
        return self._decode(np.asarray(samples16k, np.float32), stop)

    def _decode(self, samples16k: np.ndarray, stop: threading.Event | None = None) -> str | None:
        raise NotImplementedError

    def transcribe(self, pcm: np.ndarray, sample_rate: int = LINE_RATE) -> str:
        return self.decode16k(_to16k(pcm, sample_rate))

    def stream(self) -> WhisperStream:
        return WhisperStream(self)


# ---- Whisper (offline, decoded per VAD segment) ------------------------------------------------

# Whisper hallucinates on silence and near-silence; these outputs mean "nothing said".
WHISPER_NOISE = frozenset({"", ".", "you", "thank you.", "thanks for watching!", "[blank_audio]", "(silence)",
                           "[silence]"})


_SOUND_TAGS = re.compile(r"[\[(][^\])]*[\])]")    # "(wind blowing)", "[MUSIC]": sounds, not words


def whisper_text(text: str, noise: frozenset = WHISPER_NOISE) -> str:
    """Whisper's output without its descriptions of sounds, and its usual answers to silence
    (`noise`) taken for nothing. An engine that has Whisper's no-speech probability passes a
    smaller set: a caller's real "Thank you." must not be dropped."""
    text = " ".join(_SOUND_TAGS.sub(" ", text).split())
    return "" if text.lower() in noise else text


class WhisperEngine(SegmentEngine):
    """Whisper through sherpa-onnx. Audio is upsampled to 16 kHz with the native resampler (sherpa's
    own resampler logs on every stream and is slower)."""

    def __init__(self, model: str, recognizer, vad_config=None):
        self.model = model
        self.name = f"whisper:{model}"
        self._rec = recognizer
        self.vad_config = vad_config

    def _decode(self, samples16k: np.ndarray, stop: threading.Event | None = None) -> str:
        s = self._rec.create_stream()
        s.accept_waveform(16000, samples16k)
        self._rec.decode_stream(s)   # concurrent decodes are safe: see the module notes
        return whisper_text(s.result.text)


def _to16k(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    pcm = np.asarray(pcm)
    if sample_rate == 16000:
        return _f32(pcm)
    from ..audio import Resampler

    if pcm.dtype != np.int16:
        pcm = (np.clip(_f32(pcm), -1, 1) * 32767).astype(np.int16)
    r = Resampler(sample_rate, 16000)
    out = r.process(np.ascontiguousarray(pcm))
    tail = r.process(np.zeros(64, dtype=np.int16))
    return _f32(np.concatenate((out, tail)))


class WhisperStream(SttStream):
    """Segment-wise decoding (Whisper or any SegmentEngine) driven by its own VAD.

    Audio is split at pauses (the VAD's min_silence). Each finished segment is decoded once (its
    text is then fixed); the open segment is decoded speculatively by `partial()` and that result
    is reused by `finalize()` when no speech came after it."""

    _PAD_MS = 160        # audio kept before/after speech so word edges are not clipped
    # Silero's probability takes ~150-250 ms to sink below threshold - 0.15 after speech stops, but
    # leaves "certainly speech" (>= 0.9) within ~100 ms: that falling edge is when to speculate.
    # A window back at >= 0.9 after a speculative decode means the caller went on.
    SURE_SPEECH = 0.9
    _MAX_SEGMENT_MS = 15000   # a very long segment is cut (whisper's window is 30 s; cost grows)
    # Pauses shorter than this stay inside the segment: Whisper transcribes a whole sentence far
    # better than its pieces ("Hi," alone comes back empty or as noise; measured on the phone-band
    # set: WER 9 % for whole utterances, 14 % when cut at every 300 ms pause). Longer than any
    # end-of-turn wait, so within a turn all speech is one segment.
    JOIN_PAUSE_MS = 2000

    def __init__(self, engine: SegmentEngine):
        from ..audio import Resampler
        from ..detect.vad import Vad

        self.engine = engine
        self._vad = Vad(engine.vad_config, LINE_RATE)
        self._resampler = Resampler(LINE_RATE, 16000)
        self.reset()

    def reset(self) -> None:
        self._vad.reset()
        self._resampler.reset()
        self._audio16: list[np.ndarray] = []    # all 16 kHz audio of the open segment (+ pre-roll)
        self._n16 = 0
        self._base_ms = 0.0                      # audio time of self._audio16[0]
        self._seg_start_ms: float | None = None  # speech start of the open segment
        self._texts: list[str] = []              # fixed texts of finished segments
        self._spec: tuple[float, str] | None = None   # (speech end ms covered, text) of the open segment
        self.last_decode_ms = 0.0                # wall time of the last decode (for benchmarks)
        self.decodes = 0
        self.abandoned = 0                       # speculative decodes given up (stop was set)
        self._last_sure_ms = 0.0                 # end of the last window with p >= SURE_SPEECH
        self._pause_from: float | None = None    # speech_end of the open segment's current pause

    def accept(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.int16)
        up = self._resampler.process(frame)
        self._audio16.append(up)
        self._n16 += len(up)
        events = self._vad.feed(frame)
        t_end = self._vad.time_ms - WINDOW_MS * len(self._vad.window_probs)
        for p in self._vad.window_probs:
            t_end += WINDOW_MS
            if p >= self.SURE_SPEECH:
                self._last_sure_ms = t_end
        for ev in events:
            if ev.kind == "speech_start":
                self._pause_from = None
                if self._seg_start_ms is None:
                    self._seg_start_ms = ev.t_ms
                    self._trim_before(ev.t_ms - self._PAD_MS)
            elif self._seg_start_ms is not None:
                self._pause_from = ev.t_ms
        if self._seg_start_ms is None:
            self._trim_before(self._vad.time_ms - 2 * self._PAD_MS)   # keep only a short pre-roll
        elif self._pause_from is not None and self._vad.time_ms - self._pause_from >= self.JOIN_PAUSE_MS:
            self._close_segment(self._pause_from)
        elif self._vad.time_ms - self._seg_start_ms > self._MAX_SEGMENT_MS:
            self._close_segment(self._vad.time_ms)

    def _trim_before(self, t_ms: float) -> None:
        drop = int(max(0.0, t_ms - self._base_ms) * 16)
        if drop <= 0 or drop >= self._n16:
            return
        audio = np.concatenate(self._audio16)[drop:]
        self._audio16, self._n16 = [audio], len(audio)
        self._base_ms += drop / 16.0

    def _segment_audio(self, end_ms: float) -> np.ndarray:
        audio = np.concatenate(self._audio16) if self._audio16 else np.zeros(0, np.float32)
        stop = int((max(end_ms, self._last_sure_ms) + self._PAD_MS - self._base_ms) * 16)
        return _f32(audio[:max(0, stop)])

    def _decode_open(self, end_ms: float, stop: threading.Event | None = None) -> str | None:
        t0 = time.perf_counter()
        text = self.engine.decode16k(self._segment_audio(end_ms), stop)
        self.last_decode_ms = (time.perf_counter() - t0) * 1000
        if text is None:
            self.abandoned += 1
            return None
        self.decodes += 1
        return text

    def _close_segment(self, end_ms: float) -> None:
        if self._seg_start_ms is None:
            return
        if self._spec is not None and self._spec[0] >= min(end_ms, self._open_speech_end_ms()) - 1:
            text = self._spec[1]
        else:
            text = self._decode_open(end_ms)
        if text:
            self._texts.append(text)
        self._seg_start_ms, self._spec, self._pause_from = None, None, None
        self._trim_before(end_ms)

    def _open_speech_end_ms(self) -> float:
        """End of the speech heard so far in the open segment: audio after the last window that
        was surely speech is the tail of the speech or a pause."""
        return max(self._last_sure_ms, self._seg_start_ms or 0.0)

    @property
    def pause_ms(self) -> float:
        """How long the caller has not surely been speaking in the open segment (0 if none)."""
        if self._seg_start_ms is None and not self._vad.is_speech:
            return 0.0
        return self._vad.time_ms - self._last_sure_ms

    def partial(self, stop: threading.Event | None = None) -> str | None:
        """Fixed segments plus a speculative decode of the open one (reused if nothing new).
        None if `stop` was set meanwhile and the engine gave up (nothing is kept then)."""
        if self._seg_start_ms is not None:
            end = self._open_speech_end_ms()
            if self._spec is None or self._spec[0] < end - 1:
                text = self._decode_open(end, stop)
                if text is None:
                    return None
                self._spec = (end, text)
            return " ".join(t for t in [*self._texts, self._spec[1]] if t)
        return " ".join(self._texts)

    @property
    def ready(self) -> bool:
        """True when finalize() would not need to decode (the speculative result is current)."""
        return self._seg_start_ms is None or (self._spec is not None and self._spec[0] >= self._open_speech_end_ms() - 1)

    def finalize(self) -> str:
        if self._seg_start_ms is not None:
            self._close_segment(self._open_speech_end_ms())
        text = " ".join(self._texts)
        self.reset()
        return text


# ---- streaming transducer (sherpa-onnx OnlineRecognizer) --------------------------------------

class TransducerEngine(SttEngine):
    """A streaming zipformer transducer: decodes as audio arrives. 8 kHz audio is handed to sherpa
    with its rate; sherpa resamples to the model's 16 kHz."""

    def __init__(self, model: str, recognizer):
        self.model = model
        self.name = f"transducer:{model}"
        self._rec = recognizer
        self._lock = threading.Lock()

    def _drain(self, s) -> None:
        with self._lock:
            while self._rec.is_ready(s):
                self._rec.decode_stream(s)

    def transcribe(self, pcm: np.ndarray, sample_rate: int = LINE_RATE) -> str:
        s = self._rec.create_stream()
        s.accept_waveform(sample_rate, _f32(pcm))
        s.accept_waveform(sample_rate, np.zeros(int(0.5 * sample_rate), np.float32))  # flush right context
        s.input_finished()
        self._drain(s)
        return self._rec.get_result(s).strip().lower()

    def stream(self) -> TransducerStream:
        return TransducerStream(self)


class TransducerStream(SttStream):
    def __init__(self, engine: TransducerEngine):
        self.engine = engine
        self.reset()

    def reset(self) -> None:
        self._s = self.engine._rec.create_stream()
        self.last_decode_ms = 0.0

    def accept(self, frame: np.ndarray) -> None:
        self._s.accept_waveform(LINE_RATE, _f32(frame))
        self.engine._drain(self._s)

    def partial(self) -> str:
        return self.engine._rec.get_result(self._s).strip().lower()

    ready = True

    def finalize(self) -> str:
        t0 = time.perf_counter()
        self._s.accept_waveform(LINE_RATE, np.zeros(int(0.3 * LINE_RATE), np.float32))
        self._s.input_finished()
        self.engine._drain(self._s)
        text = self.partial()
        self.last_decode_ms = (time.perf_counter() - t0) * 1000
        self.reset()
        return text


# ---- loading and the process-wide cache ------------------------------------------------------

def load_whisper(registry, name: str, threads: int = 2, vad_config=None) -> WhisperEngine:
    import sherpa_onnx

    info = registry.info(name)
    folder = registry.path(name)
    rec = sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=str(folder / info.roles["encoder"]), decoder=str(folder / info.roles["decoder"]),
        tokens=str(folder / info.roles["tokens"]), language="en", task="transcribe", num_threads=threads)
    return WhisperEngine(name, rec, vad_config)


def load_transducer(registry, name: str, threads: int = 2) -> TransducerEngine:
    import sherpa_onnx

    info = registry.info(name)
    folder = registry.path(name)
    rec = sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(folder / info.roles["tokens"]), encoder=str(folder / info.roles["encoder"]),
        decoder=str(folder / info.roles["decoder"]), joiner=str(folder / info.roles["joiner"]),
        num_threads=threads, sample_rate=16000, feature_dim=80, decoding_method="greedy_search",
        enable_endpoint_detection=False)
    return TransducerEngine(name, rec)


def create_stt(cfg: SpeechConfig | None = None, registry=None) -> SttEngine:
    """Load the configured STT engine (model verified, test-loaded in a child process when new)."""
    try:
        import sherpa_onnx  # noqa: F401
    except ImportError:
        raise ModelError("STT needs sherpa-onnx: pip install sherpa-onnx") from None
    from .registry import ModelRegistry

    cfg = cfg or SpeechConfig()
    registry = registry or ModelRegistry.from_config(cfg)
    info = registry.info(cfg.stt.model)
    if info.kind != "stt":
        raise ModelError(f"model {info.name!r} is a {info.kind} model, not an STT model")
    if info.engine != cfg.stt.engine:
        raise ModelError(f"speech.stt.engine is {cfg.stt.engine!r} but model {info.name!r} is a {info.engine} model")
    if info.engine == "whisper-ct2":
        from .ct2whisper import load_ct2_whisper

        return load_ct2_whisper(registry, info.name, cfg.stt.threads, cfg.stt.parallel, cfg.vad)
    if info.engine == "whisper":
        return load_whisper(registry, info.name, cfg.stt.threads, cfg.vad)
    if info.engine == "transducer":
        return load_transducer(registry, info.name, cfg.stt.threads)
    raise ModelError(f"model {info.name!r}: unknown STT engine {info.engine!r}")


_cache_lock = threading.Lock()
_cache: dict[tuple, SttEngine] = {}


def get_stt(cfg: SpeechConfig | None = None) -> SttEngine:
    """The process-wide shared STT engine for this configuration (loaded once)."""
    cfg = cfg or SpeechConfig()
    key = (cfg.stt.engine, cfg.stt.model, cfg.stt.threads, cfg.stt.parallel, cfg.vad, cfg.models_dir, cfg.mirror)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = create_stt(cfg)
        return _cache[key]
