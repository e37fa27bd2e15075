"""Plain data (YAML, ``--set`` overrides) onto typed dataclasses, with one-line errors.

Every value is checked against its field's annotation while it is built: ``coerce`` converts where
that is lossless (int -> float, list -> tuple) and raises :class:`vssl.errors.ConfigError` naming the
source (file or ``--set``) and the dotted key otherwise; ``build`` refuses unknown keys.
"""

from __future__ import annotations

import dataclasses
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from vssl.errors import ConfigError

_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _type_name(tp: Any) -> str:
    return _NAMES.get(tp, getattr(tp, "__name__", None) or str(tp).replace("typing.", ""))


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (ints become floats).

    Args:
        value: the value read from YAML or an override.
        tp: the resolved type annotation of the field.
        key: dotted key, for the error message.
        source: file name or ``"--set"``, for the error message.

    Returns:
        The value, converted where that is lossless (int -> float, list -> tuple).
    """
    def fail() -> ConfigError:
        return ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {short(value)}")

    if tp is Any:
        return value
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise fail()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail()
        return build(tp, value, key + ".", source)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {key}: expected {len(args)} values, got {short(list(value))}")
            return tuple(coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail()
        vt = args[1] if len(args) == 2 else Any
        return {k: coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: expected one of {list(args)}, got {short(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads `1e-3` as a string; YAML 1.2 says float
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is str:
        if value is None:  # `checkpoint: null` reads as "not set"
            return ""
        if isinstance(value, int) and not isinstance(value, bool):  # `subset: 1000`, `--set data.split=1`
            return str(value)
        if not isinstance(value, str):
            raise fail()
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    return value  # an annotation we do not check (e.g. a callable): trust the caller


def build(cls: type, data: dict, prefix: str, source: str) -> Any:
    """Recursively map a dict onto the dataclass ``cls``; unknown keys and wrong types raise."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        if k not in names:
            raise ConfigError(f"{source}: unknown key '{prefix}{k}' (known: {', '.join(sorted(names))})")
        kwargs[k] = coerce(v, hints[k], prefix + str(k), source)
    return cls(**kwargs)


def leaves(data: Any, prefix: str = ""):
    """(dotted key, value) of every leaf of nested dicts/lists."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, data


def merge(obj: Any, patch: dict, prefix: str, source: str) -> None:
    """Apply a nested ``patch`` onto dataclass ``obj`` in place, validating each leaf."""
    hints = get_type_hints(type(obj))
    for k, v in patch.items():
        if k not in hints:
            raise ConfigError(f"{source}: unknown key '{prefix}{k}'")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current) and isinstance(v, dict):
            merge(current, v, f"{prefix}{k}.", source)
        elif isinstance(current, dict) and isinstance(v, dict) and get_origin(hints[k]) is dict:
            merged = {**current, **v}
            setattr(obj, k, coerce(merged, hints[k], prefix + k, source))
        else:
            setattr(obj, k, coerce(v, hints[k], prefix + k, source))


def plain(value: Any) -> Any:
    """Tuples to lists, recursively, so that ``yaml.safe_dump`` writes plain YAML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
