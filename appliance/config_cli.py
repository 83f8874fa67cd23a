"""`appliance config check FILE` and `appliance config reference`."""
from __future__ import annotations

import json

from . import config, schema


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a config file; reports every problem at once (exit 2)")
    c.add_argument("file")
    c.add_argument("--json", action="store_true", help="print the validated config (secrets as references)")
    sub.add_parser("reference", help="print every key with its type, default and meaning")


def main(args) -> int:
    if args.action == "reference":
        print("\n".join(schema.reference(config.ApplianceConfig)))
        return 0
    cfg = config.load(args.file)  # raises ConfigError -> exit 2
    if args.json:
        print(json.dumps(schema.to_dict(cfg), indent=2))
    else:
        lines = ", ".join(f"{line.name} ({line.type})" for line in cfg.lines)
        print(f"{args.file}: OK (device {cfg.device.id}; lines: {lines}; "
              f"{'LLM ' + cfg.llm.model if cfg.llm else 'offline call flow'})")
    return 0
