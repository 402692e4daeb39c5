"""What a build returns: per action, per target, and the whole (the `--json` contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelbuild.engine.keys import Reason
from modelbuild.engine.plan import Action
from modelbuild.errors import ModelBuildError
from modelbuild.store.cache import OutputRecord


@dataclass
class ActionResult:
    action: Action
    status: str  # built | cached | failed | skipped | running | run (dry run)
    key: str | None = None
    output: OutputRecord | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: ModelBuildError | None = None
    reasons: list[Reason] = field(default_factory=list)
    pid: int | None = None
    node: str | None = None  # where it ran, when the runner says (Ray: host and node id)


@dataclass
class TargetResult:
    name: str
    ok: bool
    path: str | None = None
    digest: str | None = None
    size: int | None = None
    verified: bool | None = None
    parity: dict[str, Any] | None = None
    key: str | None = None
    verify_key: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    # a failure that says nothing against the last good artifact (it was never rebuilt, or
    # its check could not run): what was published, and its lock entry, stay
    kept: bool = False


@dataclass
class BuildResult:
    recipe: str
    ok: bool
    actions: list[ActionResult]
    targets: dict[str, TargetResult]
    warnings: list[str] = field(default_factory=list)
    workers: int = 0
    executor: str = "local"

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "ok": self.ok,
            "executor": self.executor,
            "actions": [
                {
                    "id": r.action.id,
                    "step": r.action.step,
                    "target": r.action.targets[0] if r.action.targets else None,
                    "targets": r.action.targets,
                    "status": r.status,
                    "key": r.key,
                    "seconds": round(r.seconds, 4),
                    **({"node": r.node} if r.node else {}),
                    **({"notices": r.meta["notices"]} if r.meta.get("notices") else {}),
                    **({"error": r.error.render()} if r.error else {}),
                }
                for r in self.actions
            ],
            "targets": {
                n: {
                    "path": t.path,
                    "digest": t.digest,
                    "verified": t.verified,
                    # a spec-only check (CoreML off macOS) says so
                    **({"numeric": False} if (t.parity or {}).get("numeric") is False else {}),
                    **({"error": t.error} if t.error else {}),
                }
                for n, t in self.targets.items()
            },
        }


class Reporter:
    """Progress callbacks; the CLI plugs in rich or JSON-quiet versions."""

    def start(self, total: int) -> None: ...
    def running(self, r: ActionResult) -> None: ...
    def finished(self, r: ActionResult) -> None: ...
    def published(self, target: str, path: str) -> None: ...
    def stop(self) -> None: ...
