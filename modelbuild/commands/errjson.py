"""Errors as the JSON every `--json` command prints on failure:
``{"ok": false, "errors": [{"file", "line", "column", "path", "message", "hint"}]}``."""

from __future__ import annotations

from typing import Any

from modelbuild.errors import ModelBuildError


def error_json(exc: ModelBuildError | str, path: str | None = None) -> dict[str, Any]:
    if isinstance(exc, str):
        return {
            "file": None,
            "line": None,
            "column": None,
            "path": path,
            "message": exc,
            "hint": None,
        }
    return {
        "file": getattr(exc, "file", None),
        "line": getattr(exc, "line", None),
        "column": getattr(exc, "column", None),
        "path": getattr(exc, "key_path", None) or path,
        "message": exc.message if not hasattr(exc, "step") else exc.render(),
        "hint": exc.hint,
        "kind": type(exc).__name__,
    }


def failure(errors: list[ModelBuildError | str], **extra: Any) -> dict[str, Any]:
    return {"ok": False, **extra, "errors": [error_json(e) for e in errors]}


def build_errors(result: Any) -> list[dict[str, Any]]:
    """The errors of a finished build: each failed action, then each failed target that no
    failed action explains (a target that cannot be planned, a parity failure)."""
    out = [error_json(a.error, f"actions.{a.action.id}") for a in result.actions if a.error]
    seen = {e["message"] for e in out}
    for name, t in result.targets.items():
        if not t.ok and t.error and t.error not in seen:
            out.append(error_json(t.error, f"targets.{name}"))
    return out
