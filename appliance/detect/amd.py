"""Streaming answering-machine detection for answered outbound calls.

Feed 20 ms PCM16 frames as they arrive; `feed()` returns an `AmdResult` once, on the frame where
the verdict is reached (`human`, `machine` or `unknown`). Keep feeding after a `machine`
verdict: the detector then looks for the end of the greeting (the beep, or a long silence for
machines without one) and sets `greeting_ended`, `greeting_end_ms` and `beep_ms`.

The verdict combines three kinds of evidence, cheapest first:
- timing: a person answers with a short phrase and then waits for us; a recorded greeting runs on;
- tones: a voicemail beep (Goertzel bank, `beep.py`), SIT and fax tones (`tones.py`);
- words: the transcript of the speech so far ("leave a message" vs "who's calling?").

Transcripts are requested, never computed here: after `feed()`, `stt_request()` hands out the
greeting audio (8 kHz int16) when a speech segment ends or every `stt_interval_ms` during a long
greeting; the caller runs its STT (in its worker thread) and passes the text in a later
`feed(frame, transcript=text)`. Nothing per frame is heavier than one Goertzel bank.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio import LINE_RATE, SAMPLES_PER_FRAME, Resampler, energy_dbfs
from .beep import BeepDetector, ToneSegment
from .config import AmdConfig
from .cues import cues
from .tones import classify_sequence

FRAME_MS = 20
_ONSET_FRAMES = 2            # voiced frames in a row that open a speech segment
_HANGOVER_FRAMES = 10        # unvoiced frames that close it (200 ms)
_FLOOR_FRAMES = 100          # noise floor: minimum level over the last 2 s
_FLOOR_MAX_DBFS = -30.0      # a floor louder than this is sound (music), not line noise
_STT_WAIT_MS = 1000          # longest extra wait for a transcript that is being computed
_WEAK_CUE_WAIT_MS = 3000     # ... when the text so far has a weak machine cue (stale text must not hang up on a person)
_MUSIC_WAIT_MS = 1500         # after sound the STT calls music, wait this much longer for words
_WEAK_CUE_GREETING_MS = 4000  # still speaking this long after a weak machine cue ("not available"): a machine
# Background talkers (a TV, a room) are quieter than the voice on the phone: a frame this far
# below the loudest speech heard so far is not the far end speaking. The reference decays
# slowly so a quieter second sentence still counts.
_REL_GATE_DB = 17.0
_REF_DECAY_DB_PER_FRAME = 0.04


@dataclass(frozen=True, slots=True)
class AmdResult:
    """The verdict. `decision_ms` and `beep_ms` are audio time from the start of the call."""

    label: str            # "human" | "machine" | "unknown"
    decision_ms: int
    cause: str
    beep_ms: int | None = None

    def as_dict(self) -> dict:
        return {"label": self.label, "decision_ms": int(self.decision_ms), "beep_ms": self.beep_ms, "cause": self.cause}


class AmdDetector:
    """Streaming AMD. See the module docstring for the protocol."""

    def __init__(self, config: AmdConfig | None = None, sample_rate: int = LINE_RATE):
        self.config = config or AmdConfig()
        self.sample_rate = sample_rate
        self._resampler = Resampler(sample_rate, LINE_RATE) if sample_rate != LINE_RATE else None
        self._pending = np.zeros(0, dtype=np.int16)
        c = self.config
        self._beep = BeepDetector(LINE_RATE, min_tone_ms=c.beep_min_ms, max_tone_ms=c.beep_max_ms,
                                  gap_ms=c.beep_gap_ms, purity_min=c.beep_purity)
        self.t_ms = 0                      # audio time at the end of the last frame analysed
        self.result: AmdResult | None = None
        self.greeting_ended = False
        self.greeting_end_ms: int | None = None
        self.beep_ms: int | None = None
        self.transcript = ""
        self.tone_events: list[tuple[str, ToneSegment]] = []
        self._tone_candidate: ToneSegment | None = None
        self._voiced_after_tone = 0
        # Energy VAD state.
        self._levels: deque[float] = deque(maxlen=_FLOOR_FRAMES)
        self._voiced_run = 0
        self._unvoiced_run = 0
        self.in_speech = False
        self.first_speech_ms: int | None = None
        self.last_voice_ms: int | None = None       # end of the last voiced frame
        self.segments: list[tuple[int, int]] = []    # closed speech segments (start, end)
        self._seg_start = 0
        self.voiced_ms = 0
        self._ref_db: float | None = None            # loudest speech frame so far (decaying)
        self._seg_peak = -120.0                      # loudest frame of the open segment
        self._prior_peak = -120.0                    # loudest frame of the segments before it
        self._seg_voiced_ms = 0
        # Transcript requests.
        self._audio: list[np.ndarray] = []
        self._audio_start_ms = 0
        self._stt_pending: np.ndarray | None = None
        self._stt_in_flight_since: int | None = None
        self._stt_served_ms = -1                     # audio time covered by the pending request
        self._stt_inflight_upto = -1                 # ... by the request being transcribed
        self._stt_covered_ms = -1                    # ... by the transcript we have
        self._last_stt_ms = 0
        self._cues = cues("")

    # ----------------------------------------------------------------------------------- input
    def feed(self, frame: np.ndarray, transcript: str | None = None) -> AmdResult | None:
        """Analyse one frame (any length; 20 ms expected) and return the verdict once reached."""
        if transcript is not None:
            self.set_transcript(transcript)
        x = np.asarray(frame, dtype=np.int16)
        if self._resampler is not None:
            x = self._resampler.process(x)
        if len(self._pending):
            x = np.concatenate([self._pending, x])
        out = None
        n = SAMPLES_PER_FRAME
        i = 0
        while i + n <= len(x):
            r = self._frame(np.ascontiguousarray(x[i:i + n]))
            out = out or r
            i += n
        self._pending = x[i:].copy()
        return out

    def set_transcript(self, text: str) -> None:
        """The STT's text for the greeting audio handed out by the last `stt_request()`."""
        self.transcript = text
        self._cues = cues(text)
        self._stt_in_flight_since = None
        self._stt_covered_ms = max(self._stt_covered_ms, self._stt_inflight_upto)

    def stt_request(self) -> np.ndarray | None:
        """Greeting audio (8 kHz int16, from just before speech began) to transcribe now, if any.

        Only the newest request is kept; answer it with `feed(..., transcript=text)`."""
        req, self._stt_pending = self._stt_pending, None
        if req is not None:
            self._stt_in_flight_since = self.t_ms
            self._stt_inflight_upto = self._stt_served_ms
        return req

    @property
    def decided(self) -> bool:
        return self.result is not None

    # ---------------------------------------------------------------------------- per frame
    def _frame(self, x: np.ndarray) -> AmdResult | None:
        start = self.t_ms
        self.t_ms += FRAME_MS
        c = self.config
        seq = self._beep.feed(x)
        level = float(energy_dbfs(x))
        self._levels.append(level)
        floor = min(min(self._levels), _FLOOR_MAX_DBFS)
        gate = max(floor + c.speech_margin_db, c.min_level_dbfs)
        if self._ref_db is not None:
            self._ref_db -= _REF_DECAY_DB_PER_FRAME
            gate = max(gate, self._ref_db - _REL_GATE_DB)
        # Tonal frames count as sound too: a voice can be tonal for a whole short word ("Hi.");
        # a beep among them is recognised by the tone detector, whatever the VAD says.
        voiced = level > gate
        self._vad(voiced, start, level)
        if self.result is None and c.use_transcript:
            self._collect(x, start)
        seq, seq_kind = self._confirm_tone(seq, voiced)
        if self.result is None:
            self.result = self._decide(seq, seq_kind)
            if self.result is not None:
                if self.result.label != "machine" or self.beep_ms is not None:
                    self._end_greeting(self.beep_ms if self.beep_ms is not None else self.t_ms)
                return self.result
        elif not self.greeting_ended:
            self._track_greeting_end(seq, seq_kind)
        return None

    def _confirm_tone(self, seq: ToneSegment | None, voiced: bool) -> tuple[ToneSegment | None, str | None]:
        """Hold a finished tone sequence for `beep_confirm_ms`: speech right after it means it
        was a tonal moment of a voice, not a beep."""
        if seq is not None:
            self._tone_candidate = seq
            self._voiced_after_tone = 0
            return None, None
        cand = self._tone_candidate
        if cand is None:
            return None, None
        self._voiced_after_tone = self._voiced_after_tone + 1 if voiced else 0
        if self._voiced_after_tone >= 3:
            self._tone_candidate = None
            self.tone_events.append(("voice", cand))
            return None, None
        if self.t_ms - cand.end_ms >= self.config.beep_confirm_ms:
            self._tone_candidate = None
            kind = classify_sequence(cand)
            self.tone_events.append((kind, cand))
            return cand, kind
        return None, None

    def _vad(self, voiced: bool, start: int, level: float) -> None:
        if voiced:
            self._voiced_run += 1
            self._unvoiced_run = 0
            if not self.in_speech and self._voiced_run >= _ONSET_FRAMES:
                self.in_speech = True
                self._seg_start = start - (_ONSET_FRAMES - 1) * FRAME_MS
                self._seg_peak = level
                self._seg_voiced_ms = (_ONSET_FRAMES - 1) * FRAME_MS
                if self.first_speech_ms is None:
                    self.first_speech_ms = self._seg_start
                self.voiced_ms += (_ONSET_FRAMES - 1) * FRAME_MS
            if self.in_speech:
                self.voiced_ms += FRAME_MS
                self._seg_voiced_ms += FRAME_MS
                self.last_voice_ms = self.t_ms
                self._seg_peak = max(self._seg_peak, level)
                self._ref_db = level if self._ref_db is None else max(self._ref_db, level)
                if self.segments and self._seg_peak > self._prior_peak + _REL_GATE_DB and self.result is None:
                    # What came before was background sound, not the far end: start over from here.
                    self.segments = []
                    self.first_speech_ms = self._seg_start
                    self.voiced_ms = self._seg_voiced_ms
        else:
            self._voiced_run = 0
            self._unvoiced_run += 1
            if self.in_speech and self._unvoiced_run >= _HANGOVER_FRAMES:
                self.in_speech = False
                self.segments.append((self._seg_start, self.last_voice_ms))
                self._prior_peak = max(self._prior_peak, self._seg_peak)
                self._request_stt(self.last_voice_ms)

    def _collect(self, x: np.ndarray, start: int) -> None:
        if self.first_speech_ms is None:
            # Keep only a short lead-in before speech starts.
            self._audio.append(x)
            if len(self._audio) > 10:
                self._audio.pop(0)
            self._audio_start_ms = start + FRAME_MS - FRAME_MS * len(self._audio)
            return
        self._audio.append(x)
        if self.in_speech and self.t_ms - self._last_stt_ms >= self.config.stt_interval_ms \
                and self.t_ms - self.first_speech_ms >= self.config.stt_interval_ms:
            self._request_stt(self.t_ms)

    def _request_stt(self, upto_ms: int | None) -> None:
        if not self.config.use_transcript or self.result is not None or not self._audio or upto_ms is None:
            return
        self._stt_pending = np.concatenate(self._audio)
        self._stt_served_ms = upto_ms
        self._last_stt_ms = self.t_ms

    # ------------------------------------------------------------------------------ verdict
    def _decide(self, seq: ToneSegment | None, seq_kind: str | None) -> AmdResult | None:
        c = self.config
        t = self.t_ms
        if seq_kind == "sit":
            return AmdResult("unknown", t, "sit_tone")
        if seq_kind == "busy":
            return AmdResult("unknown", t, "busy_tone")
        if seq_kind == "cng" and (self.first_speech_ms is None or self.first_speech_ms >= seq.start_ms - 100):
            return AmdResult("machine", t, "fax_tone")
        if seq_kind in ("beep", "cng"):
            self.beep_ms = int(round(seq.end_ms))
            return AmdResult("machine", t, "beep", self.beep_ms)
        cu = self._cues
        if self.first_speech_ms is None:
            if t >= c.total_analysis_ms:
                return AmdResult("unknown", t, "initial_silence")
            return None
        if cu["machine"] and not cu["human"]:
            return AmdResult("machine", t, f"transcript:{cu['machine']}")
        span = (self.last_voice_ms or t) - self.first_speech_ms
        have_text = c.use_transcript and self.transcript.strip() != ""
        if self.in_speech:
            if not cu["human"]:
                if not c.use_transcript:
                    limit = c.long_greeting_ms
                elif cu["machine_weak"]:
                    limit = max(c.long_greeting_ms, _WEAK_CUE_GREETING_MS)
                else:
                    limit = c.unclear_greeting_ms
                if t - self.first_speech_ms >= limit:
                    return AmdResult("machine", t, "long_greeting")
        else:
            silence = t - self.last_voice_ms
            if cu["human"]:
                need = c.human_cue_silence_ms
            elif span > c.short_answer_ms:
                need = c.long_answer_silence_ms
            elif have_text and not cu["answer"]:
                need = c.name_only_silence_ms
            else:
                need = c.human_silence_ms
            if silence >= need:
                # A transcript of this very segment is being computed: give it a moment (longer
                # if the words so far sound like a machine: only the whole answer may say
                # "... who's calling?").
                outstanding = self._stt_pending is not None or self._stt_in_flight_since is not None
                fresh = not c.use_transcript or self._stt_covered_ms >= (self.last_voice_ms or 0) - FRAME_MS
                weak = cu["machine_weak"] and not cu["human"]
                waiting = outstanding and not fresh and \
                    silence < need + (_WEAK_CUE_WAIT_MS if weak else _STT_WAIT_MS)
                if not waiting:
                    if fresh and cu["music"] and silence < need + _MUSIC_WAIT_MS:
                        return None      # music first, most likely a greeting after it: listen on
                    if weak:
                        return AmdResult("machine", t, f"transcript:{cu['machine_weak']}")
                    if span > (c.unclear_greeting_ms if have_text else c.long_greeting_ms) and not cu["human"]:
                        return AmdResult("machine", t, "long_greeting")
                    cause = "human_transcript" if cu["human"] else "short_answer"
                    return AmdResult("human", t, cause)
        if t >= c.total_analysis_ms:
            if self.voiced_ms >= c.short_answer_ms and not cu["human"]:
                return AmdResult("machine", t, "max_analysis")
            return AmdResult("unknown", t, "max_analysis")
        return None

    # ----------------------------------------------------------------------- end of greeting
    def _track_greeting_end(self, seq: ToneSegment | None, seq_kind: str | None) -> None:
        c = self.config
        t = self.t_ms
        if seq_kind in ("beep", "cng"):
            self.beep_ms = int(round(seq.end_ms))
            self._end_greeting(self.beep_ms)
            return
        # Silence counts from the last voice or tone: a beep (being confirmed) is not silence.
        last_sound = max(self.last_voice_ms or 0, int(self._tone_candidate.end_ms) if self._tone_candidate else 0,
                         int(self._beep.last_sequence.end_ms) if self._beep.last_sequence else 0)
        if not self.in_speech and not self._beep.in_tone and self._tone_candidate is None \
                and self.last_voice_ms is not None and t - last_sound >= c.greeting_end_silence_ms:
            self._end_greeting(t)
        elif t - (self.first_speech_ms or 0) >= c.max_greeting_wait_ms:
            self._end_greeting(t)

    def _end_greeting(self, t: int) -> None:
        self.greeting_ended = True
        self.greeting_end_ms = int(t)
        self._audio = []
