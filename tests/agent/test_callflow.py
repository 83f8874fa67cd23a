"""The offline call flow: the built-in receptionist end to end, slot extraction, and validation errors."""
from __future__ import annotations

import pytest

from appliance.agent.callflow import BUILTIN_PATH, CallFlow, extract_day, extract_digits, extract_name, extract_time
from appliance.errors import ConfigError


def converse(lines):
    flow = CallFlow.load()
    flow.start()
    return flow, [flow.respond(line) for line in lines]


def test_builtin_flow_greets_and_answers_hours():
    flow = CallFlow.load()
    greeting = flow.start()
    assert "Acme Dental" in greeting.text and greeting.action is None
    reply = flow.respond("What time do you open on Saturday?")
    assert "Saturday from nine to twelve" in reply.text
    assert reply.action is None


def test_booking_collects_slots_confirms_and_books():
    flow, replies = converse([
        "Hi, I'd like to book an appointment for Tuesday",
        "my name is John Smith",
        "half past two please",
        "yes please",
    ])
    assert replies[0].slots == {"day": "Tuesday"}            # taken from the first sentence
    assert "name" in replies[0].text
    assert "time" in replies[1].text and "Tuesday" in replies[1].text
    assert replies[2].slots == {"day": "Tuesday", "name": "John Smith", "time": "2:30 pm"}
    assert "Shall I book it" in replies[2].text
    assert "You're all set, John Smith" in replies[3].text and replies[3].action is None
    assert "book (" in flow.summary()


def test_confirmation_takes_a_correction_and_a_no():
    flow, replies = converse(["book an appointment", "Anna", "Monday at 10 am", "no, Wednesday", "no"])
    assert replies[2].slots["day"] == "Monday" and replies[2].slots["time"] == "10 am"
    assert replies[3].slots["day"] == "Wednesday" and "Shall I book it" in replies[3].text
    assert "haven't booked anything" in replies[4].text


def test_message_accumulates_a_phone_number_said_in_pieces():
    flow, replies = converse(["I'd like to leave a message", "It's Mary", "five five five", "oh one two three four",
                              "please call me back about my bill", "yes"])
    assert "5 5 5" in replies[2].text                             # it read back what it has
    assert replies[3].slots["phone"] == "55501234"
    assert "5 5 5 0 1 2 3 4" in replies[4].text                   # digits spoken one by one
    assert "pass your message on" in replies[5].text


def test_asking_for_a_person_hands_off_from_any_state():
    flow, replies = converse(["book an appointment", "can I talk to a real person"])
    last = replies[-1]
    assert last.action == "handoff" and last.reason == "caller asked for a person"
    assert flow.ended
    summary = flow.summary()
    assert "book" in summary and "real person" in summary
    after = flow.respond("hello?")
    assert after.text == "" and after.action == "handoff"


def test_goodbye_ends_the_call():
    _, replies = converse(["that's all, goodbye"])
    assert replies[0].action == "end_call" and "Goodbye" in replies[0].text


def test_repeated_failures_hand_off():
    flow, replies = converse(["the weather is purple", "banana helicopter"])
    assert replies[0].action is None and "didn't catch" in replies[0].text
    assert replies[1].action == "handoff" and replies[1].reason == "repeated failures to understand the caller"
    assert "2 turn(s) not understood" in flow.summary()


def test_success_resets_the_failure_count():
    _, replies = converse(["gibberish words", "what are your hours", "more gibberish"])
    assert [r.action for r in replies] == [None, None, None]


def test_a_side_question_while_collecting_is_answered_then_the_slot_asked_again():
    _, replies = converse(["book an appointment", "wait, what are your opening hours"])
    assert "Monday to Friday" in replies[1].text and "your name" in replies[1].text


def test_silence_reprompts():
    _, replies = converse([""])
    assert "still there" in replies[0].text


def test_deterministic():
    lines = ["book an appointment on Friday", "Zoe", "at three", "yes", "bye"]
    assert converse(lines)[1] == converse(lines)[1]


@pytest.mark.parametrize("text,expected", [
    ("2:30 PM", "2:30 pm"), ("ten a.m.", "10 am"), ("at three", "3 pm"), ("quarter to four", "3:45 pm"),
    ("noon", "12 pm"), ("about eleven thirty", "11:30 am"), ("at 9.45", "9:45 am"), ("I don't know", None),
])
def test_extract_time(text, expected):
    assert extract_time(text) == expected


