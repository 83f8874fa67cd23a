"""The native audio core and its pure twins agree, and both match outside references (sox)."""
from __future__ import annotations

import shutil
import subprocess
import threading
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import appliance.audio as audio

IMPLS = [audio.pure] + ([audio.compiled] if audio.compiled is not None else [])
IDS = [m.name for m in IMPLS]

pcm_arrays = st.lists(st.integers(-32768, 32767), max_size=400).map(lambda v: np.array(v, dtype=np.int16))


def test_normal_install_uses_the_compiled_core():
    """A shipped build must really run the compiled module (msgpack's guard)."""
    assert audio.compiled is not None, audio.NATIVE_IMPORT_ERROR
    if not audio.FORCED_PURE:
        assert audio.IMPLEMENTATION == "compiled"
        for name in ("RingBuffer", "Resampler", "ulaw_encode", "goertzel_bank"):
            obj = getattr(audio, name)
            assert obj.__module__.startswith("appliance._native."), (name, obj.__module__)


def test_forcing_the_twins(monkeypatch):
    out = subprocess.run(
        ["python", "-c", "import appliance.audio as a; print(a.IMPLEMENTATION)"],
        env={**__import__("os").environ, "APPLIANCE_NO_EXTENSIONS": "1"}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pure"


# ---- G.711 -------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_g711_decode_encode_is_identity_on_every_code(impl):
    codes = bytes(range(256))
    # 0x7F/0xFF (µ-law) both decode to 0 ("negative zero"); re-encoding gives the canonical +0 code.
    u = impl.ulaw_encode(impl.ulaw_decode(codes))
    assert [c for c in range(256) if u[c] != c] == [0x7F]
    a = impl.alaw_encode(impl.alaw_decode(codes))
    assert a == codes


@pytest.mark.skipif(audio.compiled is None, reason="compiled core not built")
@settings(max_examples=300, deadline=None)
@given(pcm_arrays)
def test_g711_compiled_and_twin_agree(pcm):
    assert audio.compiled.ulaw_encode(pcm) == audio.pure.ulaw_encode(pcm)
    assert audio.compiled.alaw_encode(pcm) == audio.pure.alaw_encode(pcm)
    enc = audio.compiled.ulaw_encode(pcm)
    assert np.array_equal(audio.compiled.ulaw_decode(enc), audio.pure.ulaw_decode(enc))
    enc = audio.compiled.alaw_encode(pcm)
    assert np.array_equal(audio.compiled.alaw_decode(enc), audio.pure.alaw_decode(enc))


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pcm=pcm_arrays)
def test_g711_round_trip_error_is_within_the_quantisation_step(impl, pcm):
    for enc, dec, rel in ((impl.ulaw_encode, impl.ulaw_decode, 1 / 16), (impl.alaw_encode, impl.alaw_decode, 1 / 16)):
        back = dec(enc(pcm)).astype(np.int32)
        err = np.abs(back - pcm.astype(np.int32))
        # Logarithmic companding: the error grows with the magnitude (≤ 1/16 of it, plus the smallest step).
        assert np.all(err <= np.abs(pcm.astype(np.int32)) * rel + 72)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (apt-get install sox)")
@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_g711_is_bit_exact_with_sox_on_every_16bit_value(impl, tmp_path):
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    src = tmp_path / "all.wav"
    with wave.open(str(src), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    for enc_name, encode, decode in (("mu-law", impl.ulaw_encode, impl.ulaw_decode),
                                     ("a-law", impl.alaw_encode, impl.alaw_decode)):
        raw = tmp_path / f"x.{enc_name}"
        subprocess.run(["sox", "-D", "-V1", str(src), "-t", "raw", "-e", enc_name, "-b", "8", str(raw)], check=True)
        assert encode(pcm) == raw.read_bytes(), enc_name
        codes = tmp_path / "codes.raw"
        codes.write_bytes(bytes(range(256)))
        dec = tmp_path / "dec.raw"
        subprocess.run(["sox", "-V1", "-t", "raw", "-r", "8000", "-c", "1", "-e", enc_name, "-b", "8", str(codes),
                        "-t", "raw", "-e", "signed", "-b", "16", str(dec)], check=True)
        assert np.array_equal(decode(bytes(range(256))), np.frombuffer(dec.read_bytes(), dtype=np.int16)), enc_name


# ---- ring buffer -------------------------------------------------------------------------

class RefRing:
    """The contract, written as plainly as possible."""

    def __init__(self, cap):
        self.cap, self.data, self.over, self.under = cap, [], 0, 0

    def write(self, xs):
        self.data.extend(int(x) for x in xs)
        drop = max(0, len(self.data) - self.cap)
        self.data = self.data[drop:]
        self.over += drop
        return drop

    def read(self, n):
        if len(self.data) < n:
            self.under += 1
            return None
        out, self.data = self.data[:n], self.data[n:]
        return out


ops = st.lists(st.one_of(
    st.tuples(st.just("w"), st.integers(0, 70)),
    st.tuples(st.just("r"), st.integers(0, 40)),
    st.tuples(st.just("p"), st.integers(0, 50)),
    st.tuples(st.just("c"), st.just(0)),
), max_size=80)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(1, 64), seq=ops)
def test_ring_matches_reference_model(impl, cap, seq):
    ring, ref = impl.RingBuffer(cap), RefRing(cap)
    counter = 0
    for op, n in seq:
        if op == "w":
            xs = np.arange(counter, counter + n, dtype=np.int64).astype(np.int16)
            counter += n
            assert ring.write(xs) == ref.write(xs)
        elif op == "r":
            if n > cap:
                with pytest.raises(ValueError):
                    ring.read(n)
                continue
            got, want = ring.read(n), ref.read(n)
            assert (got is None) == (want is None)
            if got is not None:
                assert got.tolist() == [np.int16(x) for x in want]
        elif op == "p":
            assert ring.peek(n).tolist() == ref.data[:n]
        else:
            assert ring.clear() == len(ref.data)
            ref.data = []
        assert ring.available() == len(ref.data)
        assert ring.overruns == ref.over
        assert ring.underruns == ref.under


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_ring_with_a_real_producer_thread(impl):
    """A producer thread writes a counter sequence in uneven chunks while the consumer reads
    20 ms frames: no frame is ever torn, frames come in order, and every sample written is
    either read, still buffered, or counted as an overrun."""
    ring = impl.RingBuffer(2048)
    total = 400_000
    done = threading.Event()

    def produce():
        i = 0
        rng = np.random.default_rng(7)
        while i < total:
            n = min(int(rng.integers(1, 400)), total - i)
            ring.write(np.arange(i, i + n).astype(np.int16))  # wraps mod 65536 on purpose
            i += n
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    got = 0
    frame = np.empty(160, dtype=np.int16)
    while not (done.is_set() and ring.available() < 160):
        if ring.read_into(frame):
            steps = np.diff(frame.astype(np.int32)) % 65536
            assert np.all(steps == 1), "torn frame"
            got += 160
    t.join()
    assert got > 0
    assert got + ring.overruns + ring.available() == total


