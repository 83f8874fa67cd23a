"""Unit and property tests of the modem parsers: DLE codec, +VSM listings, 27.007 results, clock drift."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.lines import dle
from appliance.lines.at import LineSplitter, is_caller_id_line, response_prefix
from appliance.lines.gsm import parse_clcc, parse_clip, parse_creg, rssi_to_dbm
from appliance.lines.modem_audio import ClockStats
from appliance.lines.modem_dialects import detect_dialect
from appliance.lines.vsm import choose_codec, decode, encode, parse_vsm_list


def test_dle_decoder_codes_and_split_sequences():
    d = dle.DLEDecoder()
    audio, ev, rest = d.feed(b"ab\x10\x10c\x10")          # literal DLE, then a DLE cut at the chunk end
    assert (audio, ev, rest) == (b"ab\x10c", [], None)
    audio, ev, rest = d.feed(b"5x\x10\x1ay\x10b")          # digit 5, DLE SUB = two DLEs, busy
    assert audio == b"x\x10\x10y" and ev == ["5", "b"] and rest is None
    audio, ev, rest = d.feed(b"z\x10\x03\r\nOK\r\n")
    assert audio == b"z" and rest == b"\r\nOK\r\n" and d.ended


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=20))
def test_shield_then_decode_is_identity_under_any_chunking(data, cuts):
    wire = dle.shield(data) + dle.END_STREAM + b"tail"
    d = dle.DLEDecoder()
    out, events, rest, pos = bytearray(), [], None, 0
    for c in cuts + [len(wire)]:
        a, e, rest = d.feed(wire[pos:pos + c])
        out += a
        events += e
        pos += c
        if rest is not None:
            break
    # after DLE ETX everything else is command-mode text again
    assert bytes(out) == data and events == [] and rest is not None and rest + wire[pos:] == b"tail"


def test_vsm_listings_of_real_chipsets():
    conexant = ['1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)', '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)',
                '131,"ULAW",8,0,(8000),(0),(0)', '132,"ALAW",8,0,(8000),(0),(0)', '133,"LINEAR",16,0,(8000),(0),(0)']
    codecs = parse_vsm_list(conexant)
    assert [c.kind for c in codecs] == ["u8", "u8", "ulaw", "alaw", "s16le"]
    assert choose_codec(codecs).cml == 131
    usr = ['+VSM: 128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)', '+VSM: 1,"UNSIGNED PCM",8,0,(8000),(0),(0)']
    assert choose_codec(parse_vsm_list(usr)).cml == 128
    # MultiTech MT5634: 130 is A-law there, 131 u-law; the number must not decide
    mt = ['128,"8-BIT LINEAR",8,0,(8000),(0),(0)', '130,"ALAW",8,0,(8000),(0),(0)', '131,"ULAW",8,0,(8000),(0),(0)']
    assert {c.cml: c.kind for c in parse_vsm_list(mt)} == {128: "u8", 130: "alaw", 131: "ulaw"}
    zyxel = ["81;ULAW;8;0;(8000)", "2;ADPCM;2;0;(9600)"]
    z = parse_vsm_list(zyxel)
    assert [c.kind for c in z] == ["ulaw", "other"] and choose_codec(z).cml == 81
    agere = ['0,"SIGNED PCM",16,0,(8000),(0),(0)']
    assert choose_codec(parse_vsm_list(agere)).kind == "s16le"
    assert choose_codec(parse_vsm_list(['4,"IMA ADPCM",4,0,(8000),(0),(0)'])) is None
    assert parse_vsm_list(["", "OK?", "garbage,,,"]) == []


def test_sample_format_roundtrip():
    import numpy as np

    pcm = (np.sin(np.arange(160) / 5) * 12000).astype(np.int16)
    for kind, tol in (("s16le", 0), ("u8", 256), ("s8", 256), ("ulaw", 800), ("alaw", 800)):
        back = decode(kind, encode(kind, pcm))
        assert np.max(np.abs(back.astype(int) - pcm)) <= tol, kind


def test_27007_parsers():
    assert parse_creg("+CREG: 2,1,\"1A2B\",\"01C3D4E5\",7")[0] == 1        # read form with <n>
    assert parse_creg('+CREG: 5,"1A2B","01C3",7')[:2] == (5, "1A2B")       # URC: field 2 quoted
    assert parse_creg("+CREG: 0,3")[0] == 3 and parse_creg("+CREG: 1")[0] == 1
    assert parse_creg("+CREG:") is None
    assert parse_clip('+CLIP: "+15551234",145,,,,0') == ("+15551234", "")
    assert parse_clip('+CLIP: "",128,,,,1')[0] == "private"
    assert parse_clip('+CLIP: "",128,,,,2')[0] == "unavailable"
    c = parse_clcc('+CLCC: 1,1,4,0,0,"+79139131234",145')
    assert c == {"id": 1, "dir": 1, "stat": 4, "mode": 0, "number": "+79139131234"}
    assert [rssi_to_dbm(x) for x in (0, 1, 2, 30, 31, 99)] == [-113, -111, -109, -53, -51, None]


def test_at_helpers():
    assert response_prefix("AT+CLCC") == "+CLCC:" and response_prefix("at+creg?") == "+CREG:"
    assert response_prefix("ATI3") is None
    for line in ("NMBR = 5551234", "NMBR=P", "DATE=1125", "NAME = ALICE"):
        assert is_caller_id_line(line)
    assert not is_caller_id_line("NAMED PIPE")


def test_line_splitter_stray_bytes_and_voice_mode_dle():
    s = LineSplitter()
    s.buf += b"\xff\x00\xfe\r\nOK\r\n\r\n\x10RRING\r\n\x81\x82"
    items = []
    while (it := s.next_item()) is not None:
        items.append(it)
    assert items == [("line", "OK"), ("dle", "R"), ("line", "RING")]


def test_dialect_detection_from_identity():
    assert detect_dialect("56000 CX93001-EIS_V0.2002-V92 CONEXANT").name == "conexant"
    assert detect_dialect("5601 U.S. Robotics 56K FAX USB").name == "usrobotics"
    assert detect_dialect("LT V.92 Data+Fax Modem Agere Systems").name == "agere"
    assert detect_dialect("ZyXEL Omni 288S").name == "zyxel"
    assert detect_dialect("spandsp").name == "generic"


def test_clock_drift_fit_with_jitter():
    rng = random.Random(3)
    for ppm in (-300.0, 0.0, 250.0):
        c = ClockStats()
        period = 0.020 / (1 + ppm * 1e-6)
        for n in range(3000):                       # one minute of frames, up to 8 ms late each
            c.tick(100.0 + n * period + rng.uniform(0, 0.008))
        assert abs(c.drift_ppm - ppm) < 40, (ppm, c.drift_ppm)
    c = ClockStats()
    for n in range(300):                            # a 3 s pause (DTMF sent) is cut out of the fit
        c.tick(n * 0.02 + (3.0 if n >= 150 else 0.0))
    assert abs(c.drift_ppm) < 1


def test_clock_drift_unbiased_by_a_busy_host():
    """Frames arrive late (a busy host, a late USB poll), never early: heavy one-sided delays
    must not bias the drift (a mean fit is pulled by a busy stretch; the lower envelope is not)."""
    rng = random.Random(5)
    for ppm in (-250.0, 120.0):
        c = ClockStats()
        period = 0.020 / (1 + ppm * 1e-6)
        for n in range(3000):
            late = rng.expovariate(1 / 0.004)
            if 1500 <= n < 2000:                    # 10 s of a loaded machine: much later frames
                late += rng.uniform(0, 0.060)
            c.tick(50.0 + n * period + late)
        assert abs(c.drift_ppm - ppm) < 15, (ppm, c.drift_ppm)


def test_udev_rules_are_well_formed():
    """firmware-config/99-appliance-modems.rules: every rule is KEY op "value" pairs udev knows,
    and each stable name a line config would use is created."""
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "firmware-config" / "99-appliance-modems.rules"
    pair = re.compile(r'\s*([A-Z_]+(?:\{[A-Za-z_]+\})?)\s*(==|!=|\+=|=)\s*"([^"]*)"\s*(?:,|$)')
    known = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "ATTRS", "ENV", "SYMLINK", "GOTO", "LABEL"}
    links = set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pos, keys = 0, []
        while pos < len(line):
            m = pair.match(line, pos)
            assert m, f"{path.name}:{n}: cannot parse from column {pos}: {line[pos:]!r}"
            key = m.group(1).split("{")[0]
            assert key in known, f"{path.name}:{n}: unknown key {key}"
            keys.append((m.group(1), m.group(2), m.group(3)))
            pos = m.end()
        links |= {v for k, op, v in keys if k == "SYMLINK"}
        if any(k == "SYMLINK" for k, _, _ in keys):
            assert any(k == "ATTRS{idVendor}" and op == "==" for k, op, _ in keys), f"{path.name}:{n}"
    assert links == {"appliance/voice-modem", "appliance/gsm-at", "appliance/gsm-audio"}
