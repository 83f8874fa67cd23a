"""Phone-friendly text normalisation: what the voice will say for what an LLM writes."""
from __future__ import annotations

import pytest

from appliance.speech.normalize import normalize, number_words, ordinal_words, split_sentences


@pytest.mark.parametrize("text, spoken", [
    # phone numbers: digit by digit, in their groups
    ("Call 555-123-4567 now", "Call five five five, one two three, four five six seven now"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
    ("(212) 555-0199", "two one two, five five five, zero one nine nine"),
    ("dial 555-0199.", "dial five five five, zero one nine nine."),
    # times
    ("at 3:30 pm", "at three thirty P M"),
    ("at 12:05", "at twelve oh five"),
    ("at 9 a.m.", "at nine A M."),
    ("at 7:00", "at seven o'clock"),
    # dates
    ("on 2024-03-05", "on March fifth, twenty twenty four"),
    ("on 12/03", "on December third"),
    ("on 25/12/2025", "on December twenty fifth, twenty twenty five"),
    ("Mar 3rd, 2025", "March third, twenty twenty five"),
    ("the 21st of May", "the twenty first of May"),
    # money
    ("$19.99", "nineteen dollars and ninety nine cents"),
    ("$1,250", "one thousand two hundred fifty dollars"),
    ("£3.50", "three pounds and fifty pence"),
    ("$0.01", "one cent"),
    ("€1", "one euro"),
    # abbreviations, percentages, plain numbers
    ("Dr. Smith, 221 Baker St., Apt. 4", "Doctor Smith, two hundred twenty one Baker Street, Apartment four"),
    ("ext. 42", "extension forty two"),
    ("50% off", "fifty percent off"),
    ("3.14", "three point one four"),
    ("code 007", "code zero zero seven"),
    ("**Sure**, `one` moment", "Sure, one moment"),
])
def test_normalize(text, spoken):
    assert normalize(text) == spoken


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(105) == "one hundred five"
    assert number_words(2_000_017) == "two million seventeen"
    assert ordinal_words(22) == "twenty second"
    assert ordinal_words(40) == "fortieth"


def test_text_without_numbers_is_unchanged():
    s = "Thanks for calling, how can I help you today?"
    assert normalize(s) == s


def test_split_sentences_first_is_short_for_fast_first_audio():
    parts = split_sentences(normalize("Thanks for calling, your appointment is at 3:30 pm. See you then!"))
    assert parts == ["Thanks for calling,", "your appointment is at three thirty P M.", "See you then!"]
    long = "word " * 100
    assert all(len(p) <= 220 for p in split_sentences(long.strip() + ", and more."))


def test_wer_scoring_normalises_both_sides():
    from appliance.speech.corpus import wer, words

    assert wer("a b c", "a x c") == (1, 3)
    assert wer("call me", "") == (2, 2)
    assert words("It's 3:30 pm, $5.") == ["it's", "3", "3", "0", "p", "m", "5", "dollars"]
    assert wer("See you at 3:30 pm.", "See you at 330 PM") == (0, 8)   # ... 3 3 0 p m
    assert wer("One two three.", "1, 2, 3") == (0, 3)
    # numbers compare as their digits, however they are written or spoken
    assert wer("One two three four five six seven eight nine ten.", "1-2-345-678910.") == (0, 11)
    assert wer("in twenty minutes", "in 20 minutes") == (0, 4)
    assert wer("four thousand five hundred sixty seven", "4567") == (0, 4)
    assert wer("twenty one", "twenty two") == (1, 2)
    assert wer("four five six", "4 5 7") == (1, 3)
    assert wer("one hundred", "one") == (2, 3)
