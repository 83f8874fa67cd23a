"""The offline call flow: a YAML script that drives the call when no LLM is configured.

    flow = CallFlow.load()            # the built-in receptionist (appliance/data/callflow.yaml)
    reply = flow.start()              # the greeting
    reply = flow.respond("I'd like to book an appointment for Tuesday")
    reply.text, reply.action, reply.reason, reply.slots

Intents are matched on keywords (whole words, any case): the intent whose matching keywords cover the
most words wins, the first in the file on a tie. An intent either answers (`reply`), acts (`action:
handoff | end_call`), or collects slots one prompt at a time (kinds: name, day, time, phone, text),
then confirms (yes / no / a correction) and says `done`. Asking for a person or saying goodbye works
at any point. After `max_failures` turns in a row that it could not understand, the flow hands off.

Deterministic and fast (regular expressions, no model): the same words always get the same reply.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ..errors import ConfigError
from ..schema import build

BUILTIN_PATH = Path(__file__).resolve().parent.parent / "data" / "callflow.yaml"

SlotKind = Literal["name", "day", "time", "phone", "text"]


# ---- the file's schema ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SlotSpec:
    name: str = field(metadata={"pattern": r"[a-z_][a-z0-9_]*", "pattern_help": "a lower-case identifier"})
    prompt: str
    kind: SlotKind = "text"
    retry: str | None = field(default=None, metadata={"help": "said when the answer did not fit; default: the prompt again"})


@dataclass(frozen=True)
class IntentSpec:
    name: str
    keywords: tuple[str, ...]
    reply: str | None = None
    action: Literal["handoff", "end_call"] | None = None
    reason: str | None = None
    slots: tuple[SlotSpec, ...] = ()
    confirm: str | None = None
    done: str | None = None
    cancelled: str | None = None


@dataclass(frozen=True)
class CallFlowSpec:
    greeting: str
    fallback: str
    intents: tuple[IntentSpec, ...]
    variables: dict[str, str] = field(default_factory=dict)
    anything_else: str = "Is there anything else I can help you with?"
    no_input: str = "Are you still there?"
    max_failures: int = field(default=2, metadata={"min": 1, "max": 10})
    failure_handoff: str = "Let me put you through to a colleague."
    failure_reason: str = "repeated failures to understand the caller"


@dataclass(frozen=True)
class Reply:
    """What the agent says, and what the call should do after saying it."""

    text: str
    action: Literal["handoff", "end_call"] | None = None
    reason: str | None = None
    slots: dict = field(default_factory=dict)


# ---- understanding words ------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


_QUESTION_WORDS = {"what", "when", "where", "who", "why", "how", "which", "are", "is", "do", "does", "can",
                   "could", "would", "will"}
_LEAD_INS = {"sorry", "so", "and", "okay", "ok", "oh", "but", "um", "uh", "well", "also", "hi", "hello"}


def _is_question(text: str) -> bool:
    """The caller asks something (ends in '?', or starts like a question after a lead-in word)."""
    if text.rstrip().endswith("?"):
        return True
    words = [w for w in _words(text) if w not in _LEAD_INS]
    return bool(words) and words[0] in _QUESTION_WORDS


def _phrase_in(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


_YES = {"yes", "yeah", "yep", "yup", "correct", "right", "sure", "ok", "okay", "please", "absolutely", "perfect", "fine", "great"}
_NO = {"no", "nope", "nah", "wrong", "don't", "not", "cancel"}

_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DAY_ABBR = {"mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday", "thu": "thursday",
             "thur": "thursday", "thurs": "thursday", "fri": "friday", "sat": "saturday", "sun": "sunday"}

_NUM = {"zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
        "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_MINUTES = {"fifteen": 15, "thirty": 30, "forty": 40, "forty-five": 45, "oh": 0, "o'clock": 0}

_NAME_LEADS = [["my", "name", "is"], ["name", "is"], ["name's"], ["this", "is"], ["it's"], ["it", "is"],
               ["i'm"], ["i", "am"], ["call", "me"], ["speaking"], ["from"]]
_NOT_NAMES = _YES | _NO | {"um", "uh", "er", "erm", "hmm", "the", "a", "an", "and", "so", "well", "hello", "hi", "sorry",
                           "what", "pardon", "i", "me", "it", "is", "to", "for", "book", "appointment", "message"}


def extract_day(text: str) -> str | None:
    """'Tuesday', 'tomorrow', 'today', 'next Monday' ... or None."""
    w = _words(text)
    for i, tok in enumerate(w):
        day = tok if tok in _DAYS else _DAY_ABBR.get(tok)
        if day:
            return ("next " if i > 0 and w[i - 1] == "next" else "") + day.capitalize()
    if _phrase_in(w, ["day", "after", "tomorrow"]):
        return "the day after tomorrow"
    for tok in ("tomorrow", "today", "tonight"):
        if tok in w:
            return tok
    return None


def _fmt_time(h: int, m: int, ampm: str | None) -> str | None:
    if not (0 <= m < 60):
        return None
    if ampm is None and 1 <= h <= 7:
        ampm = "pm"        # a business day: "at three" means the afternoon
    elif ampm is None and 8 <= h <= 11:
        ampm = "am"
    if h > 12:
        h, ampm = h - 12, "pm"
    if not (1 <= h <= 12):
        return None
    return f"{h}:{m:02d} {ampm}" if m else f"{h} {ampm}"


def extract_time(text: str) -> str | None:
    """'10 am', '2:30 pm', 'noon' ... from digits or words, or None."""
    low = text.lower().replace("a.m.", "am").replace("p.m.", "pm").replace("a. m.", "am").replace("p. m.", "pm")
    if re.search(r"\b(noon|midday)\b", low):
        return "12 pm"
    ampm = "am" if re.search(r"\b(am|morning)\b", low) else "pm" if re.search(r"\b(pm|afternoon|evening)\b", low) else None
    m = re.search(r"\b(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)?\b", low)
    if m:
        return _fmt_time(int(m.group(1)), int(m.group(2) or 0), m.group(3) or ampm)
    w = _words(low.replace("-", " "))
    for i, tok in enumerate(w):
        if tok in ("half", "quarter") and i + 2 < len(w) and w[i + 1] in ("past", "to") and w[i + 2] in _NUM:
            h = _NUM[w[i + 2]]
            mins = 30 if tok == "half" else 15
            if w[i + 1] == "to":
                h, mins = (h - 1) or 12, 60 - mins
            return _fmt_time(h, mins, ampm)
    for i, tok in enumerate(w):
        if tok in _NUM and _NUM[tok] >= 1 and (i == 0 or w[i - 1] != "for"):
            mins = 0
            if i + 1 < len(w) and w[i + 1] in ("fifteen", "thirty", "forty", "fifty"):
                mins = {"fifteen": 15, "thirty": 30, "forty": 40, "fifty": 50}[w[i + 1]]
                if i + 2 < len(w) and w[i + 2] == "five" and mins >= 40:
                    mins += 5
            follows = w[i + 1] if i + 1 < len(w) else ""
            if mins or follows in ("o'clock", "am", "pm", "in", "") or ampm or (i > 0 and w[i - 1] in ("at", "around", "about")):
                return _fmt_time(_NUM[tok], mins, ampm)
    return None


def extract_digits(text: str) -> str:
    """All digits said, from digits and number words ('oh', 'double five', 'triple two')."""
    out: list[str] = []
    repeat = 1
    for tok in _words(text.replace("-", " ")):
        if tok.isdigit():
            out.append(tok * repeat if len(tok) == 1 else tok)
            repeat = 1
        elif tok in _NUM and _NUM[tok] <= 9:
            out.append(str(_NUM[tok]) * repeat)
            repeat = 1
        elif tok in ("double", "triple"):
            repeat = 2 if tok == "double" else 3
    return "".join(out)


def extract_name(text: str) -> str | None:
    """'John Smith' from 'my name is John Smith', 'it's John', 'J O H N', or a short bare answer."""
    w = [t for t in _words(text) if t not in ("um", "uh", "er", "erm", "hmm", "yes", "yeah", "sure", "ok", "okay", "well")]
    if not w:
        return None
    for lead in sorted(_NAME_LEADS, key=len, reverse=True):
        n = len(lead)
        for i in range(len(w) - n + 1):
            if w[i:i + n] == lead and i + n < len(w):
                rest = w[i + n:i + n + 2]
                rest = [t for t in rest if t not in _NOT_NAMES and not t.isdigit()]
                if rest:
                    return " ".join(t.capitalize() for t in rest)
    if len(w) >= 2 and all(len(t) == 1 and t.isalpha() for t in w):    # spelt out
        return "".join(w).capitalize()
    if len(w) <= 3 and not any(t in _NOT_NAMES or t.isdigit() for t in w):
        return " ".join(t.capitalize() for t in w)
    return None


