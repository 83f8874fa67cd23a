"""Per-call recording: a stereo WAV (left: the line as received, right: the agent as sent) and a
JSON transcript beside it, with a retention limit (age and total size) applied at each new call.
"""
from __future__ import annotations

import json
import logging
import os
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .config import RecordingConfig

log = logging.getLogger(__name__)


def default_dir() -> Path:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/appliance/calls")
    return Path.home() / ".local" / "share" / "appliance" / "calls"


class CallRecorder:
    """Writes one call as it happens (frames go straight to the WAV file)."""

    def __init__(self, cfg: RecordingConfig, call_id: str, meta: dict[str, Any] | None = None):
        self.dir = Path(cfg.dir) if cfg.dir else default_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        apply_retention(self.dir, cfg.keep_days, cfg.max_mb)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in call_id)
        self.wav_path = self.dir / f"{stamp}_{safe}.wav"
        self.json_path = self.wav_path.with_suffix(".json")
        self.meta = dict(meta or {})
        self._wav = wave.open(str(self.wav_path), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(8000)
        self._closed = False

    def write(self, rx: np.ndarray, tx: np.ndarray) -> None:
        if self._closed:
            return
        n = min(len(rx), len(tx))
        frame = np.empty(2 * n, dtype="<i2")
        frame[0::2] = rx[:n]
        frame[1::2] = tx[:n]
        self._wav.writeframesraw(frame.tobytes())

    def close(self, transcript: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
        """Finish the WAV and write the transcript. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wav.close()
        except Exception as exc:  # noqa: BLE001 - the transcript must still be written
            log.warning("recording %s: %s", self.wav_path, exc)
        doc = {**self.meta, **(extra or {}), "audio": self.wav_path.name, "transcript": transcript}
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.json_path)


def apply_retention(folder: Path, keep_days: int, max_mb: int) -> list[Path]:
    """Delete recordings older than `keep_days` (0: keep none from earlier calls... but never the
    current one), then the oldest until the folder holds at most `max_mb`. Returns what was deleted."""
    deleted: list[Path] = []
    try:
        files = sorted((p for p in folder.iterdir() if p.suffix in (".wav", ".json")), key=lambda p: p.stat().st_mtime)
    except OSError:
        return deleted
    now = time.time()
    keep: list[Path] = []
    for p in files:
        try:
            if keep_days >= 0 and now - p.stat().st_mtime > keep_days * 86400 and keep_days > 0:
                p.unlink()
                deleted.append(p)
            else:
                keep.append(p)
        except OSError:
            pass
    total = sum(p.stat().st_size for p in keep if p.exists())
    limit = max_mb * 1024 * 1024
    for p in keep:
        if total <= limit:
            break
        try:
            size = p.stat().st_size
            p.unlink()
            deleted.append(p)
            total -= size
        except OSError:
            pass
    return deleted
