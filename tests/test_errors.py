"""The exception tree drawn in errors.py's docstring is the tree of the classes."""

from __future__ import annotations

import re

from modelbuild import errors


def _drawn() -> dict[str, str | None]:
    """class name → parent name, read from the docstring's drawing."""
    doc = errors.__doc__ or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        m = re.match(r"^ {4}([│ ]*)(?:[├└]── )?([A-Z]\w+Error|BuildFailure)\b", line)
        if not m:
            continue
        depth = len(m.group(1)) // 4 + (1 if ("├──" in line or "└──" in line) else 0)
        name = m.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def _actual() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.ModelBuildError):
            base = obj.__bases__[0]
            out[name] = None if obj is errors.ModelBuildError else base.__name__
    return out


def test_docstring_tree_matches_the_classes() -> None:
    assert _drawn() == _actual()


def test_exit_codes() -> None:
    assert errors.RecipeError.exit_code == 2 == errors.PlanError.exit_code
    assert errors.StepError.exit_code == 1 == errors.ParityError.exit_code
