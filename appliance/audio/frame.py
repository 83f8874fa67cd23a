"""The unit of audio that moves through a call."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LINE_RATE = 8000            # the phone band: every line is 8 kHz
FRAME_MS = 20
SAMPLES_PER_FRAME = LINE_RATE * FRAME_MS // 1000   # 160


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """PCM16 mono samples with their rate and the audio time (ms since call start) of the first sample."""

    samples: np.ndarray
    sample_rate: int = LINE_RATE
    timestamp_ms: float = 0.0

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate
