"""Configuration: every problem reported at once, unknown keys are errors, examples are valid."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance import config, schema
from appliance.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "firmware-config").rglob("*.yaml"))


def problems_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(data, "box.yaml")
    return info.value.problems


def test_embedded_defaults_are_a_simulated_line_and_the_offline_call_flow():
    cfg = config.load(None)
    assert [line.type for line in cfg.lines] == ["sim"]
    assert cfg.llm is None and cfg.fleet is None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_are_valid(path):
    cfg = config.load(path)
    assert cfg.lines


def test_every_problem_is_reported_at_once_with_path_value_and_expectation():
    probs = problems_of({
        "lines": [{"type": "sip", "listn": "0.0.0.0:5060"}, {"type": "modm"}],
        "agent": {"barge_in_min_ms": 5},
        "llm": {"model": 3},
        "fleet": {"port": "x"},
        "colour": "blue",
    })
    text = "\n".join(probs)
    assert len(probs) == 6, text
    assert "lines[0].listn: unknown key (did you mean 'listen'?)" in text
    assert "lines[1].type: got 'modm', expected one of 'sim', 'sip', 'modem', 'gsm'" in text
    assert "agent.barge_in_min_ms: got 5, expected a number between 50 and 3000" in text
    assert "llm.model: got 3, expected a string" in text
    assert "fleet.port: got 'x', expected an integer" in text
    assert "colour: unknown key" in text


def test_booleans_are_not_numbers_and_numbers_are_not_strings():
    assert problems_of({"recording": {"keep_days": True}}) == [
        "recording.keep_days: got True, expected an integer"]
    assert problems_of({"device": {"id": 12}})[0].startswith("device.id: got 12, expected a string")


def test_device_id_must_be_usable_in_mqtt_topics():
    (p,) = problems_of({"device": {"id": "shop/1#"}})
    assert "device.id" in p and "letters, digits" in p


def test_duplicate_line_names_are_rejected():
    (p,) = problems_of({"lines": [{"type": "sim"}, {"type": "sim"}]})
    assert "names must be unique" in p and "sim" in p


def test_missing_required_key_names_it():
    (p,) = problems_of({"fleet": {"tls": {"cert_file": "c.pem"}}})
    assert p.startswith("fleet.tls.ca_file: missing")


def test_file_errors_name_the_file_and_the_line(tmp_path):
    bad = tmp_path / "box.yaml"
    bad.write_text("lines:\n  - type: sip\n   name: x\n")
    with pytest.raises(ConfigError) as info:
        config.load(bad)
    assert str(bad) in str(info.value) and "line 3" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "absent.yaml")
    assert "cannot read the file" in str(info.value)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        config.load(top)


def test_secrets_are_references_and_never_serialised(monkeypatch):
    monkeypatch.setenv("TEST_SIP_PW", "hunter2")
    cfg = config.parse({"lines": [{"type": "sip", "password_env": "TEST_SIP_PW"}]})
    assert config.secret(cfg.lines[0].password_env) == "hunter2"
    assert "hunter2" not in repr(schema.to_dict(cfg))


def test_config_objects_are_frozen():
    cfg = config.load(None)
    with pytest.raises(AttributeError):
        cfg.agent.greeting = "x"


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
section_names = st.sampled_from(["device", "lines", "agent", "llm", "speech", "detect", "recording", "fleet",
                                 "log", "lnies"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(section_names, yaml_values, max_size=5))
def test_arbitrary_yaml_gives_a_config_or_a_clear_error_never_a_crash(data):
    try:
        cfg = config.parse(data)
    except ConfigError as exc:
        assert exc.problems
        for p in exc.problems:
            assert ":" in p
    else:
        # whatever was accepted round-trips through plain data
        assert config.parse(yaml.safe_load(yaml.safe_dump(schema.to_dict(cfg)))) == cfg
