"""`appliance amd FILE.wav [--json]`: answering-machine detection on a recording, as if live.

Prints `{"label": "human"|"machine"|"unknown", "decision_ms": int, "beep_ms": int|null, "cause": str}`
(`decision_ms`: audio time at which the verdict was reached; `beep_ms`: audio time of the end of
the voicemail beep). Any WAV sox writes is accepted (8/16 kHz, PCM16, µ-law, A-law, ...).
Exit codes: 0 ok, 1 unreadable/broken/empty audio or a model that cannot load, 2 bad usage.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p):
    p.add_argument("file", type=Path, help="WAV file (what the far end sent after answering)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-stt", action="store_true", help="timing and tones only (no transcript cues)")
    p.add_argument("--config", type=Path, default=None, help="appliance config file (its detect.amd section)")
    p.add_argument("--threads", type=int, default=1, help="STT threads")


def _config(path: Path | None):
    from .config import AmdConfig
    if path is None:
        return AmdConfig()
    from ..config import load  # the project's loader: validates the whole file
    cfg = load(path)
    return cfg.detect.amd


def main(args) -> int:
    from ..errors import ApplianceError
    from .amd_run import AudioFileError, load_stt, read_wav, run_live

    if not args.file.exists():
        print(f"appliance amd: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        pcm = read_wav(args.file)
    except AudioFileError as exc:
        print(f"appliance amd: {exc}", file=sys.stderr)
        return 1
    try:
        config = _config(args.config)
        stt = None
        if not args.no_stt and config.use_transcript:
            stt, _ = load_stt(threads=args.threads)
        run = run_live(pcm, config, stt)
    except ApplianceError as exc:
        print(f"appliance amd: {exc}", file=sys.stderr)
        return 1
    out = run.result.as_dict()
    out["beep_ms"] = run.beep_ms
    if args.json:
        print(json.dumps(out))
    else:
        beep = f", beep ended at {run.beep_ms} ms" if run.beep_ms is not None else ""
        print(f"{out['label']} at {out['decision_ms']} ms ({out['cause']}){beep}")
        if run.transcript:
            print(f"heard: {run.transcript}")
    return 0