def test_extract_day_name_digits():
    assert extract_day("next monday maybe") == "next Monday"
    assert extract_day("tomorrow works") == "tomorrow"
    assert extract_day("whenever") is None
    assert extract_name("um my name is sarah connor") == "Sarah Connor"
    assert extract_name("S M I T H") == "Smith"
    assert extract_name("I want to book an appointment please") is None
    assert extract_digits("double five, 5 oh 1-2") == "555012"


def write(tmp_path, text):
    p = tmp_path / "flow.yaml"
    p.write_text(text)
    return str(p)


def test_validation_names_file_key_value_and_expectation(tmp_path):
    path = write(tmp_path, """
greeting: Hello {busines}
fallback: Sorry?
max_failures: 0
intents:
  - name: hours
    keywords: [open]
  - name: hours
    keywords: []
    action: transfer
  - name: book
    keywords: [book]
    slots:
      - {name: day, kind: weekday, prompt: "Which day"}
""")
    with pytest.raises(ConfigError) as err:
        CallFlow.load(path)
    msg = str(err.value)
    assert path in msg
    assert "max_failures: got 0, expected a number between 1 and 10" in msg
    assert "intents[1].action: got 'transfer'" in msg and "'handoff'" in msg
    assert "intents[2].slots[0].kind: got 'weekday'" in msg


def test_validation_cross_field_checks(tmp_path):
    path = write(tmp_path, """
greeting: Hello {busines}
fallback: Sorry?
intents:
  - name: hours
    keywords: [open]
  - name: hours
    keywords: ["!!"]
    reply: ok
  - name: book
    keywords: [book]
    slots:
      - {name: day, kind: day, prompt: "Which day, {nme}?"}
""")
    with pytest.raises(ConfigError) as err:
        CallFlow.load(path)
    problems = err.value.problems
    assert any(p.startswith("greeting: got placeholder {busines}") for p in problems)
    assert any(p.startswith("intents[0]: got no reply, action or slots") for p in problems)
    assert any(p.startswith("intents[1].name: got 'hours'") for p in problems)
    assert any(p.startswith("intents[1].keywords") for p in problems)
    assert any(p.startswith("intents[2].done: missing") for p in problems)
    assert any("slots[0].prompt: got placeholder {nme}" in p for p in problems)


def test_unknown_key_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="intent: unknown key"):
        CallFlow.load(write(tmp_path, "greeting: hi\nfallback: what?\nintent: []\nintents: [{name: a, keywords: [x], reply: y}]\n"))
    with pytest.raises(ConfigError, match="cannot read the call flow"):
        CallFlow.load(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        CallFlow.load(write(tmp_path, "greeting: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        CallFlow.load(write(tmp_path, "- just\n- a list\n"))


def test_builtin_file_is_package_data():
    assert BUILTIN_PATH.is_file() and BUILTIN_PATH.parent.name == "data"


def test_snapshot_restore_takes_a_speculative_answer_back():
    """A reply started during the caller's pause and then taken back leaves no trace: the next
    answer is what it would have been without it."""
    flow, _ = converse(["Hi, I'd like to book an appointment for Tuesday"])
    mark = flow.snapshot()
    spec = flow.respond("my name is")                      # the caller had not finished
    assert flow.transcript[-1][1] == spec.text
    flow.restore(mark)
    replay = flow.respond("my name is John Smith")
    fresh, replies = converse(["Hi, I'd like to book an appointment for Tuesday", "my name is John Smith"])
    assert replay.text == replies[-1].text and replay.slots == replies[-1].slots
    assert flow.transcript == fresh.transcript and flow.summary() == fresh.summary()
    # restoring twice from the same mark works (the mark is not aliased by the flow)
    flow.restore(mark)
    assert flow.respond("my name is John Smith").text == replies[-1].text


def test_fixed_lines_are_what_the_flow_says_word_for_word():
    """The lines the voice's phrase cache is filled with: filled in, and none that depends on the
    caller (a slot); a call's replies then start with a cached piece."""
    from appliance.agent import engines
    from appliance.agent.chunker import SentenceChunker
    from appliance.config import load

    flow = CallFlow.load()
    lines = flow.fixed_lines()
    assert flow.start().text in lines                               # the greeting, filled in
    assert all("{" not in t for t in lines)
    assert not any("John Smith" in t or "Tuesday" in t for t in lines)
    pieces = engines.prewarm_phrases(load(None).agent, flow)
    assert len(pieces) == len(set(pieces)) and "Sure," in pieces and "One moment." in pieces
    # the pieces are the ones the session's chunker cuts from a real reply
    flow2, replies = converse(["Hi, I'd like to book an appointment"])
    chunker = SentenceChunker()
    first = (chunker.push(replies[0].text) + chunker.flush())[0]
    assert first in pieces, (first, replies[0].text)
