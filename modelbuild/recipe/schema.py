"""The recipe's JSON Schema, generated from the typed params, and validation
that turns jsonschema's errors into RecipeErrors with file:line:column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuild.errors import RecipeError
from modelbuild.params import schema_of
from modelbuild.recipe.model import REMOVED_KEYS, InputSpec, Source, Verify

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "model.build.schema.json"
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def build_schema() -> dict[str, Any]:
    from modelbuild.formats import FORMATS, target_class

    formats = sorted(FORMATS)
    branches = []
    for fmt in formats:
        sch = schema_of(target_class(fmt))
        sch["properties"]["format"] = {"const": fmt, "description": f"build a {fmt} artifact"}
        _precision_choice(sch)
        branches.append(
            {"if": {"properties": {"format": {"const": fmt}}, "required": ["format"]}, "then": sch}
        )
    target = {
        "type": "object",
        "description": "one artifact to build; the keys allowed depend on `format`",
        "required": ["format"],
        "properties": {"format": {"enum": formats, "description": "artifact format"}},
        "allOf": branches,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://modelbuild.dev/schemas/model.build.schema.json",
        "title": "model.build.yaml (format 1)",
        "type": "object",
        "additionalProperties": False,
        "required": ["modelbuild", "name", "source", "inputs", "targets"],
        "properties": {
            "modelbuild": {"const": 1, "description": "recipe format version"},
            "name": {"type": "string", "pattern": NAME_PATTERN, "description": "model name"},
            "description": {
                "type": "string",
                "description": "one line on what this recipe is for (`modelbuild recipes` "
                "lists it)",
            },
            "extends": {
                "type": "array",
                "items": {"type": "string"},
                "description": "recipe:NAME (bundled), recipe:PACK/NAME[@VERSIONS] (an "
                "installed recipe pack, e.g. recipe:acme/gpu@>=1.2) or relative paths, "
                "deep-merged in order; this file wins",
            },
            "source": schema_of(Source),
            "inputs": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": schema_of(InputSpec),
                "description": "model inputs, in order",
            },
            "outputs": {
                "type": "array",
                "items": {"type": "string", "pattern": NAME_PATTERN},
                "description": "output names",
            },
            "opset": {
                "type": "integer",
                "minimum": 7,
                "maximum": 23,
                "default": 17,
                "description": "ONNX opset",
            },
            "verify": schema_of(Verify),
            "targets": {
                "type": "object",
                "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": target,
                "description": "artifacts to build",
            },
            "allow_outside_repo": {
                "type": "boolean",
                "default": False,
                "description": "let paths in this recipe point outside its "
                "repository (through .., absolute paths or symlinks)",
            },
            "step_timeout": {
                "type": "number",
                "minimum": 0,
                "default": 1800,
                "description": "seconds a step may run before it is stopped and fails "
                "(0: no limit); `build --step-timeout` overrides it",
            },
            "output_dir": {
                "type": "string",
                "default": "dist",
                "description": "targets land in OUTPUT_DIR/<target>/",
            },
        },
    }


def _precision_choice(sch: dict[str, Any]) -> None:
    """`precision` may list candidates, tried under `choose` (see recipe/choose.py)."""
    from modelbuild.recipe.choose import RULES

    one = sch["properties"].get("precision")
    if not one or len(one.get("enum", [])) < 2:
        return
    many = {
        "type": "array",
        "items": {"enum": one["enum"]},
        "minItems": 1,
        "uniqueItems": True,
        "description": "precisions to try, in order; `choose` picks the one published",
    }
    sch["properties"]["precision"] = {
        "default": one.get("default"),
        "description": one.get("description", ""),
        "anyOf": [{"enum": one["enum"]}, many],
    }
    sch["properties"]["choose"] = {
        "enum": list(RULES),
        "default": RULES[0],
        "description": "with a precision list: first-passing publishes the first candidate "
        "that passes the parity gate, fastest-passing the fastest of those that pass; the "
        "lock records every candidate's figures and why it was or was not chosen",
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


_VALIDATOR: Any = None


def _validator() -> Any:
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema

        _VALIDATOR = jsonschema.Draft202012Validator(build_schema())
    return _VALIDATOR


def _depth_key(err: Any) -> tuple[int, int]:
    # Prefer the deepest, most specific error; `if/then` wrappers are shallow.
    return (
        -len(err.absolute_path),
        0 if err.validator in ("additionalProperties", "required") else 1,
    )


def _leaves(err: Any) -> list[Any]:
    if err.context:
        out = []
        for e in err.context:
            out.extend(_leaves(e))
        return out
    return [err]


def _best(errors: list[Any]) -> Any:
    return sorted(errors, key=lambda e: (_depth_key(e), [str(p) for p in e.absolute_path]))[0]


def validate(data: Any, positions: dict[tuple[str, ...], Any], file: str) -> None:
    errors = []
    for e in _validator().iter_errors(data):
        errors.extend(_leaves(e))
    if errors:
        raise _to_error(_best(errors), positions, file)


def all_errors(data: Any, positions: dict[tuple[str, ...], Any], file: str) -> list[RecipeError]:
    """Every schema error (the most specific one of each), for `modelbuild validate`."""
    out: list[RecipeError] = []
    for e in _validator().iter_errors(data):
        err = _to_error(_best(_leaves(e)), positions, file)
        if all(err.render() != o.render() for o in out):
            out.append(err)
    return sorted(out, key=lambda x: (x.line or 0, x.column or 0))


def _to_error(err: Any, positions: dict[tuple[str, ...], Any], file: str) -> RecipeError:
    from modelbuild.recipe.load import format_path, suggest

    path = tuple(str(p) for p in err.absolute_path)
    hint = None
    msg = err.message
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            path = path + (extra[0],)
            msg = f"unknown key '{extra[0]}'"
            close = suggest(extra[0], allowed)
            hint = (
                f"did you mean '{close}'? " if close else ""
            ) + f"allowed keys: {', '.join(allowed)}"
            hint = REMOVED_KEYS.get(path, hint)
    elif err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        msg = f"missing required key '{missing}'"
        desc = err.schema.get("properties", {}).get(missing, {}).get("description")
        hint = f"add `{missing}:`" + (f" ({desc})" if desc else "")
    elif err.validator in ("enum", "const"):
        options = err.validator_value if err.validator == "enum" else [err.validator_value]
        msg = f"{err.instance!r} is not allowed"
        close = suggest(str(err.instance), [str(o) for o in options])
        hint = (
            f"did you mean '{close}'? " if close else ""
        ) + f"use one of: {', '.join(json.dumps(o) for o in options)}"
    elif err.validator == "type":
        msg = f"expected {err.validator_value}, got {type(err.instance).__name__} {err.instance!r}"
        desc = err.schema.get("description")
        hint = desc and f"this key is: {desc}"
    elif err.validator == "pattern":
        msg = f"{err.instance!r} does not match {err.validator_value}"
        hint = "use letters, digits, '_', '.', '-'"
    elif err.validator == "propertyNames":
        msg = f"invalid key: {err.message}"
    # Key names in propertyNames errors live at the mapping's position.
    kp = path
    while kp and kp not in positions:
        kp = kp[:-1]
    pos = positions.get(kp)
    return RecipeError(
        msg,
        file=pos.file if pos else file,
        line=pos.line if pos else None,
        column=pos.column if pos else None,
        key_path=format_path(path),
        hint=hint,
    )


def committed_schema() -> str:
    return SCHEMA_PATH.read_text()
