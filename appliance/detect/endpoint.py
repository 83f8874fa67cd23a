"""Endpointing: has the caller finished their turn?

Feed every 20 ms frame with the VAD's verdict (and the partial transcript when the STT has one);
`feed` returns True on the one frame where the turn is over. How long a pause must last depends on
what came before it:

- mid phone number, mid spelling, or trailing off on a filler ("um", "and", "so") -> wait longer
  (`incomplete_silence_ms`): cutting callers off mid number is the top complaint about agents;
- after a complete question -> answer sooner (`question_silence_ms`);
- otherwise the smart-turn model (`appliance.detect.smart_turn`) is asked once per pause, after
  `semantic_check_ms` of silence: complete -> `semantic_complete_silence_ms`, incomplete ->
  `incomplete_silence_ms`; without the model (or with `semantic: false`) -> `min_silence_ms`;
- never longer than `max_silence_ms`.

The transcript's verdict on numbers and spelling wins over the model's: prosody can sound final
in the middle of "my number is 555 0123".

Cost: a frame costs microseconds; the frame on which the model is asked costs one inference
(~50 ms on one x86 core, a few times that on a Pi): call `feed` from the call's worker thread, or
construct with `semantic=False` in the config.
"""
from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..audio import FRAME_MS, LINE_RATE, Resampler
from .config import EndpointConfig

log = logging.getLogger(__name__)

# ---- what the transcript says about the turn --------------------------------------------------

_FILLERS = {
    "um", "umm", "uh", "uhh", "erm", "er", "hmm", "mm", "ah", "eh",
    "and", "so", "but", "or", "because", "cause", "like", "then", "if", "well",
    "the", "a", "an", "to", "for", "of", "with", "my", "is", "at", "on", "in", "it's", "its",
    "i", "i'm", "we", "you", "your", "that", "which", "who", "maybe", "about", "from", "by",
}
_NUMBER_WORDS = {
    "zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "double", "triple", "hundred", "thousand", "plus", "dash", "hash", "star", "pound", "nought",
}
_QUESTION_START = {
    "what", "when", "where", "who", "whom", "whose", "why", "how", "which",
    "do", "does", "did", "can", "could", "would", "will", "is", "are", "was", "were",
    "should", "shall", "may", "might", "have", "has", "am",
}
_LETTER_TOKEN = re.compile(r"^[a-z]$")
_NATO = {
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "x-ray", "yankee", "zulu",
}
_PRE_ROLL_MS = 500   # audio before the first speech frame that the model sees (as pipecat does)
_WORD = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


def _digits_at_end(tokens: list[str]) -> int:
    """How many digits the trailing run of number tokens stands for ('555' = 3, 'five' = 1)."""
    count = 0
    for tok in reversed(tokens):
        if tok.isdigit():
            count += len(tok)
        elif tok in _NUMBER_WORDS:
            count += 1
        else:
            break
    return count


def classify_transcript(text: str | None) -> str:
    """The turn's shape from its (partial) transcript.

    Returns one of 'number' (mid phone number or digits), 'spelling' (letters one by one),
    'filler' (trails off on a filler or a conjunction), 'question' (a complete question),
    'statement' (anything else with words), 'unknown' (no transcript).
    """
    if not text or not text.strip():
        return "unknown"
    raw = text.strip().lower()
    # "5 5 5 - 0 1" and "555-0123" both count as digits
    tokens = _WORD.findall(raw.replace("-", " "))
    if not tokens:
        return "unknown"
    ends_with_question_mark = raw.rstrip(" \"')").endswith("?")
    ends_with_full_stop = raw.rstrip(" \"')").endswith((".", "!"))
    digits = _digits_at_end(tokens)
    # A run of digits: a complete phone number (7, 10, 11+ digits) followed by a full stop may end
    # the turn; any shorter run is someone reading out a number.
    if digits >= 2 or (digits == 1 and len(tokens) >= 2 and tokens[-2] in ("is", "number", "it's", "at")):
        if not (ends_with_full_stop and digits in (7, 10, 11, 12)):
            return "number"
    letters = 0
    for tok in reversed(tokens):
        if (_LETTER_TOKEN.match(tok) and tok not in ("a", "i")) or tok in _NATO:
            letters += 1
        else:
            break
    if letters >= 2 and not ends_with_full_stop:
        return "spelling"
    if tokens[-1] in _FILLERS and not ends_with_question_mark:
        return "filler"
    if ends_with_question_mark or (tokens[0] in _QUESTION_START and len(tokens) >= 3 and not ends_with_full_stop):
        return "question"
    return "statement"


# ---- the endpointer ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EndpointDecision:
    """Why a turn ended (or, while it runs, what it is waiting for)."""

    reason: str                         # 'question', 'semantic_complete', 'semantic_incomplete', 'silence', 'incomplete', 'max_silence'
    waited_ms: float                    # silence after the last speech frame when the turn ended
    required_ms: float                  # the silence this turn needed
    semantic_probability: float | None  # the smart-turn model's P(complete), if it was asked
    shape: str                          # classify_transcript() of the last transcript
    speech_ms: float                    # speech in the turn
    transcript: str | None = None


