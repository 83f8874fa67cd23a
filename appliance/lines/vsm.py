"""V.253 voice sample formats: parse `AT+VSM=?`, pick a codec, convert samples.

The listing differs per chipset (MODEMS.md §1.2): `<cml>,"<name>",<bits>,<tm>,(<rates>),...`
with or without a `+VSM:` prefix, and ZyXEL's `81;ULAW;8;0;(8000)`. Codes differ per maker
(132 is A-law on Conexant but 130 on the MultiTech MT5634), so the kind is read from the name
and bit width, never from the number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

#: preference: µ-law is what the phone line carries; 16-bit linear is lossless; A-law; 8-bit linear last
PREFERENCE = ("ulaw", "s16le", "alaw", "u8", "s8")


@dataclass(frozen=True)
class VsmCodec:
    cml: int
    name: str
    bits: int
    rates: tuple[int, ...]
    kind: str            # ulaw | alaw | s16le | u8 | s8 | other

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.kind == "s16le" else 1

    def describe(self) -> str:
        rates = "/".join(str(r) for r in self.rates) or "?"
        return f"{self.cml} {self.name} {self.bits}-bit @{rates} Hz ({self.kind})"


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and parentheses."""
    out, cur, depth, quoted = [], [], 0, False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0 and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [f.strip() for f in out]


def classify(name: str, bits: int) -> str:
    n = name.upper().replace(" ", "")
    if "ADPCM" in n:
        return "other"
    if any(k in n for k in ("ULAW", "U-LAW", "MU-LAW", "G.711U", "G711U", "MULAW")):
        return "ulaw"
    if any(k in n for k in ("ALAW", "A-LAW", "G.711A", "G711A")):
        return "alaw"
    if bits == 16 and ("LINEAR" in n or "SIGNEDPCM" in n) and "UNSIGNED" not in n:
        return "s16le"
    if bits == 8 and ("UNSIGNEDPCM" in n or "LINEAR" in n):
        return "u8"
    if bits == 8 and "SIGNEDPCM" in n:
        return "s8"
    return "other"


def parse_vsm_list(lines: list[str]) -> list[VsmCodec]:
    """Codecs from the information lines of `AT+VSM=?`; lines that do not parse are skipped."""
    codecs = []
    for raw in lines:
        line = re.sub(r"^\+VSM:\s*", "", raw.strip(), flags=re.IGNORECASE)
        head = line.split("(", 1)[0]
        sep = ";" if head.count(";") > head.count(",") else ","
        fields = _split_top(line, sep)
        m = re.match(r"\d+", fields[0]) if fields else None
        if not m:
            continue
        cml = int(m.group())
        name = fields[1].strip('"').strip() if len(fields) > 1 else ""
        bits = int(fields[2]) if len(fields) > 2 and fields[2].isdecimal() else 8
        rates: tuple[int, ...] = ()
        if len(fields) > 4:
            rates = tuple(int(r) for r in re.findall(r"\d+", fields[4]))
        codecs.append(VsmCodec(cml, name, bits, rates, classify(name, bits)))
    return codecs


def choose_codec(codecs: list[VsmCodec], rate: int = 8000) -> VsmCodec | None:
    """Best codec offered at `rate` Hz, by PREFERENCE."""
    for kind in PREFERENCE:
        for c in codecs:
            if c.kind == kind and (not c.rates or rate in c.rates):
                return c
    return None


def encode(kind: str, pcm: np.ndarray) -> bytes:
    """PCM16 -> modem sample bytes (before DLE shielding)."""
    if kind == "ulaw":
        return bytes(ulaw_encode(pcm))
    if kind == "alaw":
        return bytes(alaw_encode(pcm))
    if kind == "s16le":
        return np.asarray(pcm, dtype="<i2").tobytes()
    if kind == "u8":
        return ((np.asarray(pcm, dtype=np.int32) >> 8) + 128).astype(np.uint8).tobytes()
    if kind == "s8":
        return (np.asarray(pcm, dtype=np.int32) >> 8).astype(np.int8).tobytes()
    raise ValueError(f"cannot encode voice samples as {kind!r}")


def decode(kind: str, data: bytes) -> np.ndarray:
    """Modem sample bytes (after DLE unshielding) -> PCM16."""
    if kind == "ulaw":
        return np.asarray(ulaw_decode(data), dtype=np.int16)
    if kind == "alaw":
        return np.asarray(alaw_decode(data), dtype=np.int16)
    if kind == "s16le":
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    if kind == "u8":
        return ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if kind == "s8":
        return (np.frombuffer(data, dtype=np.int8).astype(np.int16) << 8).astype(np.int16)
    raise ValueError(f"cannot decode voice samples from {kind!r}")