# ---- resampler ---------------------------------------------------------------------------

def _tone(freq, rate, seconds=0.5, amp=12000):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _run_frames(r, x, frame):
    return np.concatenate([r.process(x[i:i + frame]) for i in range(0, len(x), frame)])


def _level_db(x):
    x = x.astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-9)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@pytest.mark.parametrize("in_rate,out_rate", [(8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000)])
def test_resampler_passes_speech_band_and_rejects_aliases(impl, in_rate, out_rate):
    frame = in_rate // 50
    r = impl.Resampler(in_rate, out_rate)
    y = _run_frames(r, _tone(1000, in_rate), frame)
    assert abs(len(y) - out_rate // 2) <= 64
    steady = y[len(y) // 4:]
    assert abs(_level_db(steady) - _level_db(_tone(1000, out_rate))) < 1.0  # passband flat within 1 dB
    # the 1 kHz tone stays a 1 kHz tone (not shifted by a rate mistake)
    spec = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    assert abs(np.argmax(spec) * out_rate / len(steady) - 1000) < 20
    if out_rate < in_rate:
        # a tone above the new Nyquist would alias into the band: it must be suppressed
        alias_in = out_rate * 0.5 + 1500
        r2 = impl.Resampler(in_rate, out_rate)
        z = _run_frames(r2, _tone(alias_in, in_rate), frame)[out_rate // 10:]
        assert _level_db(z) < _level_db(steady) - 40


@pytest.mark.skipif(audio.compiled is None, reason="compiled core not built")
def test_resampler_streams_without_clicks_across_frames():
    x = _tone(440, 8000, 1.0)
    whole = audio.compiled.Resampler(8000, 16000).process(x)
    chunked = _run_frames(audio.compiled.Resampler(8000, 16000), x, 160)
    n = min(len(whole), len(chunked))
    assert np.max(np.abs(whole[:n].astype(int) - chunked[:n].astype(int))) <= 2


# ---- tones -------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_goertzel_finds_the_tone_and_energy_reads_dbfs(impl):
    freqs = np.array([350.0, 440.0, 697.0, 941.0, 1000.0, 1209.0, 1477.0, 2100.0])
    frame = _tone(1000, 8000, 0.02, amp=16384)
    p = impl.goertzel_bank(frame, freqs, 8000)
    assert np.argmax(p) == 4
    assert p[4] == pytest.approx(0.25, rel=0.05)   # (16384/32768)^2
    assert impl.energy_dbfs(frame) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.2)
    assert impl.energy_dbfs(np.zeros(160, dtype=np.int16)) == -120.0


@pytest.mark.skipif(audio.compiled is None, reason="compiled core not built")
@settings(max_examples=100, deadline=None)
@given(pcm_arrays, st.lists(st.floats(100, 3900), min_size=1, max_size=8))
def test_tones_compiled_and_twin_agree(pcm, freqs):
    f = np.array(freqs, dtype=np.float64)
    np.testing.assert_allclose(audio.compiled.goertzel_bank(pcm, f, 8000), audio.pure.goertzel_bank(pcm, f, 8000),
                               rtol=1e-9, atol=1e-12)
    assert audio.compiled.energy_dbfs(pcm) == pytest.approx(audio.pure.energy_dbfs(pcm), abs=1e-9)
