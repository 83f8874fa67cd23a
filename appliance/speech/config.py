"""Configuration of speech: models, VAD, STT, TTS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class VadConfig:
    threshold: float = field(default=0.5, metadata={"help": "speech probability above which a 32 ms window is speech", "min": 0.05, "max": 0.95})
    min_speech_ms: int = field(default=150, metadata={"help": "speech must last this long before speech_start", "min": 0, "max": 5000})
    min_silence_ms: int = field(default=300, metadata={"help": "silence must last this long before speech_end", "min": 0, "max": 5000})


@dataclass(frozen=True)
class SttConfig:
    engine: Literal["whisper-ct2", "whisper", "transducer"] = field(default="whisper-ct2", metadata={"help": "whisper-ct2: Whisper tiny.en on CTranslate2, decoded per utterance (embedded default); whisper: the same model on sherpa-onnx (slower decoder); transducer: sherpa-onnx streaming zipformer (fetch it first)"})
    model: str = field(default="whisper-tiny.en-ct2", metadata={"help": "model name from models/manifest.yaml (its engine must match speech.stt.engine)"})
    threads: int = field(default=2, metadata={"help": "threads per decode", "min": 1, "max": 8})
    parallel: int = field(default=2, metadata={"help": "decodes run at once (whisper-ct2; more calls queue)", "min": 1, "max": 8})
    speculate_after_ms: int = field(default=32, metadata={"help": "decode speculatively once the caller has paused this long, so the transcript is ready when the turn ends; raise to ~96 on a slow or busy box (fewer wasted decodes, see appliance/speech/README.md)", "min": 0, "max": 2000})


@dataclass(frozen=True)
class TtsConfig:
    voice: str = field(default="piper-joe-medium", metadata={"help": "voice name from models/manifest.yaml"})
    speed: float = field(default=1.0, metadata={"min": 0.5, "max": 2.0})
    threads: int = field(default=2, metadata={"min": 1, "max": 8})


@dataclass(frozen=True)
class SpeechConfig:
    models_dir: str | None = field(default=None, metadata={"help": "where models are installed; default /var/lib/appliance/models as root, else ~/.local/share/appliance/models (env APPLIANCE_MODELS_DIR overrides)"})
    mirror: str | None = field(default=None, metadata={"help": "local folder mirroring model files (fleets keep one); env APPLIANCE_MODELS_MIRROR; default <repo>/../shared/models if present"})
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
