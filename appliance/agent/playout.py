"""Agent speech on its way to the line: paced, pausable, and accountable to the sample.

One `Speaker` per agent reply. TTS audio is appended per piece of text; `tick()` (every 20 ms)
keeps only `lead_ms` of it queued in the line's playout ring, so a barge-in has little to flush
and the rest can be resumed or dropped. `call.played_samples` tells how much really reached the
line, which `heard_text()` maps back to words for the truncated history.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from ..audio import SAMPLES_PER_FRAME

SAMPLES_PER_CHAR = 560   # ~14 characters of text per second of speech at 8 kHz, until measured


@dataclass
class _Piece:
    text: str
    start: int            # offset of its first sample in the reply's audio
    samples: int = 0
    complete: bool = False
    filler: bool = False


class Speaker:
    def __init__(self, call, lead_ms: float = 200.0):
        self.call = call
        self.lead = int(lead_ms * 8)
        self._total = 0            # samples received from TTS
        self._written = 0          # samples handed to the line
        self._pieces: list[_Piece] = []
        self._base_played = call.played_samples
        self.paused = False
        self.stopped = False
        self.tts_done = False      # no more audio will be added
        self.starved_frames = 0    # mid-piece moments where the line had less than a frame queued
        self.tts_gap_ms = 0.0      # time the line ran dry mid-reply waiting for TTS
        self._dry_since: float | None = None
        self.done = asyncio.Event()
        self._buf = np.zeros(0, dtype=np.int16)

    # ---- filled by TTS ---------------------------------------------------------------------
    def begin_piece(self, text: str, filler: bool = False) -> None:
        if self._pieces and not self._pieces[-1].complete:
            self._pieces[-1].complete = True
        self._pieces.append(_Piece(text, self._total, filler=filler))

    def add_audio(self, pcm: np.ndarray) -> None:
        if self.stopped or len(pcm) == 0:
            return
        pcm = np.asarray(pcm, dtype=np.int16)
        self._total += len(pcm)
        if self._pieces:
            self._pieces[-1].samples += len(pcm)
        self._buf = np.concatenate([self._buf, pcm])

    def end_piece(self) -> None:
        if self._pieces:
            self._pieces[-1].complete = True
            # pad to whole frames so the line never clocks out a partial frame between pieces
            rem = (-self._total) % SAMPLES_PER_FRAME
            if rem:
                self.add_audio(np.zeros(rem, np.int16))
                self._pieces[-1].samples -= rem

    def finish(self) -> None:
        """TTS is done with this reply."""
        self.tts_done = True
        self.end_piece()

    # ---- driven by the session --------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._written > 0

    @property
    def active(self) -> bool:
        """Audio queued or still to come (the agent holds the floor)."""
        return not self.stopped and not self.done.is_set()

    def tick(self) -> None:
        if self.stopped or self.done.is_set():
            return
        queued = self.call.tx.available()
        dry = (self._written > 0 and not self.paused and not self.tts_done and queued == 0
               and self._total <= self._written)
        if dry and self._dry_since is None:
            self._dry_since = time.monotonic()
        elif not dry and self._dry_since is not None:
            self.tts_gap_ms += (time.monotonic() - self._dry_since) * 1000.0
            self._dry_since = None
        if not self.paused:
            pending = self._total - self._written
            if pending > 0 and queued < SAMPLES_PER_FRAME and self._written > 0 and self.played < self._written:
                self.starved_frames += 1
            want = self.lead - queued
            n = min(pending, want)
            n -= n % SAMPLES_PER_FRAME   # whole frames only: pieces are padded to whole frames
            if n > 0:
                self.call.play(self._buf[self._written:self._written + n])
                self._written += n
        if self.tts_done and self._written >= self._total and queued == 0:
            self.done.set()

    @property
    def played(self) -> int:
        """Samples of this reply that reached the line."""
        return max(0, min(self.call.played_samples - self._base_played, self._written))

    @property
    def ahead_ms(self) -> float:
        """Audio received from TTS and not yet played, in ms: how long the line can go on."""
        return (self._total - self.played) / 8.0

    def pause(self) -> None:
        """Stop sending at once (caller started speaking); what was queued is kept for resume."""
        if self.paused or self.stopped:
            return
        self.paused = True
        dropped = self.call.flush_playout()
        self._written = max(self.played, self._written - dropped)

    def resume(self) -> None:
        """A false interruption: carry on from where the line stopped."""
        if not self.paused or self.stopped:
            return
        # rewind to what really reached the line, so nothing is skipped
        self._written = max(0, self.played)
        self.paused = False

    def stop(self) -> None:
        """Barge-in or hang-up: drop everything still queued."""
        if not self.stopped:
            if not self.paused:
                dropped = self.call.flush_playout()
                self._written = max(self.played, self._written - dropped)
            self.stopped = True
            self.done.set()

    def heard_text(self) -> str:
        """The words of this reply that reached the line (whole pieces, then a share of the cut one).

        A piece still being synthesized (the voice speaks it sentence by sentence) is measured
        against its expected length from its characters, at this voice's rate so far."""
        played = self.played
        done = [p for p in self._pieces if p.complete and p.samples > 0]
        per_char = (sum(p.samples for p in done) / max(1, sum(len(p.text) for p in done))) if done else SAMPLES_PER_CHAR
        words: list[str] = []
        for p in self._pieces:
            if played >= p.start + p.samples and p.complete:
                if not p.filler:
                    words.extend(p.text.split())
                continue
            if played > p.start and p.samples > 0 and not p.filler:
                total = p.samples if p.complete else max(p.samples, len(p.text) * per_char)
                share = (played - p.start) / max(total, 1)
                ws = p.text.split()
                words.extend(ws[:int(len(ws) * min(share, 1.0))])
            break
        return " ".join(words)

    @property
    def full_text(self) -> str:
        return " ".join(p.text for p in self._pieces if not p.filler)
