"""Typed, frozen configuration from plain YAML data, with every problem reported at once.

Each component declares its section as a frozen dataclass. Field metadata may carry
`help` (a sentence for the reference), `min`/`max` (numbers), `pattern` (a regex for strings),
and `secret=True` (never printed). `build(cls, data, path)` returns the object and a list of
problems, each naming the key path, the bad value and what was expected. Unknown keys are
problems too (with a "did you mean" hint): a typo must never be silently ignored.

A tagged union is written as `A | B` of dataclasses that each have a `type: Literal[...]`
field; the value of `type` picks the class.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

_MISSING = dataclasses.MISSING


def _describe(tp) -> str:
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list, each {_describe(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_describe(get_args(tp)[1])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _show(value, secret=False) -> str:
    if secret:
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _tag_of(cls) -> tuple | None:
    hint = _hints(cls).get("type")
    if hint is not None and get_origin(hint) is Literal:
        return get_args(hint)
    return None


def _convert(tp, value, path: str, problems: list[str], meta: dict):
    origin = get_origin(tp)
    secret = bool(meta.get("secret"))

    def bad(expected: str | None = None):
        problems.append(f"{path or '<top>'}: got {_show(value, secret)}, expected {expected or _describe(tp)}")
        return None

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        tagged = [a for a in options if dataclasses.is_dataclass(a) and _tag_of(a)]
        if tagged and len(tagged) == len(options):
            if not isinstance(value, dict):
                return bad()
            kinds = {tag: a for a in tagged for tag in _tag_of(a)}
            kind = value.get("type")
            if kind not in kinds:
                problems.append(f"{_join(path, 'type')}: got {_show(kind)}, expected one of "
                                + ", ".join(repr(k) for k in kinds))
                return None
            return _convert(kinds[kind], value, path, problems, meta)
        if len(options) == 1:
            return _convert(options[0], value, path, problems, meta)
        for option in options:  # first that fits without problems
            trial: list[str] = []
            result = _convert(option, value, path, trial, meta)
            if not trial:
                return result
        return bad()
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return bad()
        return _build(tp, value, path, problems)
    if origin is Literal:
        return value if value in get_args(tp) else bad()
    if tp is bool:
        return value if isinstance(value, bool) else bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return bad()
        return _check_range(value, path, problems, meta)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return bad()
        return _check_range(float(value), path, problems, meta)
    if tp is str:
        if not isinstance(value, str):
            return bad()
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            return bad(meta.get("pattern_help") or f"a string matching {pattern}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            return bad()
        (item,) = get_args(tp)[:1]
        out = [_convert(item, v, _join(path, i), problems, {}) for i, v in enumerate(value)]
        return tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            return bad()
        _, item = get_args(tp)
        return {str(k): _convert(item, v, _join(path, k), problems, {}) for k, v in value.items()}
    raise TypeError(f"schema: unsupported type {tp!r} at {path}")


def _check_range(value, path, problems, meta):
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}")
        problems.append(f"{path}: got {value!r}, expected a number {rng}")
        return None
    return value


def _build(cls, data: dict, path: str, problems: list[str]):
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{_join(path, key)}: unknown key{hint}; "
                            f"{cls.__name__} takes: {', '.join(sorted(fields))}")
    kwargs = {}
    before = len(problems)
    for name, f in fields.items():
        sub = _join(path, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub, problems, dict(f.metadata))
        elif f.default is _MISSING and f.default_factory is _MISSING:
            problems.append(f"{sub}: missing, expected {_describe(hints[name])}"
                            + (f" ({f.metadata['help']})" if "help" in f.metadata else ""))
    if len(problems) > before:
        return None
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ cross-field checks
        problems.append(f"{path or '<top>'}: {exc}")
        return None
    return obj


def build(cls, data, path: str = ""):
    """Return (instance or None, problems)."""
    problems: list[str] = []
    obj = _convert(cls, data, path, problems, {})
    return obj, problems


def reference(cls, indent: int = 0) -> list[str]:
    """A plain-text reference of a config class: every key, its type, default and help."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if f.default is not _MISSING:
            default = f" = {_show(f.default, f.metadata.get('secret'))}"
        elif f.default_factory is not _MISSING:
            default = ""
        else:
            default = " (required)"
        help_ = f"  # {f.metadata['help']}" if "help" in f.metadata else ""
        lines.append(" " * indent + f"{f.name}: {_describe(tp)}{default}{help_}")
        for sub in _dataclasses_in(tp):
            if len(_dataclasses_in(tp)) > 1:
                lines.append(" " * (indent + 2) + f"# {sub.__name__}:")
            lines.extend(reference(sub, indent + 2))
    return lines


def _dataclasses_in(tp) -> list:
    if dataclasses.is_dataclass(tp):
        return [tp]
    found = []
    for arg in get_args(tp):
        found.extend(d for d in _dataclasses_in(arg) if d not in found)
    return found


def to_dict(obj) -> Any:
    """Plain data (for JSON/YAML) from a config object; secrets stay references, never values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
