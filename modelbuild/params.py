"""Typed parameters: dataclasses with a description per field.

The JSON Schema of the recipe is generated from these classes (``schema_of``),
and recipe mappings become instances through ``from_mapping``. Validation
proper (with line numbers) is jsonschema's job on the generated schema; this
module only converts already-valid data.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

_PRIMITIVES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    Any: {},
}


def field(default: Any = dataclasses.MISSING, *, description: str, **schema: Any) -> Any:
    """A dataclass field with a description and extra JSON Schema keywords."""
    meta = {"description": description, "schema": schema}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp in _PRIMITIVES:
        return dict(_PRIMITIVES[tp])
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _type_schema(args[0])
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin in (list, tuple):
        items = get_args(tp)
        return {"type": "array", "items": _type_schema(items[0]) if items else {}}
    if origin is dict:
        kv = get_args(tp)
        out: dict[str, Any] = {"type": "object"}
        if kv:
            out["additionalProperties"] = _type_schema(kv[1])
        return out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return schema_of(tp)
    raise TypeError(f"no schema for {tp!r}")


def schema_of(cls: type) -> dict[str, Any]:
    """JSON Schema of a params dataclass: unknown keys are errors."""
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        sch = _type_schema(hints[f.name])
        sch.update(f.metadata.get("schema", {}))
        if "description" in f.metadata:
            sch["description"] = f.metadata["description"]
        if f.default is not dataclasses.MISSING and f.default is not None:
            sch["default"] = f.default
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        props[f.name] = sch
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    return out


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        for a in args:
            if isinstance(a, type) and dataclasses.is_dataclass(a) and isinstance(value, dict):
                return from_mapping(a, value)
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_mapping(tp, value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple) and isinstance(value, list):
        (item,) = get_args(tp)[:1] or (Any,)
        return [_convert(item, v) for v in value]
    return value


class UnknownParams(TypeError):
    """Keys a params dataclass does not declare (a typo would otherwise enter the key)."""

    def __init__(self, cls: type, unknown: list[str]) -> None:
        self.cls, self.unknown = cls, unknown
        allowed = ", ".join(f.name for f in dataclasses.fields(cls))
        super().__init__(f"{cls.__qualname__} has no field {', '.join(unknown)} (has: {allowed})")


def from_mapping(cls: type, data: dict[str, Any], *, strict: bool = True) -> Any:
    """Build a params dataclass from validated recipe data; unknown keys are an error."""
    hints = _hints(cls)
    if strict:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names)
        if unknown:
            raise UnknownParams(cls, unknown)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def to_mapping(obj: Any) -> Any:
    """Plain JSON-able data from a params dataclass (for keys and logs)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    return obj
