"""What a greeting says: phrases of voicemail greetings against phrases of live people.

Transcripts come from a small STT model on phone audio, so matching is on normalised words
(lower case, no punctuation) and phrases are short and common. A live-person cue outweighs a
machine cue: "she's not available at the moment, who's calling?" is a person.
"""
from __future__ import annotations

import re

# Phrases that only recorded greetings use.
MACHINE_STRONG = (
    "leave a message", "leave your message", "leave me a message", "leave us a message", "leave a brief message",
    "leave your name", "leave a detailed message", "leave a short message",
    "after the tone", "at the tone", "after the beep", "at the beep", "after the signal",
    "voicemail", "voice mail", "mailbox", "record your message", "recording your message",
    "you've reached", "you have reached", "you reached",
    "can't come to the phone", "cannot come to the phone", "can't get to the phone", "unable to take your call",
    "can't take your call", "cannot take your call", "not able to take your call", "unable to answer",
    "forwarded to an automatic", "automatic voice", "automated voice", "voice messaging", "messaging system",
    "office is closed", "offices are closed", "currently closed", "now closed", "business hours", "office hours",
    "press one", "press 1", "press pound", "hang up or", "when you have finished", "when you are finished",
    "when you're finished", "get back to you", "return your call", "please record", "beep",
)
# Phrases a greeting uses often but a person may say too; they only shorten the wait.
MACHINE_WEAK = (
    "not available", "unavailable", "please leave", "away from", "sorry i missed", "sorry we missed",
    "missed your call", "not here", "out of the office", "reached the", "thank you for your call",
    "call you back", "as soon as possible", "music", "is not available", "isn't available", "not available right now",
    "is full", "cannot accept", "can't accept", "goodbye", "good bye",
)
# The same phrases as patterns that survive a small STT model's slips ("leave my message").
MACHINE_STRONG_PATTERNS = (
    re.compile(r"\bleave (?:\w+ ){0,2}message\b"), re.compile(r"\b(?:after|at) the (?:\w+ )?(?:tone|beep)\b"),
)
# "Who's calling?" as a small model mishears it ("move calling", "it was calling"): an answer that
# ends on "... calling" (but not "thank you for calling", which businesses' greetings say).
HUMAN_PATTERNS = (re.compile(r"(?<!\bfor) calling(?: please)?$"),)
# Things a live person says to the caller.
HUMAN = (
    "who's calling", "who is calling", "who's this", "who is this", "whos calling", "whos this",
    "can i help", "may i help", "how can i", "how may i", "what can i do for you", "can i ask who",
    "speaking", "can you hear me", "hello hello", "yes hello", "hi who", "what do you want", "what is it",
    "may i ask", "can i take a message", "one moment", "hold on", "just a second",
    "do you want to leave", "would you like to leave", "you want to leave a message",
)
# Words people open a call with. An answer with none of them ("Emily.") may be a recorded
# name waiting for its beep, so the detector waits a little longer before calling it human.
ANSWER = ("hello", "hi", "hey", "yes", "yeah", "yep", "yup", "speaking", "good morning", "good afternoon",
          "good evening", "this is", "here", "who", "what", "hm", "uh", "um", "hola", "sorry", "ok", "okay")
# A business answering: could be a receptionist or an after-hours message; decide on more audio.
BUSINESS = ("thank you for calling", "thanks for calling", "thank you for choosing", "you've called", "you have called")

_NON_WORD = re.compile(r"[^a-z0-9' ]+")
# Whisper's notes on non-speech: "[ Silence ]", "(indistinct chatter)", "*music*", "♪".
_MUSIC_NOTE = re.compile(r"music|song|melody|instrumental|♪")
_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪")


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, punctuation to spaces, single spaces."""
    t = _ANNOTATION.sub(" ", text.lower().replace("\u2019", "'").replace("\u2018", "'"))
    t = _NON_WORD.sub(" ", t)
    return " ".join(t.split())


def _find(text: str, phrases) -> str | None:
    padded = f" {text} "
    for p in phrases:
        if f" {p} " in padded:
            return p
    return None


def _match(text: str, patterns) -> str | None:
    for p in patterns:
        m = p.search(text)
        if m:
            return m.group(0).strip()
    return None


def cues(text: str) -> dict[str, str | None]:
    """The first matching phrase of each kind in `text` (None where nothing matched).

    `music`: the STT heard music and no words (its notes such as "(gentle music)" only): that
    sound was most likely not somebody answering."""
    t = normalise(text)
    human = _find(t, HUMAN) or _match(t, HUMAN_PATTERNS)
    # "is not available" inside a person's sentence ("she's not available ... who's calling")
    # is covered by the human cue taking precedence in the detector.
    return {
        "human": human,
        "machine": _find(t, MACHINE_STRONG) or _match(t, MACHINE_STRONG_PATTERNS),
        "machine_weak": _find(t, MACHINE_WEAK),
        "business": _find(t, BUSINESS),
        "answer": _find(t, ANSWER),
        "empty": None if t else "empty",
        "music": "music" if not t and _MUSIC_NOTE.search(text.lower()) else None,
    }
