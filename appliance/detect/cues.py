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
)
# Things a live person says to the caller.
HUMAN = (
    "who's calling", "who is calling", "who's this", "who is this", "whos calling", "whos this",
    "can i help", "may i help", "how can i", "how may i", "what can i do for you", "can i ask who",
    "speaking", "can you hear me", "hello hello", "yes hello", "hi who", "what do you want", "what is it",
    "may i ask", "can i take a message", "one moment", "hold on", "just a second",
)
# Words people open a call with. An answer with none of them ("Emily.") may be a recorded
# name waiting for its beep, so the detector waits a little longer before calling it human.
ANSWER = ("hello", "hi", "hey", "yes", "yeah", "yep", "yup", "speaking", "good morning", "good afternoon",
          "good evening", "this is", "here", "who", "what", "hm", "uh", "um", "hola", "sorry", "ok", "okay")
# A business answering: could be a receptionist or an after-hours message; decide on more audio.
BUSINESS = ("thank you for calling", "thanks for calling", "thank you for choosing", "you've called", "you have called")

_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, punctuation to spaces, single spaces."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = _NON_WORD.sub(" ", t)
    return " ".join(t.split())


def _find(text: str, phrases) -> str | None:
    padded = f" {text} "
    for p in phrases:
        if f" {p} " in padded:
            return p
    return None


def cues(text: str) -> dict[str, str | None]:
    """The first matching phrase of each kind in `text` (None where nothing matched)."""
    t = normalise(text)
    human = _find(t, HUMAN)
    # "is not available" inside a person's sentence ("she's not available ... who's calling")
    # is covered by the human cue taking precedence in the detector.
    return {
        "human": human,
        "machine": _find(t, MACHINE_STRONG),
        "machine_weak": _find(t, MACHINE_WEAK),
        "business": _find(t, BUSINESS),
        "answer": _find(t, ANSWER),
        "empty": None if t else "empty",
    }
