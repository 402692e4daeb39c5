"""The ML stack is an extra: `pip install modelbuild` alone validates, plans and reads
locks; building needs `modelbuild[ml]` (torch, onnx, onnxruntime, numpy, ...).

``require_ml`` is asked before a build runs anything: every action that would run names
its step's tools, and a tool of the ML extra that cannot be found is one error naming
the install command (exit 2), instead of an ImportError deep in a worker. A build that
is all cache hits needs none of them. Found with ``importlib.util.find_spec``: nothing
heavy is imported.
"""

from __future__ import annotations

import importlib.util
from typing import Any

ML_EXTRA = "ml"
# distribution (as a step's ``tools`` name it) → the module it provides
ML_MODULES = {
    "torch": "torch",
    "numpy": "numpy",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxsim": "onnxsim",
    "onnxscript": "onnxscript",
    "onnxconverter-common": "onnxconverter_common",
    "safetensors": "safetensors",
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_ml(tools: set[str]) -> list[str]:
    """The distributions of the ML extra among ``tools`` that are not installed."""
    return sorted(d for d in tools if d in ML_MODULES and not _importable(ML_MODULES[d]))


def ml_installed() -> bool:
    return all(_importable(m) for m in ML_MODULES.values())


def require_ml(actions: list[Any]) -> None:
    """Raise MissingToolchainError when an action about to run needs the ML extra.

    ``actions``: ActionResult rows of a dry run; cached ones need nothing."""
    from modelbuild.step import get_step

    tools: set[str] = set()
    for r in actions:
        if r.status == "cached":
            continue
        tools.update(get_step(r.action.step).tool_versions(r.action.params))
    missing = missing_ml(tools)
    if missing:
        from modelbuild.errors import MissingToolchainError

        raise MissingToolchainError(f"ML ({', '.join(missing)})", ML_EXTRA)
