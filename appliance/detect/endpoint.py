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

Defaults (EndpointConfig), chosen from `tools/bench_endpoint.py` on a labelled phone-band corpus
(`tools/turn_corpus.py`: 120 turns, 2 espeak-ng voices + Piper, 8 kHz µ-law + noise; 60 complete,
60 with a 0.5-1.1 s pause mid number, mid spelling, on a filler or mid clause):

- transcript rules on, `incomplete_silence_ms` 1400: callers cut off 0 % (a fixed 500 ms timeout:
  80 %, 800 ms: 48 %; 1200 ms still cut one), complete turns wait P50 597 ms / P95 1496 ms (the
  P95 is complete turns that end on digits: the rules cannot tell a finished number);
- `semantic` off: the smart-turn model judged this corpus near chance (51 % on phone band, 54 % on
  the clean 16 kHz rendition; 25 % of incomplete turns judged incomplete), so it prevented no cut-off
  (model alone: 80-85 % cut off, like the 500 ms timeout); as if it answered in 100 ms it shortened
  the P50 wait to 417 ms only by calling most pauses complete, which a shorter `min_silence_ms`
  does as well; on this loaded box it took 400-650 ms per inference and changed nothing.

Cost: a frame costs microseconds. The model costs one inference per pause (published 10-100 ms on
CPU; 240-900 ms measured on this shared 2-core machine under load). By default it runs on a worker
thread (`background=True`), so `feed` never blocks the call's 20 ms loop: the model's answer counts
from the first frame after it arrived, and until then the pause is judged as without the model.
With `background=False` it runs inside `feed` and its answer counts only from the audio time it
would have arrived (question time + measured inference time), so offline runs (benchmarks, tests)
see the same timing as a live call.