def extract_text(text: str) -> str | None:
    t = " ".join(text.split()).strip()
    return t if _words(t) else None


# ---- the flow -------------------------------------------------------------------------------------

def _copy(value):
    """State values are immutable (specs, replies, strings, numbers) or flat dicts/lists of them."""
    return value.copy() if isinstance(value, (dict, list)) else value


class CallFlow:
    """One conversation through a call flow. Use `CallFlow.load(path)`; one instance per call."""

    def __init__(self, spec: CallFlowSpec, source: str = "<callflow>"):
        self.spec = spec
        self.source = source
        self._keywords = [(intent, [w for w in (_words(k) for k in intent.keywords) if w]) for intent in spec.intents]
        self.reset()

    # loading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | None = None) -> CallFlow:
        """Read and validate a call flow YAML file (default: the built-in receptionist).

        Raises ConfigError listing every problem: the file, the key, the value, what was expected."""
        file = Path(path) if path else BUILTIN_PATH
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read the call flow: {exc.strerror or exc}"], source) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"not valid YAML: {exc}"], source) from exc
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data, source: str = "<callflow>") -> CallFlow:
        """Validate already-parsed YAML data (e.g. pushed over MQTT)."""
        if not isinstance(data, dict):
            raise ConfigError([f"<top>: got {type(data).__name__}, expected a mapping with greeting, fallback, intents"], source)
        spec, problems = build(CallFlowSpec, data)
        if spec is not None:
            problems += _check(spec)
        if problems:
            raise ConfigError(problems, source)
        return cls(spec, source)

    # conversation -------------------------------------------------------------------------------

    # what reset() sets: the whole state of one conversation (see snapshot/restore)
    _STATE = ("_task", "_slots", "_partial_digits", "_confirming", "_failures", "_ended", "_last_intent",
              "_completed", "transcript")

    def snapshot(self) -> dict:
        """The conversation's state now, for `restore` (a speculative answer that is taken back)."""
        return {k: _copy(getattr(self, k)) for k in self._STATE}

    def restore(self, snap: dict) -> None:
        for k in self._STATE:
            setattr(self, k, _copy(snap[k]))

    def reset(self) -> None:
        """Start over (a new call)."""
        self._task: IntentSpec | None = None     # intent whose slots are being collected
        self._slots: dict[str, str] = {}
        self._partial_digits = ""
        self._confirming = False
        self._failures = 0
        self._ended: Reply | None = None
        self._last_intent: str | None = None
        self._completed: list[str] = []
        self.transcript: list[tuple[str, str]] = []   # (speaker 'agent'|'caller', text)

    @property
    def ended(self) -> bool:
        """True once the flow has handed off or ended the call."""
        return self._ended is not None

    def start(self) -> Reply:
        """The greeting."""
        return self._say(self._fill(self.spec.greeting))

    def respond(self, user_text: str) -> Reply:
        """The agent's answer to what the caller said (the final transcript of their turn)."""
        if self._ended is not None:
            return Reply("", self._ended.action, "the call flow had already ended", dict(self._slots))
        text = (user_text or "").strip()
        self.transcript.append(("caller", text))
        words = _words(text)
        if not words:
            return self._fail(self.spec.no_input)

        intent = self._match(words)
        # asking for a person or saying goodbye works in every state (but "no thanks" while
        # confirming is an answer to the question, not a goodbye)
        if intent is not None and intent.action == "handoff":
            return self._act(intent)
        if self._confirming:
            return self._confirmation(text, words)
        if intent is not None and intent.action == "end_call":
            return self._act(intent)
        if self._task is not None:
            return self._collect(text, intent)
        if intent is None:
            return self._fail(self.spec.fallback)
        return self._begin(intent, text)

    def summary(self) -> str:
        """A short summary for the handoff event and the human who takes the call."""
        parts = []
        task = self._task.name if self._task else self._last_intent
        if task:
            parts.append(f"Caller intent: {task}.")
        if self._slots:
            parts.append("Collected: " + ", ".join(f"{k}={v}" for k, v in self._slots.items()) + ".")
        if self._completed:
            parts.append("Completed: " + ", ".join(self._completed) + ".")
        said = [t for who, t in self.transcript if who == "caller" and t]
        if said:
            parts.append(f"Caller said {len(said)} time(s); last: \"{said[-1]}\".")
        if self._failures:
            parts.append(f"{self._failures} turn(s) not understood.")
        if self._ended is not None and self._ended.reason:
            parts.append(f"Reason: {self._ended.reason}.")
        return " ".join(parts) or "The caller has not said anything yet."

    # internals ----------------------------------------------------------------------------------

    def _match(self, words: list[str]) -> IntentSpec | None:
        best, best_score = None, 0
        for intent, phrases in self._keywords:
            score = sum(len(p) for p in phrases if _phrase_in(words, p))
            if score > best_score:
                best, best_score = intent, score
        return best

    def fixed_lines(self) -> list[str]:
        """Everything the flow says that does not depend on the caller (no slot in it), filled
        in: what a call will say word for word, for the voice's phrase cache."""
        import string

        spec = self.spec
        texts = [spec.greeting, spec.fallback, spec.anything_else, spec.no_input, spec.failure_handoff]
        for intent in spec.intents:
            texts += [intent.reply, intent.confirm, intent.done, intent.cancelled]
            texts += [t for slot in intent.slots for t in (slot.prompt, slot.retry)]
        known = {*spec.variables, "anything_else"}
        out: list[str] = []
        for t in texts:
            if t and all(f is None or f in known for _, f, _, _ in string.Formatter().parse(t)):
                line = self._fill(t, {})
                if line and line not in out:
                    out.append(line)
        return out

    def _fill(self, template: str, slots: dict | None = None) -> str:
        values = dict(self.spec.variables)
        values["anything_else"] = self.spec.anything_else
        if slots is not None:
            values.update(slots)
        else:
            kinds = {s.name: s.kind for s in self._task.slots} if self._task else {}
            # digits read one by one: "5 5 5 0 1 2 3", not "five million ..."
            values.update({k: " ".join(v) if kinds.get(k) == "phone" else v for k, v in self._slots.items()})
        return " ".join(template.format_map(_Blank(values)).split())

    def _say(self, text: str, action=None, reason=None) -> Reply:
        reply = Reply(text, action, reason, dict(self._slots))
        self.transcript.append(("agent", text))
        if action is not None:
            self._ended = reply
        return reply

    def _fail(self, text: str) -> Reply:
        self._failures += 1
        if self._failures >= self.spec.max_failures:
            return self._say(self._fill(self.spec.failure_handoff), "handoff", self.spec.failure_reason)
        return self._say(self._fill(text))

    def _act(self, intent: IntentSpec) -> Reply:
        self._last_intent = intent.name
        text = self._fill(intent.reply or "")
        return self._say(text, intent.action, intent.reason or intent.name)

    def _begin(self, intent: IntentSpec, text: str) -> Reply:
        self._failures = 0
        self._last_intent = intent.name
        if not intent.slots:
            self._completed.append(intent.name)
            self._slots = {}
            return self._say(self._fill(intent.reply or self.spec.anything_else))
        self._task, self._slots, self._partial_digits = intent, {}, ""
        # "book me in for Tuesday at three": take what the first sentence already gives
        for slot in intent.slots:
            if slot.kind in ("day", "time"):
                value = _extract(slot.kind, text)
                if value:
                    self._slots[slot.name] = value
        return self._next_prompt(retry=False)

    def _pending(self) -> SlotSpec | None:
        assert self._task is not None
        for slot in self._task.slots:
            if slot.name not in self._slots:
                return slot
        return None

    def _next_prompt(self, retry: bool) -> Reply:
        slot = self._pending()
        if slot is None:
            task = self._task
            if task.confirm:
                self._confirming = True
                return self._say(self._fill(task.confirm))
            return self._finish()
        return self._say(self._fill(slot.retry if retry and slot.retry else slot.prompt))

    def _collect(self, text: str, intent: IntentSpec | None) -> Reply:
        slot = self._pending()
        value = None
        if slot.kind == "phone":
            digits = self._partial_digits + extract_digits(text)
            if len(digits) >= 7:
                value, self._partial_digits = digits, ""
            elif digits:
                self._partial_digits = digits    # "555 ..." then "0123": keep what was said
                return self._say(self._fill("Go on, I have {so_far} so far.", {"so_far": " ".join(digits)}))
        else:
            value = _extract(slot.kind, text)
        side = intent is not None and intent is not self._task and not intent.slots and intent.reply
        if side and _is_question(text):
            value = None   # "are you open on Sunday?" asks about Sunday, it does not choose it
        if value is None:
            # a question on the side ("when are you open?"): answer it, then ask again
            if side:
                answer = self._fill(intent.reply.replace("{anything_else}", ""))
                return self._say(answer + " " + self._fill(slot.prompt))
            self._failures += 1
            if self._failures >= self.spec.max_failures:
                return self._say(self._fill(self.spec.failure_handoff), "handoff", self.spec.failure_reason)
            return self._say(self._fill(slot.retry or slot.prompt))
        self._failures = 0
        self._slots[slot.name] = value
        # a sentence may carry more than the slot asked for ("Tuesday at ten")
        for other in self._task.slots:
            if other.name not in self._slots and other.kind in ("day", "time"):
                extra = _extract(other.kind, text)
                if extra:
                    self._slots[other.name] = extra
        return self._next_prompt(retry=False)

    def _confirmation(self, text: str, words: list[str]) -> Reply:
        task = self._task
        changed = False
        for slot in task.slots:      # "no, Wednesday": a correction
            if slot.kind in ("day", "time"):
                value = _extract(slot.kind, text)
                if value and value != self._slots.get(slot.name):
                    self._slots[slot.name] = value
                    changed = True
        if changed:
            self._failures = 0
            return self._say(self._fill(task.confirm))
        no = any(w in _NO for w in words) or _phrase_in(words, ["don't"])
        yes = any(w in _YES for w in words) or _phrase_in(words, ["go", "ahead"]) or _phrase_in(words, ["do", "it"])
        if yes and not no:
            self._confirming = False
            return self._finish()
        if no:
            self._confirming = False
            self._failures = 0
            text_out = self._fill(task.cancelled or self.spec.anything_else)
            self._task, self._slots = None, {}
            return self._say(text_out)
        self._failures += 1
        if self._failures >= self.spec.max_failures:
            return self._say(self._fill(self.spec.failure_handoff), "handoff", self.spec.failure_reason)
        return self._say("Sorry, was that a yes or a no? " + self._fill(task.confirm))

    def _finish(self) -> Reply:
        task = self._task
        self._failures = 0
        self._completed.append(f"{task.name} (" + ", ".join(f"{k}={v}" for k, v in self._slots.items()) + ")")
        reply = self._say(self._fill(task.done or self.spec.anything_else))
        self._task, self._slots = None, {}
        return reply


