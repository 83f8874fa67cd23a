"""`appliance stt FILE.wav [--json]`: transcribe a recording with the configured engine, as if live.

Prints the transcript, or with --json `{"text", "engine", "final_ms"}` where final_ms is the delay
from the end of the last speech to the final transcript (null when no speech was heard). Any WAV
that sox can write is accepted (8/16 kHz..., PCM16, µ-law, A-law, float)."""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("file", metavar="FILE.wav", help="recording to transcribe")
    p.add_argument("--json", action="store_true", help='print {"text", "engine", "final_ms"}')
    p.add_argument("--config", help="appliance config file (speech section)")
    p.add_argument("--engine", choices=("whisper-ct2", "whisper", "transducer"), help="override speech.stt.engine")
    p.add_argument("--model", help="override speech.stt.model (a name from the model manifest)")


def speech_config(args):
    """The speech section of --config (or defaults), with CLI overrides."""
    import dataclasses

    from ..config import load

    cfg = load(getattr(args, "config", None)).speech
    stt = cfg.stt
    if getattr(args, "engine", None):
        stt = dataclasses.replace(stt, engine=args.engine)
        default_model = {"transducer": "streaming-zipformer-en-20M", "whisper": "whisper-tiny.en",
                         "whisper-ct2": "whisper-tiny.en-ct2"}
        if not getattr(args, "model", None):
            stt = dataclasses.replace(stt, model=default_model[args.engine])
    if getattr(args, "model", None):
        stt = dataclasses.replace(stt, model=args.model)
    return dataclasses.replace(cfg, stt=stt)


def main(args) -> int:
    from .live import transcribe_live
    from .stt import get_stt
    from .wavio import read_wav

    cfg = speech_config(args)
    pcm = read_wav(args.file, 8000)
    engine = get_stt(cfg)
    result = transcribe_live(engine, pcm, cfg.vad, cfg.stt.speculate_after_ms)
    final_ms = None if result.final_ms is None else int(round(result.final_ms))
    if args.json:
        print(json.dumps({"text": result.text, "engine": engine.name, "final_ms": final_ms}))
    else:
        print(result.text)
    return 0
