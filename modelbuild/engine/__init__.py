"""The engine: plan (the DAG), keys (one model of invalidation), scheduler, runners,
build (verify → publish → lock), and the no-op fast path.

Exports are lazy so that ``modelbuild.engine.fastpath`` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build": "modelbuild.engine.build",
    "Engine": "modelbuild.engine.scheduler",
    "make_plan": "modelbuild.engine.plan",
    "Plan": "modelbuild.engine.plan",
    "ActionResult": "modelbuild.engine.results",
    "BuildResult": "modelbuild.engine.results",
    "TargetResult": "modelbuild.engine.results",
    "Reporter": "modelbuild.engine.results",
    "KeyIngredients": "modelbuild.engine.keys",
    "Reason": "modelbuild.engine.keys",
    "PoolRunner": "modelbuild.engine.runners",
    "InProcessRunner": "modelbuild.engine.runners",
    "DryRunner": "modelbuild.engine.runners",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
