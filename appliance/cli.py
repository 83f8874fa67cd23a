"""The `appliance` command.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `main(args) -> int`
(heavy imports such as sherpa-onnx stay inside `main`, so `--help` is instant). A module that a
later milestone delivers may be absent: the command then says so plainly.

Exit codes: 0 ok, 1 failure, 2 bad usage or bad configuration.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import ApplianceError, ConfigError, NotBuiltYet

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("appliance.runtime", "run the box: open the configured lines and answer/place calls"),
    "demo": ("appliance.agent.demo", "a simulated call through the whole pipeline (no hardware, no API key)"),
    "amd": ("appliance.detect.amd_cli", "answering-machine detection on a WAV file, as if live"),
    "stt": ("appliance.speech.stt_cli", "transcribe a WAV file with the configured engine, as if live"),
    "say": ("appliance.speech.say_cli", "speak text with the configured voice into a WAV file"),
    "models": ("appliance.speech.models_cli", "list, fetch and verify speech models"),
    "config": ("appliance.config_cli", "check a config file, or print the config reference"),
    "doctor": ("appliance.doctor", "check this box: versions, native core, devices, models, broker"),
    "bench": ("appliance.bench", "benchmarks (native, speech, call, amd, sip, fleet, modem)"),
}


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Phone-line AI agent appliance: answers and places calls on analog, GSM and SIP lines.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = _load(module_name)
        if module is not None and hasattr(module, "add_arguments"):
            module.add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = _load(args._module)
    try:
        if module is None or not hasattr(module, "main"):
            raise NotBuiltYet(f"`appliance {args.command}` is not built yet in this version")
        return int(module.main(args) or 0)
    except NotBuiltYet as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ConfigError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApplianceError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
