"""DLE shielding of V.253 voice data (ITU-T V.253 / TIA IS-101).

In voice data mode the byte 0x10 (DLE) introduces a two-byte code: `DLE DLE` is one literal
0x10 sample byte, `DLE SUB` two of them (compact form), `DLE ETX` ends the stream, and any
other `DLE x` is an event (a DTMF digit, `b` busy, `d` dial tone, `s` silence, ...; MODEMS.md
§1.3-1.4). The DTE must double every 0x10 it sends.
"""
from __future__ import annotations

DLE = 0x10
ETX = 0x03
SUB = 0x1A
DLE_B = b"\x10"

# DTE -> DCE control sequences (MODEMS.md §1.3)
END_STREAM = b"\x10\x03"     # end transmit after the buffer drains
FLUSH_TX = b"\x10\x18"       # DLE CAN: drop queued transmit audio
ABORT_RX = b"\x10!"          # abort +VRX
END_DUPLEX = b"\x10^"        # leave +VTR


def shield(data: bytes) -> bytes:
    """Double every DLE so voice data never reads as a control code."""
    return data.replace(DLE_B, b"\x10\x10")


class DLEDecoder:
    """Incremental DCE->DTE voice stream decoder.

    `feed(chunk)` returns `(audio, events, rest)`: the unshielded sample bytes, the event codes
    seen (one-character strings, in order) and, once `DLE ETX` arrived, the bytes after it (the
    modem is back in command mode; `rest` is None while the stream continues). A DLE split
    across two chunks is kept until the next chunk. Any byte sequence is accepted.
    """

    __slots__ = ("_dle_pending", "ended")

    def __init__(self) -> None:
        self._dle_pending = False
        self.ended = False

    def feed(self, data: bytes) -> tuple[bytes, list[str], bytes | None]:
        if self.ended:
            return b"", [], bytes(data)
        if not data:
            return b"", [], None
        if not self._dle_pending and DLE_B not in data:
            return bytes(data), [], None          # hot path: no control codes in this chunk
        out = bytearray()
        events: list[str] = []
        i, n = 0, len(data)
        if self._dle_pending:
            self._dle_pending = False
            i = self._code(data[0], out, events)
            if self.ended:
                return bytes(out), events, bytes(data[1:])
        while i < n:
            j = data.find(DLE_B, i)
            if j < 0:
                out += data[i:]
                break
            out += data[i:j]
            if j + 1 >= n:
                self._dle_pending = True
                break
            self._code(data[j + 1], out, events)
            i = j + 2
            if self.ended:
                return bytes(out), events, bytes(data[i:])
        return bytes(out), events, None

    def _code(self, code: int, out: bytearray, events: list[str]) -> int:
        if code == DLE:
            out.append(DLE)
        elif code == SUB:
            out += b"\x10\x10"
        elif code == ETX:
            self.ended = True
        else:
            events.append(chr(code))
        return 1
