"""Reading one YAML file into plain data with the position of every key, safely.

Safe YAML still lets a small file ask for a lot: aliases that expand a thousand-fold at
each level (a "billion laughs" document), an alias inside the node it names, nesting
thousands deep, values no recipe key takes (dates, ``!!binary``, NaN). Each is refused
here with the file, line and column, before anything is expanded or validated.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelbuild.errors import RecipeError

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_SCALARS = yaml.constructor.SafeConstructor()

MAX_BYTES = 1 << 20  # a recipe is a page of settings; a megabyte is not one
MAX_DEPTH = 64  # mappings and lists inside each other
MAX_VALUES = 20_000  # values after aliases are expanded

KeyPath = tuple[str, ...]


@dataclass
class Position:
    file: str
    line: int
    column: int


def format_path(path: KeyPath | list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def _at(node: Any, file: str, path: KeyPath, message: str, hint: str | None) -> RecipeError:
    mark = node.start_mark
    return RecipeError(
        message,
        file=file,
        line=mark.line + 1,
        column=mark.column + 1,
        key_path=format_path(path),
        hint=hint,
    )


class _Walk:
    """One document's construction: positions, the values made so far, the open nodes."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.pos: dict[KeyPath, Position] = {}
        self.count = 0
        self.open: set[int] = set()

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _at(
                node,
                self.file,
                path,
                f"the document expands to more than {MAX_VALUES:,} values (through aliases)",
                "a recipe is a page of settings: write the values out, or use `extends`",
            )
        self.pos[path] = Position(self.file, node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open:
            raise _at(
                node,
                self.file,
                path,
                "an alias refers to the value that contains it",
                "remove the alias (a value cannot hold itself)",
            )
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.value(v, path + (str(i),)) for i, v in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise _at(
                    knode,
                    self.file,
                    path,
                    "YAML merge keys (<<) are not supported",
                    "use `extends` to share settings",
                )
            if not isinstance(knode, yaml.ScalarNode):
                raise _at(knode, self.file, path, "mapping keys must be plain scalars", None)
            key = knode.value
            if key in out:
                raise _at(
                    knode,
                    self.file,
                    path + (key,),
                    f"duplicate key '{key}'",
                    "remove one of the two",
                )
            out[key] = self.value(vnode, path + (key,))
            self.pos[path + (key,)] = Position(
                self.file, knode.start_mark.line + 1, knode.start_mark.column + 1
            )
        return out

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        # the safe constructor resolves the tag (int, float, bool, null, str, ...)
        try:
            v = _SCALARS.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            msg = getattr(exc, "problem", None) or str(exc)
            raise _at(node, self.file, path, f"malformed YAML value: {msg}", None) from None
        if isinstance(v, bool | int | str) or v is None:
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            raise _at(
                node,
                self.file,
                path,
                f"{node.value!r} is not a finite number",
                "write a finite number (NaN and infinity are not settings)",
            )
        if isinstance(v, datetime.date):
            what, hint = "a YAML date", f"quote it if you mean text: '{node.value}'"
        elif isinstance(v, bytes):
            what, hint = "binary data (!!binary)", "write the value itself (a number or text)"
        else:
            what, hint = f"a YAML {type(v).__name__}", "write a number, text, true/false or null"
        raise _at(node, self.file, path, f"{what} is not a value any recipe key takes", hint)


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the parser's events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise RecipeError(
                    f"values nested deeper than {MAX_DEPTH} levels",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                    hint="a recipe nests a few levels: flatten this value",
                )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _read_text(path: Path, file: str) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise RecipeError(
                f"the file is {size:,} bytes; a recipe is at most {MAX_BYTES:,}",
                file=file,
                hint="is this the right file? keep data (calibration, samples) in .npz files",
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(
            "file not found", file=file, hint="create it with `modelbuild init`, or pass -f PATH"
        ) from None
    except OSError as exc:
        raise RecipeError(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = raw[: exc.start]
        line_start = head.rfind(b"\n") + 1
        column = len(head[line_start:].decode("utf-8", errors="replace")) + 1
        raise RecipeError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x}",
            file=file,
            line=head.count(b"\n") + 1,
            column=column,
            hint="save the file as UTF-8",
        ) from None


def load_yaml(path: Path, display: str | None = None) -> tuple[Any, dict[KeyPath, Position]]:
    file = display or str(path)
    text = _read_text(path, file)
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RecipeError(
            f"malformed YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="fix the YAML syntax at that position",
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"malformed YAML: {exc}", file=file) from None
    if node is None:
        return {}, {}
    walk = _Walk(file)
    data = walk.value(node, ())
    return data, walk.pos
