"""Configuration of the detectors: answering-machine detection, endpointing, echo."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AmdConfig:
    """Answering-machine detection on outbound calls, and the voicemail drop that follows it."""

    enabled: bool = True
    total_analysis_ms: int = field(default=8000, metadata={"help": "give a verdict by this audio time at the latest", "min": 1000, "max": 30000})
    voicemail_message: str | None = field(default=None, metadata={"help": "message left after the beep; {name} is the callee's name"})
    initial_silence_ms: int = field(default=2500, metadata={"help": "nobody spoke for this long after answer: keep waiting, the verdict will be unknown if it lasts", "min": 500, "max": 10000})
    human_silence_ms: int = field(default=800, metadata={"help": "silence after a short answer ('hello?') that means a person is waiting for us", "min": 200, "max": 3000})
    human_cue_silence_ms: int = field(default=450, metadata={"help": "silence after an answer whose transcript sounds like a live person", "min": 150, "max": 3000})
    long_answer_silence_ms: int = field(default=900, metadata={"help": "silence needed after a longer answer (a machine may just be pausing between sentences)", "min": 200, "max": 3000})
    short_answer_ms: int = field(default=1500, metadata={"help": "speech up to this long is a short answer", "min": 300, "max": 5000})
    name_only_silence_ms: int = field(default=1300, metadata={"help": "silence needed after an answer without any greeting word ('Emily.': maybe a recorded name before the beep)", "min": 200, "max": 3000})
    long_greeting_ms: int = field(default=3000, metadata={"help": "a greeting running this long with a machine-like phrase (or with transcripts off) is a machine", "min": 1000, "max": 15000})
    unclear_greeting_ms: int = field(default=5000, metadata={"help": "a greeting running this long whose words say neither machine nor person is a machine", "min": 1000, "max": 15000})
    speech_margin_db: float = field(default=9.0, metadata={"help": "frame energy above the noise floor that counts as sound", "min": 3.0, "max": 30.0})
    min_level_dbfs: float = field(default=-55.0, metadata={"help": "frames quieter than this are silence whatever the noise floor", "min": -90.0, "max": -10.0})
    beep_min_ms: int = field(default=130, metadata={"help": "tone this long (summed over a sequence) counts as a beep", "min": 40, "max": 1000})
    beep_confirm_ms: int = field(default=250, metadata={"help": "a beep counts once this much follows it without speech (a voice can be tonal for a moment)", "min": 0, "max": 1000})
    beep_max_ms: int = field(default=2500, metadata={"help": "a tone sequence longer than this is music, not a beep", "min": 300, "max": 10000})
    beep_gap_ms: int = field(default=80, metadata={"help": "tones separated by at most this much belong to one beep sequence", "min": 20, "max": 500})
    beep_purity: float = field(default=0.6, metadata={"help": "share of a frame's power in its one or two strongest tones for it to count as tone", "min": 0.3, "max": 0.99})
    greeting_end_silence_ms: int = field(default=1500, metadata={"help": "after a machine verdict, silence this long ends a greeting that has no beep", "min": 300, "max": 10000})
    max_greeting_wait_ms: int = field(default=30000, metadata={"help": "stop waiting for the end of a greeting after this long", "min": 2000, "max": 120000})
    use_transcript: bool = field(default=True, metadata={"help": "weigh what the greeting says ('leave a message' vs 'who's calling?')"})
    stt_interval_ms: int = field(default=1000, metadata={"help": "during a long greeting, ask for a new transcript this often", "min": 200, "max": 5000})


@dataclass(frozen=True)
class EndpointConfig:
    min_silence_ms: int = field(default=500, metadata={"help": "silence after a complete-sounding turn", "min": 100, "max": 5000})
    max_silence_ms: int = field(default=1600, metadata={"help": "silence after which the turn ends whatever was said", "min": 200, "max": 10000})
    semantic: bool = field(default=False, metadata={"help": "also ask the smart-turn model whether the turn sounds complete (off by default: near chance on phone-band audio in tools/bench_endpoint.py, and 240-900 ms per inference on a loaded 2-core box)"})
    question_silence_ms: int = field(default=300, metadata={"help": "silence after a complete question (transcript ends in '?' or starts with a question word)", "min": 100, "max": 5000})
    incomplete_silence_ms: int = field(default=1400, metadata={"help": "silence when the caller is mid number, mid spelling or trailing off on a filler (pauses up to 1.1 s are in the benchmark corpus)", "min": 200, "max": 10000})
    semantic_check_ms: int = field(default=200, metadata={"help": "silence after which the smart-turn model is asked (once per pause)", "min": 60, "max": 2000})
    semantic_complete: float = field(default=0.5, metadata={"help": "smart-turn probability at or above which the turn sounds complete", "min": 0.0, "max": 1.0})
    semantic_complete_silence_ms: int = field(default=250, metadata={"help": "silence after the model judged the turn complete", "min": 60, "max": 5000})
    semantic_window_s: float = field(default=8.0, metadata={"help": "audio seconds the model sees (it was trained on at most 8)", "min": 1.0, "max": 8.0})
    min_speech_ms: int = field(default=120, metadata={"help": "speech shorter than this (a click, a cough) does not open a turn", "min": 20, "max": 2000})


@dataclass(frozen=True)
class EchoConfig:
    cancel: bool = True
    tail_ms: int = field(default=128, metadata={"help": "echo tail the adaptive filter covers, after the bulk delay", "min": 16, "max": 512})
    max_delay_ms: int = field(default=300, metadata={"help": "longest bulk echo delay searched for (line round trip)", "min": 0, "max": 1000})
    residual_suppression: bool = field(default=True, metadata={"help": "speex preprocessor residual echo suppression after the canceller"})
    denoise: bool = field(default=False, metadata={"help": "speex noise suppression on the cleaned signal"})
    gate_margin_db: float = field(default=6.0, metadata={"help": "cleaned mic must exceed the expected residual echo by this much to count as the caller", "min": 0.0, "max": 40.0})
    ref_active_dbfs: float = field(default=-50.0, metadata={"help": "playout quieter than this cannot make echo", "min": -90.0, "max": 0.0})
    caller_floor_dbfs: float = field(default=-45.0, metadata={"help": "cleaned mic quieter than this is never caller speech while we play", "min": -90.0, "max": 0.0})


@dataclass(frozen=True)
class DetectConfig:
    amd: AmdConfig = field(default_factory=AmdConfig)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    echo: EchoConfig = field(default_factory=EchoConfig)
