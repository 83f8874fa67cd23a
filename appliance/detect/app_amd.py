"""A faithful re-implementation of Asterisk's app_amd (AMD()) with its default settings: the baseline.

It follows `apps/app_amd.c` frame by frame: the silence detector of `dsp.c` (mean absolute
sample value of the frame below `silenceThreshold` = silent; it reports the run of consecutive
silent audio), word counting on runs of voiced frames, and the verdicts INITIALSILENCE,
HUMAN (after-greeting silence), LONGGREETING, MAXWORDS, MAXWORDLENGTH (machine) and TOOLONG
(NOTSURE). Timing rules only; app_amd has no beep or transcript detection.

Defaults (amd.conf): initial_silence 2500, greeting 1500, after_greeting_silence 800,
total_analysis_time 5000, min_word_length 100, between_words_silence 50,
maximum_number_of_words 2, maximum_word_length 5000, silence_threshold 256.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .amd import AmdResult


@dataclass(frozen=True)
class AppAmdSettings:
    initial_silence_ms: int = 2500
    greeting_ms: int = 1500
    after_greeting_silence_ms: int = 800
    total_analysis_ms: int = 5000
    min_word_length_ms: int = 100
    between_words_silence_ms: int = 50
    maximum_number_of_words: int = 2
    maximum_word_length_ms: int = 5000
    silence_threshold: int = 256


class AppAmd:
    """Streaming app_amd: `feed(frame)` (8 kHz int16) returns an `AmdResult` once decided.

    Labels: MACHINE -> "machine", HUMAN -> "human", NOTSURE -> "unknown"; `cause` is app_amd's
    AMDCAUSE (e.g. "LONGGREETING-1500-1500")."""

    def __init__(self, settings: AppAmdSettings | None = None, sample_rate: int = 8000):
        self.s = settings or AppAmdSettings()
        self.sample_rate = sample_rate
        self.result: AmdResult | None = None
        self.total_ms = 0
        # dsp.c silence detector state
        self._totalsilence = 0
        # app_amd state
        self._in_word = True          # currentState starts as STATE_IN_WORD
        self._words = 0
        self._consecutive_voice = 0
        self._voice = 0
        self._silence = 0
        self._in_initial_silence = True
        self._in_greeting = False

    def _dsp_silence(self, frame: np.ndarray, frame_ms: int) -> int:
        accum = int(np.sum(np.abs(frame.astype(np.int32)))) // max(1, len(frame))
        if accum < self.s.silence_threshold:
            self._totalsilence += frame_ms
        else:
            self._totalsilence = 0
        return self._totalsilence

    def feed(self, frame: np.ndarray) -> AmdResult | None:
        if self.result is not None:
            return None
        s = self.s
        frame = np.asarray(frame, dtype=np.int16)
        frame_ms = 1000 * len(frame) // self.sample_rate
        self.total_ms += frame_ms
        if self.total_ms >= s.total_analysis_ms:
            return self._done("unknown", f"TOOLONG-{self.total_ms}")
        dspsilence = self._dsp_silence(frame, frame_ms)
        if dspsilence > 0:
            self._silence = dspsilence
            if self._silence >= s.between_words_silence_ms:
                self._in_word = False
                self._consecutive_voice = 0
            if self._in_initial_silence and self._silence >= s.initial_silence_ms:
                return self._done("machine", f"INITIALSILENCE-{self._silence}-{s.initial_silence_ms}")
            if self._silence >= s.after_greeting_silence_ms and self._in_greeting:
                return self._done("human", f"HUMAN-{self._silence}-{s.after_greeting_silence_ms}")
        else:
            self._consecutive_voice += frame_ms
            self._voice += frame_ms
            if self._consecutive_voice >= s.min_word_length_ms and not self._in_word:
                self._words += 1
                self._in_word = True
            if self._consecutive_voice >= s.maximum_word_length_ms:
                return self._done("machine", f"MAXWORDLENGTH-{self._consecutive_voice}")
            if self._words >= s.maximum_number_of_words:
                return self._done("machine", f"MAXWORDS-{self._words}-{s.maximum_number_of_words}")
            if self._in_greeting and self._voice >= s.greeting_ms:
                return self._done("machine", f"LONGGREETING-{self._voice}-{s.greeting_ms}")
            if self._voice >= s.min_word_length_ms:
                self._silence = 0
            if self._consecutive_voice >= s.min_word_length_ms and not self._in_greeting:
                self._in_initial_silence = False
                self._in_greeting = True
        return None

    def _done(self, label: str, cause: str) -> AmdResult:
        self.result = AmdResult(label, self.total_ms, cause, None)
        return self.result


def run_app_amd(pcm: np.ndarray, settings: AppAmdSettings | None = None) -> AmdResult:
    """app_amd over a whole 8 kHz recording in 20 ms frames (NOTSURE if the audio ends first)."""
    det = AppAmd(settings)
    for i in range(0, len(pcm) - 159, 160):
        r = det.feed(pcm[i:i + 160])
        if r is not None:
            return r
    return AmdResult("unknown", det.total_ms, f"TOOLONG-{det.total_ms}")