def _extract(kind: str, text: str) -> str | None:
    if kind == "name":
        return extract_name(text)
    if kind == "day":
        return extract_day(text)
    if kind == "time":
        return extract_time(text)
    if kind == "phone":
        digits = extract_digits(text)
        return digits if len(digits) >= 7 else None
    return extract_text(text)


class _Blank(dict):
    """format_map helper: an unknown placeholder (validated away at load) renders as nothing."""

    def __missing__(self, key):
        return ""


def _placeholders(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return [f"<{exc}>"]


def _check(spec: CallFlowSpec) -> list[str]:
    """Cross-field checks the schema cannot express: names unique, placeholders known, intents sensible."""
    problems: list[str] = []
    known = set(spec.variables) | {"anything_else"}
    names: set[str] = set()

    def check_template(key: str, template: str | None, extra: set[str]) -> None:
        if template is None:
            return
        for ph in _placeholders(template):
            if ph.startswith("<"):
                problems.append(f"{key}: got {template!r}, expected a template with valid {{placeholders}} ({ph[1:-1]})")
            elif ph not in known | extra:
                problems.append(f"{key}: got placeholder {{{ph}}}, expected one of "
                                + ", ".join(sorted(known | extra)) + " (a variable or one of this intent's slots)")

    for key in ("greeting", "fallback", "anything_else", "no_input", "failure_handoff"):
        check_template(key, getattr(spec, key), set())
    if not spec.intents:
        problems.append("intents: got an empty list, expected at least one intent")
    for i, intent in enumerate(spec.intents):
        where = f"intents[{i}]"
        if intent.name in names:
            problems.append(f"{where}.name: got {intent.name!r}, expected a name not used by another intent")
        names.add(intent.name)
        if not intent.keywords or not any(_words(k) for k in intent.keywords):
            problems.append(f"{where}.keywords: got {list(intent.keywords)!r}, expected at least one keyword with a word in it")
        slot_names = {s.name for s in intent.slots}
        if len(slot_names) != len(intent.slots):
            problems.append(f"{where}.slots: got duplicate slot names, expected each slot name once")
        if intent.action and intent.slots:
            problems.append(f"{where}: got both action {intent.action!r} and slots, expected one or the other")
        if not intent.action and not intent.slots and not intent.reply:
            problems.append(f"{where}: got no reply, action or slots, expected at least one of them")
        if intent.slots and not intent.done:
            problems.append(f"{where}.done: missing, expected what to say once every slot is collected")
        for key in ("reply", "confirm", "done", "cancelled"):
            check_template(f"{where}.{key}", getattr(intent, key), slot_names)
        for j, slot in enumerate(intent.slots):
            check_template(f"{where}.slots[{j}].prompt", slot.prompt, slot_names)
            check_template(f"{where}.slots[{j}].retry", slot.retry, slot_names)
    return problems
