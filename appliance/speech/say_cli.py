"""`appliance say "TEXT" -o FILE.wav [--rate 8000]`: speak text with the configured voice."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("text", help="what to say (numbers, times, dates, money are read out for the phone)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.wav", help="WAV file to write")
    p.add_argument("--rate", type=int, default=8000, help="sample rate of the file (default 8000)")
    p.add_argument("--encoding", choices=("pcm16", "ulaw", "alaw"), default="pcm16", help="sample encoding")
    p.add_argument("--config", help="appliance config file (speech section)")
    p.add_argument("--voice", help="override speech.tts.voice")


def main(args) -> int:
    import dataclasses

    from ..config import load
    from .tts import get_tts
    from .wavio import write_wav

    if not 4000 <= args.rate <= 96000:
        print(f"appliance say: --rate must be 4000..96000, got {args.rate}", file=sys.stderr)
        return 2
    if args.encoding != "pcm16" and args.rate != 8000:
        print("appliance say: µ-law/A-law files are written at 8000 Hz (use --rate 8000)", file=sys.stderr)
        return 2
    cfg = load(args.config).speech
    if args.voice:
        cfg = dataclasses.replace(cfg, tts=dataclasses.replace(cfg.tts, voice=args.voice))
    audio = get_tts(cfg).synthesize_to_array(args.text, args.rate)
    write_wav(args.output, audio, args.rate, args.encoding)
    print(f"{args.output}: {len(audio) / args.rate:.2f} s at {args.rate} Hz", file=sys.stderr)
    return 0
