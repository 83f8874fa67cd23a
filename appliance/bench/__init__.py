"""`appliance bench <what> [--json]`: each benchmark is a module here with
`add_arguments(parser)`, `run(args) -> dict` (the JSON contract of DESIGN.md) and
`report(result) -> str` (readable text with figures against targets)."""
from __future__ import annotations

import importlib
import json

WHATS = ("native", "speech", "call", "amd", "sip", "fleet", "modem")


def _load(what: str):
    name = f"appliance.bench.{what}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def add_arguments(p):
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what in WHATS:
        module = _load(what)
        doc = (module.__doc__ or "").strip().splitlines()[0] if module else "not built yet"
        s = sub.add_parser(what, help=doc, description=doc)
        s.add_argument("--json", action="store_true", help="print one JSON object")
        if module is not None and hasattr(module, "add_arguments"):
            module.add_arguments(s)


def main(args) -> int:
    from ..errors import NotBuiltYet

    module = _load(args.what)
    if module is None:
        raise NotBuiltYet(f"`appliance bench {args.what}` is not built yet in this version")
    result = module.run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(module.report(result))
    return 0
