"""Pure-Python twin of native/g711.pyx: ITU-T G.711 by the reference algorithm, as lookup tables."""
from __future__ import annotations

import numpy as np

_SEG_U = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_A = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _seg(val: int, table) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def lin14_to_ulaw(pcm: int) -> int:
    """One 14-bit two's-complement sample -> µ-law code."""
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + 0x21
    seg = _seg(pcm, _SEG_U)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def lin13_to_alaw(pcm: int) -> int:
    """One 13-bit two's-complement sample -> A-law code."""
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = _seg(pcm, _SEG_A)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0x0F
    return aval ^ mask


def ulaw_to_lin(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def alaw_to_lin(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


def _signed(i: int, bits: int) -> int:
    return i - (1 << bits) if i >= (1 << (bits - 1)) else i


# 16-bit input is rounded to 14/13 bits (half up, clipped) as sox does, then encoded.
_ULAW_ENC = np.array([lin14_to_ulaw(min((_signed(i, 16) + 2) >> 2, 8191)) for i in range(1 << 16)], dtype=np.uint8)
_ALAW_ENC = np.array([lin13_to_alaw(min((_signed(i, 16) + 4) >> 3, 4095)) for i in range(1 << 16)], dtype=np.uint8)
_ULAW_DEC = np.array([ulaw_to_lin(i) for i in range(256)], dtype=np.int16)
_ALAW_DEC = np.array([alaw_to_lin(i) for i in range(256)], dtype=np.int16)


def ulaw_encode(pcm) -> bytes:
    pcm = np.asarray(pcm, dtype=np.int16)
    return _ULAW_ENC[pcm.view(np.uint16)].tobytes()


def alaw_encode(pcm) -> bytes:
    pcm = np.asarray(pcm, dtype=np.int16)
    return _ALAW_ENC[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data) -> np.ndarray:
    return _ULAW_DEC[np.frombuffer(bytes(data), dtype=np.uint8)]


def alaw_decode(data) -> np.ndarray:
    return _ALAW_DEC[np.frombuffer(bytes(data), dtype=np.uint8)]