If the model cannot be loaded (file missing, onnxruntime missing) the endpointer logs one warning
naming the problem and carries on with the silence and transcript rules; `model_error` says why.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
    "also", "think", "guess", "mean", "dot", "underscore", "hyphen", "slash", "was", "are", "were", "be", "than", "into", "our", "their", "his", "her",
}
_NUMBER_WORDS = {
    "zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "double", "triple", "hundred", "thousand", "plus", "dash", "hash", "star", "pound", "nought",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
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
# "can you tell me", "could you give me": a verb still waiting for what it is about
_OPEN_VERBS = {"tell", "give", "show", "send", "let", "bring", "get", "ask", "remind", "explain"}
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
    'filler' (trails off on a filler or a conjunction), 'question' (ends with a question mark),
    'open_question' (starts like a question, no punctuation: streaming recognizers give none, and
    "can you tell me" is not finished), 'statement' (anything else with words), 'unknown' (no transcript).
    """
    if not text or not text.strip():
        return "unknown"
    raw = text.strip().lower()
    # "5 5 5 - 0 1" and "555-0123" both count as digits
    tokens = _WORD.findall(raw.replace("-", " "))
    if not tokens:
        return "unknown"
    ends_with_question_mark = raw.rstrip(" \"')").endswith("?")
    tail = raw.rstrip(" \"')")
    # "..." (Whisper's trailing off) is not a full stop
    ends_with_full_stop = tail.endswith((".", "!")) and not tail.endswith(("...", "\u2026"))
    digits = _digits_at_end(tokens)
    # A run of digits: a complete phone number (7, 10, 11+ digits) followed by a full stop may end
    # the turn; any shorter run is someone reading out a number.
    if digits >= 2 or (digits == 1 and len(tokens) >= 2 and tokens[-2] in ("is", "number", "it's", "at")):
        if not (ends_with_full_stop and digits in (7, 10, 11, 12)):
            return "number"
    letters = unambiguous = 0
    for tok in reversed(tokens):
        if _LETTER_TOKEN.match(tok) or tok in _NATO:
            letters += 1
            unambiguous += tok not in ("a", "i")   # "a" and "i" are words too
        else:
            break
    if letters >= 2 and unambiguous and not ends_with_full_stop:
        return "spelling"
    if tokens[-1] in _FILLERS and not ends_with_question_mark:
        return "filler"
    if (len(tokens) >= 2 and tokens[-1] in ("me", "us") and tokens[-2] in _OPEN_VERBS
            and not (ends_with_question_mark or ends_with_full_stop)):
        return "filler"
    if ends_with_question_mark:
        return "question"
    if tokens[0] in _QUESTION_START and len(tokens) >= 3 and not ends_with_full_stop:
        return "open_question"
    return "statement"


# ---- the endpointer ----------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_warned_missing = False
_executor_lock = threading.Lock()


def _model_executor() -> ThreadPoolExecutor:
    """One worker thread per process for smart-turn inferences (concurrent calls queue on it: two
    inferences at once would only share the same cores)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        return _executor


def _timed_probability(model, audio: np.ndarray) -> tuple[float, float]:
    t0 = time.perf_counter()
    p = float(model.probability(audio))
    return p, (time.perf_counter() - t0) * 1000.0


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

    def __init__(self, config: EndpointConfig | None = None, model=None, *, background: bool = True,
                 assumed_inference_ms: float | None = None):
        """`model`: an object with `probability(int16_16k) -> float` (default: the shared smart-turn model,
        loaded on first use when `config.semantic`; if it cannot be loaded the endpointer logs once and
        carries on with silence and transcript rules). `background`: run the model on a worker thread
        (see the module notes). `assumed_inference_ms` (in-line mode only, for benchmarks): count the
        model's answer from question time + this instead of the measured inference time, to see what
        a faster (or slower) machine would get."""
        self.config = config or EndpointConfig()
        self._model = model
        self._model_failed = False
        self.model_error: str | None = None   # why semantic endpointing is off, if it is
        self.background = background
        self.assumed_inference_ms = assumed_inference_ms
        self.inference_ms: list[float] = []    # measured model inferences (for benchmarks and logs)
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
        self._semantic_p: float | None = None      # the model's answer, once it counts
        self._semantic_asked = False
        self._semantic_ready_ms: float | None = None  # audio time from which the answer counts (sync mode)
        self._future: Future | None = None             # the pending answer (background mode)
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
        return self._decision(0.0, None)

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
            self._semantic_ready_ms = None
            self._future = None          # an answer about the last pause is stale now
            return False

        if self._silence_start_ms is None:
            self._silence_start_ms = t_ms
        waited = t_ms + frame_ms - self._silence_start_ms
        decision = self._decision(waited, t_ms + frame_ms)
        if waited >= decision.required_ms:
            self.last_decision = decision
            self._end_turn()
            return True
        return False

    # internals ------------------------------------------------------------------------------

    def _decision(self, waited: float, now_ms: float | None) -> EndpointDecision:
        cfg = self.config
        shape = classify_transcript(self._transcript)
        p = None
        if shape in ("number", "spelling", "filler"):
            required, reason = cfg.incomplete_silence_ms, "incomplete"
        elif shape == "question":
            required, reason = cfg.question_silence_ms, "question"
        else:
            required, reason = cfg.min_silence_ms, "silence"
            if cfg.semantic and waited >= cfg.semantic_check_ms and now_ms is not None:
                p = self._ask_model(now_ms)
                if p is not None:
                    if p >= cfg.semantic_complete and shape == "open_question":
                        required = min(cfg.question_silence_ms, cfg.semantic_complete_silence_ms)
                        reason = "question"
                    elif p >= cfg.semantic_complete:
                        required, reason = cfg.semantic_complete_silence_ms, "semantic_complete"
                    else:
                        required, reason = cfg.incomplete_silence_ms, "semantic_incomplete"
        if required >= cfg.max_silence_ms:
            required, reason = cfg.max_silence_ms, "max_silence"
        return EndpointDecision(
            reason=reason, waited_ms=waited, required_ms=float(required), semantic_probability=p,
            shape=shape, speech_ms=self._speech_ms, transcript=self._transcript,
        )

    def _ask_model(self, now_ms: float) -> float | None:
        """The model's P(complete) for this pause if it is known by `now_ms` (audio time), else None
        (not asked yet, still running, or no model)."""
        if not self._semantic_asked:
            self._semantic_asked = True
            model = self._get_model()
            if model is None or not self._audio16:
                return None
            audio = np.concatenate(self._audio16)
            if self.background:
                self._future = _model_executor().submit(_timed_probability, model, audio)
            else:
                try:
                    p, ms = _timed_probability(model, audio)
                except Exception as exc:   # noqa: BLE001 - a failing model must not end the call
                    self._model_broke(exc)
                    return None
                self.inference_ms.append(ms)
                delay = ms if self.assumed_inference_ms is None else self.assumed_inference_ms
                self._semantic_p, self._semantic_ready_ms = p, now_ms + delay
        if self._future is not None:
            if not self._future.done():
                return None
            fut, self._future = self._future, None
            try:
                p, ms = fut.result()
            except Exception as exc:   # noqa: BLE001
                self._model_broke(exc)
                return None
            self.inference_ms.append(ms)
            self._semantic_p, self._semantic_ready_ms = p, now_ms
        if self._semantic_ready_ms is None or now_ms < self._semantic_ready_ms:
            return None
        return self._semantic_p

    def _model_broke(self, exc: Exception) -> None:
        self._model_failed = True
        self._model = None
        self.model_error = f"smart-turn inference failed: {exc!r}"
        log.warning("semantic endpointing off for this call: %s", self.model_error)

    def _get_model(self):
        if self._model is None and not self._model_failed:
            from ..errors import ModelError
            from .smart_turn import shared_model
            try:
                self._model = shared_model()
            except ModelError as exc:
                global _warned_missing
                self._model_failed = True
                self.model_error = str(exc)
                if not _warned_missing:   # once per process, not once per call
                    _warned_missing = True
                    log.warning("semantic endpointing off (silence and transcript rules only): %s", exc)
        return self._model

    def _end_turn(self) -> None:
        last = self.last_decision
        self.reset()
        self.last_decision = last
