"""No byte sequence crashes the modem stack (hypothesis, bounded): the AT channel's parser in
command and data mode, the DLE decoder under any chunking, the voice data pump, the text parsers,
and both lines' URC / DLE event handlers."""
from __future__ import annotations

import asyncio
import types

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.lines import dle
from appliance.lines.at import MAX_LINE_BYTES, ATChannel, _Pending, response_prefix
from appliance.lines.gsm import Ec25Dialect, GsmDialect, GsmLine, parse_clcc, parse_clip, parse_creg
from appliance.lines.modem import ModemCall, ModemLine
from appliance.lines.modem_audio import ClockStats, VoiceStream
from appliance.lines.modem_config import GsmLineConfig, ModemLineConfig
from appliance.lines.vsm import parse_vsm_list

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes that matter to the parsers, mixed with anything
_special = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x10", b"\x10\x10", b"\x10\x03", b"\x10\x1a", b"OK", b"ERROR",
                            b"RING", b"CONNECT", b"+CLIP: \"", b"NMBR=", b"+CME ERROR: ", b"NO CARRIER", b"\x00",
                            b"\xff", b"AT+CLCC"])
wire = st.lists(st.one_of(st.binary(max_size=40), _special), max_size=40).map(b"".join)
chunking = st.lists(st.integers(1, 64), max_size=30)


def chunks(data: bytes, cuts: list[int]):
    pos = 0
    for c in cuts:
        if pos >= len(data):
            return
        yield data[pos:pos + c]
        pos += c
    if pos < len(data):
        yield data[pos:]


class RecordingSink:
    """A data sink that leaves data mode on DLE ETX, like VoiceStream."""

    def __init__(self):
        self.dec = dle.DLEDecoder()

    def feed(self, data):
        _, _, rest = self.dec.feed(data)
        return rest


@FUZZ
@given(wire, chunking, st.sampled_from([None, "AT+CLCC", "ATD123;", "AT+VTR"]))
def test_at_parser_survives_any_bytes(data, cuts, pending):
    urcs, dles = [], []
    ch = ATChannel("loop://", on_urc=urcs.append, on_dle=dles.append)
    if pending:
        ch._pending = _Pending(pending, response_prefix(pending), pending.startswith("ATD"),
                               RecordingSink() if pending == "AT+VTR" else None)
    for part in chunks(data, cuts):
        ch._handle(part)                  # raises on a parser bug (the reader thread would log it)
        assert len(ch._splitter.buf) <= MAX_LINE_BYTES + 64
    for line in urcs + (ch._pending.lines if ch._pending else []):
        assert line and line.isprintable() and line.isascii()
    assert all(len(c) == 1 for c in dles)


@FUZZ
@given(wire, chunking)
def test_dle_decoder_is_chunking_independent(data, cuts):
    whole = dle.DLEDecoder()
    a_all, e_all, rest_all = whole.feed(data)
    d = dle.DLEDecoder()
    audio, events, rest = bytearray(), [], None
    for part in chunks(data, cuts):
        a, e, rest = d.feed(part)
        audio += a
        events += e
        if rest is not None:
            break
    if rest_all is None:
        assert rest is None and bytes(audio) == a_all and events == e_all
    else:           # the stream ended: the same samples and events before DLE ETX
        assert bytes(audio) == a_all and events == e_all
    assert len(a_all) <= 2 * len(data)


@FUZZ
@given(wire, st.sampled_from(["ulaw", "alaw", "s16le", "u8"]), st.booleans())
def test_voice_stream_survives_any_bytes(data, kind, duplex):
    loop = asyncio.new_event_loop()
    try:
        line = types.SimpleNamespace(name="fuzz")
        call = ModemCall(line, "inbound", loop=loop)
        written, events = [], []
        stream = VoiceStream(call, kind, written.append, events.extend, lambda: None, ClockStats(), duplex=duplex)
        stream.prime()
        rest = None
        for part in chunks(data, [7, 33, 160, 321]):
            rest = stream.feed(part)
            if rest is not None:
                break
        frame_bytes = 160 * (2 if kind == "s16le" else 1)
        assert stream.frames_in == call.rx.available() // 160
        assert stream.frames_in <= len(data) * 2 // frame_bytes + 1
        if duplex:      # lockstep: one frame out per frame in, after the lead and re-primes
            assert stream.frames_out == stream.prime_frames + stream.frames_in + stream.extra_prime
        for w in written:   # everything sent is DLE shielded: no lone DLE
            assert dle.DLEDecoder().feed(w)[1] == []
    finally:
        loop.close()


text = st.one_of(st.text(max_size=60), st.builds(lambda p, s: p + s, st.sampled_from(
    ["+CREG: ", "+CEREG: ", "+CLIP: ", "+CLCC: ", "+VSM: ", "+QTONEDET: ", "+RXDTMF: ", "+DTMF: ", "NMBR",
     "RING", "VOICE CALL: ", "MISSED_CALL: ", "NO CARRIER", "BUSY", "DATE = "]), st.text(max_size=40)))


@FUZZ
@given(st.lists(text, max_size=8))
def test_text_parsers_never_raise(lines):
    parse_vsm_list(lines)
    for line in lines:
        parse_creg(line)
        parse_clip(line)
        parse_clcc(line)
        GsmDialect().dtmf_digit(line)
        Ec25Dialect().dtmf_digit(line)


@FUZZ
@given(st.lists(text, max_size=12), st.text(alphabet="0123456789*#ABCDbdsqcuoRr/~lhHKi!x", max_size=30))
def test_line_event_handlers_never_raise(lines, codes):
    async def feed():
        vline = ModemLine(ModemLineConfig(port="loop://"))
        gline = GsmLine(GsmLineConfig(port="loop://"))
        for ln in (vline, gline):
            ln._loop = asyncio.get_running_loop()
        for line in lines:
            vline._on_urc(line)
            gline._on_urc(line)
        vline._on_urc("RING")
        call = vline.call
        if call is not None:
            call.answered_at = 1.0
            vline._on_dle_events(list(codes))
        for c in (vline.call, gline.call):
            if c is not None and not c.ended.is_set():
                c.mark_ended("fuzz")
        await asyncio.sleep(0)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
    asyncio.run(feed())


def test_dle_decoder_throughput_sanity():
    """A realistic voice stream (random µ-law with shielded DLEs and events) decodes exactly."""
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 256, 8000, dtype=np.uint8).tobytes()
    wire_bytes = dle.shield(samples[:4000]) + b"\x105" + dle.shield(samples[4000:]) + dle.END_STREAM
    audio, events, rest = dle.DLEDecoder().feed(wire_bytes)
    assert audio == samples and events == ["5"] and rest == b""
