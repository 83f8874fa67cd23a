"""Split streamed LLM text into speakable pieces as early as possible.

TTS starts on the first complete clause while the LLM is still streaming: the first piece is cut
at a clause boundary (comma, colon, dash) once it has at least `first_min_chars` ("Sure," is
enough: the caller is waiting for the first sound), or after `first_max_words` words without one;
later pieces at sentence ends (or a clause boundary once they grow past `max_chars`). Decimal points ("3.5"),
common abbreviations ("Dr.", "e.g.") and times ("10:30") never end a piece.
"""
from __future__ import annotations

import re

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "sr", "jr", "prof", "vs", "etc", "e.g", "i.e", "no", "approx",
    "mt", "ave", "rd", "ltd", "inc", "co", "dept", "apt", "min", "sec", "tel",
}
_SENTENCE_END = set(".!?;…")
_CLAUSE_END = set(",:—–")


class SentenceChunker:
    """Feed text deltas with `push(delta) -> list[str]`; call `flush()` at the end of the stream."""

    def __init__(self, first_min_chars: int = 4, min_chars: int = 12, max_chars: int = 160,
                 first_max_words: int = 8):
        self.first_min_chars = first_min_chars
        self.first_max_words = first_max_words
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the pieces that are complete now."""
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if piece:
                out.append(piece)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        """The rest of the text, at the end of the stream."""
        piece, self._buf = self._buf.strip(), ""
        if piece and re.search(r"\w", piece):
            self._emitted += 1
            return [piece]
        return []

    def _find_cut(self) -> int | None:
        buf = self._buf
        # A boundary is only certain once the next character (a space) has arrived.
        for i in range(len(buf) - 1):
            ch = buf[i]
            if not buf[i + 1].isspace():
                continue
            if ch in _SENTENCE_END:
                if ch == "." and self._is_abbreviation(buf, i):
                    continue
                if i + 1 >= self._min_len():
                    return i + 1
            elif ch in _CLAUSE_END:
                first = self._emitted == 0 and i + 1 >= self.first_min_chars
                if first or i + 1 >= self.max_chars:
                    return i + 1
        if self._emitted == 0:   # a long opening clause: start speaking after a few words anyway
            spaces = [m.start() for m in re.finditer(r"\S\s", buf)]
            if len(spaces) >= self.first_max_words:
                return spaces[self.first_max_words - 1] + 1
        if len(buf) > self.max_chars * 2:  # runaway text without punctuation: cut at a space
            space = buf.rfind(" ", 0, self.max_chars)
            if space > 0:
                return space
        return None

    def _min_len(self) -> int:
        return self.first_min_chars if self._emitted == 0 else self.min_chars

    @staticmethod
    def _is_abbreviation(buf: str, dot: int) -> bool:
        m = re.search(r"([A-Za-z.]+)$", buf[:dot])
        if not m:
            return False
        word = m.group(1).lower()
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """Split a whole text into pieces the same way (for call-flow replies)."""
    ch = SentenceChunker()
    return ch.push(text + " ") + ch.flush()
