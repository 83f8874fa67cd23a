"""The Python face of native/: ring buffer, G.711, resampling, tone analysis.

Each piece has a compiled implementation (appliance._native, built from native/*.pyx) and a
pure-Python/numpy twin (appliance.audio.pure). This module picks the compiled one; set
APPLIANCE_NO_EXTENSIONS=1 to force the twins. `IMPLEMENTATION` says which is in use and
`NATIVE_IMPORT_ERROR` why the compiled one is not, if it is not.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

from . import pure as _pure_pkg  # noqa: F401
from .pure import g711 as _pg711
from .pure import resample as _presample
from .pure import ring as _pring
from .pure import tones as _ptones

pure = SimpleNamespace(
    RingBuffer=_pring.RingBuffer,
    Resampler=_presample.Resampler,
    ulaw_encode=_pg711.ulaw_encode,
    ulaw_decode=_pg711.ulaw_decode,
    alaw_encode=_pg711.alaw_encode,
    alaw_decode=_pg711.alaw_decode,
    goertzel_bank=_ptones.goertzel_bank,
    energy_dbfs=_ptones.energy_dbfs,
    name="pure",
)

compiled = None
NATIVE_IMPORT_ERROR: str | None = None
try:
    from .._native import g711 as _cg711
    from .._native import resample as _cresample
    from .._native import ring as _cring
    from .._native import tones as _ctones

    compiled = SimpleNamespace(
        RingBuffer=_cring.RingBuffer,
        Resampler=_cresample.Resampler,
        ulaw_encode=_cg711.ulaw_encode,
        ulaw_decode=_cg711.ulaw_decode,
        alaw_encode=_cg711.alaw_encode,
        alaw_decode=_cg711.alaw_decode,
        goertzel_bank=_ctones.goertzel_bank,
        energy_dbfs=_ctones.energy_dbfs,
        name="compiled",
    )
except ImportError as exc:  # not built: the twins still work, `appliance doctor` says so
    NATIVE_IMPORT_ERROR = f"{exc} (build it with `pip install -e .` or `python setup.py build_ext --inplace`)"

FORCED_PURE = os.environ.get("APPLIANCE_NO_EXTENSIONS", "") not in ("", "0")
_impl = pure if (FORCED_PURE or compiled is None) else compiled
IMPLEMENTATION: str = _impl.name

RingBuffer = _impl.RingBuffer
Resampler = _impl.Resampler
ulaw_encode = _impl.ulaw_encode
ulaw_decode = _impl.ulaw_decode
alaw_encode = _impl.alaw_encode
alaw_decode = _impl.alaw_decode
goertzel_bank = _impl.goertzel_bank
energy_dbfs = _impl.energy_dbfs

from .frame import FRAME_MS, LINE_RATE, SAMPLES_PER_FRAME, AudioFrame  # noqa: E402

__all__ = [
    "AudioFrame", "FRAME_MS", "LINE_RATE", "SAMPLES_PER_FRAME", "IMPLEMENTATION", "NATIVE_IMPORT_ERROR",
    "RingBuffer", "Resampler", "ulaw_encode", "ulaw_decode", "alaw_encode", "alaw_decode",
    "goertzel_bank", "energy_dbfs", "compiled", "pure", "encode", "decode",
]


def encode(pcm, codec: str) -> bytes:
    """PCM16 -> G.711 bytes; codec is 'PCMU' or 'PCMA'."""
    if codec == "PCMU":
        return ulaw_encode(pcm)
    if codec == "PCMA":
        return alaw_encode(pcm)
    raise ValueError(f"unknown G.711 codec {codec!r}: expected 'PCMU' or 'PCMA'")


def decode(data: bytes, codec: str):
    """G.711 bytes -> int16 numpy array; codec is 'PCMU' or 'PCMA'."""
    if codec == "PCMU":
        return ulaw_decode(data)
    if codec == "PCMA":
        return alaw_decode(data)
    raise ValueError(f"unknown G.711 codec {codec!r}: expected 'PCMU' or 'PCMA'")
