"""The sentence chunker: the first sound as early as possible, never a cut inside a number or an
abbreviation, nothing lost."""
from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from appliance.agent.chunker import SentenceChunker, split_sentences


def stream(text: str) -> list[str]:
    """Feed `text` as an LLM streams it (word pieces with their leading space)."""
    c = SentenceChunker()
    out: list[str] = []
    for tok in re.findall(r"\s*[\w']+|\s*[^\w\s]|\s+", text):
        out += c.push(tok)
    return out + c.flush()


def test_first_piece_is_the_first_clause():
    assert stream("Sure, I can book that for you. What day suits you?") == [
        "Sure,", "I can book that for you.", "What day suits you?"]


def test_long_opening_without_punctuation_starts_after_a_few_words():
    pieces = stream("We are open from nine in the morning to five in the afternoon every weekday.")
    assert pieces[0] == "We are open from nine in the morning"
    assert " ".join(pieces) == "We are open from nine in the morning to five in the afternoon every weekday."


def test_no_cut_in_numbers_abbreviations_or_times():
    pieces = stream("Okay. Dr. Smith sees you at 10:30 for 3.5 hours, e.g. a long visit. See you then.")
    assert "Dr." not in pieces and all(not p.endswith(("Dr.", "3.", "10:", "e.g.")) for p in pieces)
    assert pieces[-1] == "See you then."


def test_a_boundary_waits_for_the_next_character():
    c = SentenceChunker()
    assert c.push("Yes, 3.") == ["Yes,"]   # "3." may still become "3.5"
    assert c.push("5 hours today. Then") == ["3.5 hours today."]


@given(st.lists(st.sampled_from(["word", " ", ",", ".", "?", "!", ":", "3.5", "Dr. ", "10:30", "e.g."]),
                max_size=60).map("".join))
def test_no_word_is_lost_or_reordered(text):
    assert re.findall(r"\w+", " ".join(stream(text))) == re.findall(r"\w+", text)


def test_split_sentences_whole_text():
    assert split_sentences("Of course. One moment please.") == ["Of course.", "One moment please."]