class Endpointer:
    """Decides, frame by frame, when the caller's turn is over. One per call; not thread-safe."""

    def __init__(self, config: EndpointConfig | None = None, model=None):
        """`model`: an object with `probability(int16_16k) -> float` (default: the shared smart-turn model,
        loaded on first use when `config.semantic`; if it cannot be loaded the endpointer logs once and
        carries on with silence and transcript rules)."""
        self.config = config or EndpointConfig()
        self._model = model
        self._model_failed = False
        keep_16k = int(self.config.semantic_window_s * 16000)
        self._audio16 = deque(maxlen=max(1, keep_16k // (2 * LINE_RATE * FRAME_MS // 1000) + 1))
        self._resampler = Resampler(LINE_RATE, 16000) if self.config.semantic else None
        self.last_decision: EndpointDecision | None = None
        self.reset()

    # public ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the current turn (call after the agent has taken the turn, or on barge-in)."""
        self._speech_ms = 0.0          # speech in the current turn
        self._pending_speech_ms = 0.0  # speech not yet long enough to open a turn
        self._in_turn = False
        self._silence_start_ms: float | None = None
        self._pending_silence_ms = 0.0
        self._semantic_p: float | None = None
        self._semantic_asked = False
        self._transcript: str | None = None
        self._audio16.clear()
        if self._resampler is not None:
            self._resampler.reset()

    @property
    def in_turn(self) -> bool:
        """True while the caller has the turn (speech heard, end not yet decided)."""
        return self._in_turn

    def status(self) -> EndpointDecision | None:
        """What the current pause needs so far (None outside a turn)."""
        if not self._in_turn:
            return None
        return self._decision(self._waited(None))

    def feed(self, frame: np.ndarray, is_speech: bool, t_ms: float, transcript: str | None = None) -> bool:
        """One 20 ms int16 frame at 8 kHz, the VAD's verdict for it, its audio time (start, ms), and the
        latest partial transcript if any. True on the frame that ends the caller's turn."""
        if transcript is not None:
            self._transcript = transcript
        frame_ms = 1000.0 * len(frame) / LINE_RATE
        if self._resampler is not None:
            self._audio16.append(self._resampler.process(np.asarray(frame, dtype=np.int16)))

        if not self._in_turn:
            # keep only the pre-roll and the pending speech: the model must see this turn, not the last
            keep = int((self._pending_speech_ms + _PRE_ROLL_MS) // frame_ms) + 1
            while len(self._audio16) > keep:
                self._audio16.popleft()
            if is_speech:
                self._pending_speech_ms += frame_ms
                self._pending_silence_ms = 0.0
                if self._pending_speech_ms >= self.config.min_speech_ms:
                    self._in_turn = True
                    self._speech_ms = self._pending_speech_ms
            else:
                self._pending_silence_ms += frame_ms
                if self._pending_silence_ms >= 300:   # a click or a cough, not a turn
                    self._pending_speech_ms = 0.0
            return False

        if is_speech:
            self._speech_ms += frame_ms
            self._silence_start_ms = None
            self._semantic_p = None
            self._semantic_asked = False
            return False

        if self._silence_start_ms is None:
            self._silence_start_ms = t_ms
        waited = t_ms + frame_ms - self._silence_start_ms
        decision = self._decision(waited)
        if waited >= decision.required_ms:
            self.last_decision = decision
            self._end_turn()
            return True
        return False

    # internals ------------------------------------------------------------------------------

    def _waited(self, t_ms: float | None) -> float:
        return 0.0 if self._silence_start_ms is None or t_ms is None else t_ms - self._silence_start_ms

    def _decision(self, waited: float) -> EndpointDecision:
        cfg = self.config
        shape = classify_transcript(self._transcript)
        if shape in ("number", "spelling", "filler"):
            required, reason = cfg.incomplete_silence_ms, "incomplete"
        elif shape == "question":
            required, reason = cfg.question_silence_ms, "question"
        else:
            required, reason = cfg.min_silence_ms, "silence"
            if cfg.semantic and waited >= cfg.semantic_check_ms:
                p = self._ask_model()
                if p is not None:
                    if p >= cfg.semantic_complete:
                        required, reason = cfg.semantic_complete_silence_ms, "semantic_complete"
                    else:
                        required, reason = cfg.incomplete_silence_ms, "semantic_incomplete"
        if required >= cfg.max_silence_ms:
            required, reason = cfg.max_silence_ms, "max_silence"
        return EndpointDecision(
            reason=reason, waited_ms=waited, required_ms=float(required), semantic_probability=self._semantic_p,
            shape=shape, speech_ms=self._speech_ms, transcript=self._transcript,
        )

    def _ask_model(self) -> float | None:
        if self._semantic_asked:
            return self._semantic_p
        self._semantic_asked = True
        model = self._get_model()
        if model is None or not self._audio16:
            return None
        self._semantic_p = float(model.probability(np.concatenate(self._audio16)))
        return self._semantic_p

    def _get_model(self):
        if self._model is None and not self._model_failed:
            from ..errors import ModelError
            from .smart_turn import shared_model
            try:
                self._model = shared_model()
            except ModelError as exc:
                self._model_failed = True
                log.warning("semantic endpointing off: %s", exc)
        return self._model

    def _end_turn(self) -> None:
        last = self.last_decision
        self.reset()
        self.last_decision = last
