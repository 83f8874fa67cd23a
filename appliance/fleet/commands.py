"""Commands on `cmd/<name>`: request parsing and argument validation.

A request is a JSON object `{"id": "<request id>", "args": {...}}`; the result goes to
`cmd/<name>/result` as `{"id", "command", "ok": true, "result": {...}}` or
`{"id", "command", "ok": false, "error": "...", "problems": [...]}`.

Argument schemas are a small subset of JSON Schema (enough for commands, no dependency):
`type` (object, string, integer, number, boolean, array, null, or a list of them), `properties`,
`required`, `additionalProperties` (false or a schema), `items`, `enum`, `minimum`, `maximum`,
`minLength`, `maxLength`, `pattern`, `minItems`, `maxItems`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_REQUEST_BYTES = 256 * 1024
_ID = re.compile(r"[\x21-\x7e]{1,128}")

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


# Argument schemas of the standard commands (DESIGN.md, issue 7). `Fleet` serves `ping` and
# `config.set` itself; the runtime registers handlers for the others with these schemas
# (`Fleet.register_command(name, handler)` without a schema picks the one here).
_LINE = {"type": "string", "minLength": 1, "maxLength": 64, "description": "line name from the config"}
SCHEMAS: dict[str, dict] = {
    "dial": {"type": "object", "required": ["number"], "additionalProperties": False,
             "properties": {"number": {"type": "string", "pattern": r"^(\+?[0-9*#]{2,32}|sips?:[^\s]{3,256})$",
                                       "description": "digits (E.164 with +) or a SIP URI"},
                            "line": _LINE,
                            "timeout_s": {"type": "number", "minimum": 5, "maximum": 300,
                                          "description": "ring time before giving up"},
                            "amd": {"type": "boolean", "description": "run answering-machine detection"},
                            "context": {"type": "object", "description": "facts handed to the agent"}}},
    "hangup": {"type": "object", "additionalProperties": False,
               "properties": {"call": {"type": "string", "minLength": 1, "maxLength": 128,
                                       "description": "call id; omitted: every call on the line(s)"},
                              "line": _LINE}},
    "reload": {"type": "object", "additionalProperties": False,
               "properties": {"drain": {"type": "boolean", "description": "wait for calls to end first"}}},
    "models.fetch": {"type": "object", "additionalProperties": False,
                     "properties": {"models": {"type": "array", "minItems": 1, "maxItems": 32,
                                               "items": {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,128}$"},
                                               "description": "model names; omitted: every model the config uses"},
                                    "verify": {"type": "boolean"}}},
}


class BadRequest(ValueError):
    """A command request that cannot be executed; `problems` says every reason."""

    def __init__(self, message: str, problems: list[str] | None = None, request_id: str | None = None):
        super().__init__(message)
        self.problems = problems or []
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    id: str
    args: dict


def check_schema(schema: dict) -> None:
    """Raise ValueError if a command schema uses keys this validator does not know (typos)."""
    known = {"type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "maximum",
             "minLength", "maxLength", "pattern", "minItems", "maxItems", "description", "title", "default"}
    unknown = set(schema) - known
    if unknown:
        raise ValueError(f"command schema: unknown keys {sorted(unknown)}")
    for sub in schema.get("properties", {}).values():
        check_schema(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            check_schema(schema[key])


def validate(value, schema: dict, path: str = "args") -> list[str]:
    """Every way `value` breaks `schema`, as readable problems (empty: valid)."""
    problems: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: got {_show(value)}, expected {' or '.join(types)}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: got {_show(value)}, expected one of {schema['enum']}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: got {value}, expected at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: got {value}, expected at most {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{path}: too short, expected at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{path}: too long, expected at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: got {_show(value)}, expected to match {schema['pattern']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append(f"{path}: expected at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: expected at most {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                problems += validate(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{path}.{key}: missing")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                problems += validate(item, props[key], f"{path}.{key}")
            elif extra is False:
                problems.append(f"{path}.{key}: unknown argument; expected one of {sorted(props) or 'none'}")
            elif isinstance(extra, dict):
                problems += validate(item, extra, f"{path}.{key}")
    return problems


def parse_request(payload: bytes) -> Request:
    """Parse a request payload. Raises BadRequest naming every problem (with the id when readable)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request too large: {len(payload)} bytes, at most {MAX_REQUEST_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"not a JSON object: {exc}") from None
    except RecursionError:
        raise BadRequest("not a JSON object: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"not a JSON object: got {type(data).__name__}")
    request_id = data.get("id")
    problems = []
    if not isinstance(request_id, str) or not _ID.fullmatch(request_id):
        problems.append(f"id: got {_show(request_id)}, expected a string of 1-128 printable characters")
        request_id = None
    args = data.get("args", {})
    if not isinstance(args, dict):
        problems.append(f"args: got {_show(args)}, expected an object")
    for key in data:
        if key not in ("id", "args"):
            problems.append(f"{key}: unknown key; a request takes id and args")
    if problems:
        raise BadRequest("bad request", problems, request_id)
    return Request(request_id, args)


def _show(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
