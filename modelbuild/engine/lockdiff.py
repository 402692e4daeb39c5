"""How a plan or a build differs from the committed lock (``plan --check``, ``build
--locked``): per target, tools, key (with the reasons), digest and parity-check key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelbuild.engine.plan import Plan
    from modelbuild.engine.results import ActionResult, BuildResult
    from modelbuild.recipe.load import Recipe


@dataclass
class LockDiff:
    """One way a build would differ from the committed model.build.lock."""

    target: str
    kind: str  # missing | extra | unplannable | tools | key | verify_key | digest | rebuild
    message: str

    def to_json(self) -> dict[str, str]:
        return {"target": self.target, "kind": self.kind, "message": self.message}

    def __str__(self) -> str:
        return f"{self.target}: {self.message}"


def _tool_diffs(name: str, old: dict[str, Any], new: dict[str, str]) -> list[LockDiff]:
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(LockDiff(name, "tools", f"{k} {old.get(k)}→{new.get(k)}"))
    return out


def _lock_targets(recipe: Recipe) -> dict[str, Any]:
    from modelbuild.store.lockfile import read_lock

    got = read_lock(recipe).get("targets")
    return got if isinstance(got, dict) else {}


def lock_diffs(
    plan: Plan, targets: list[str], rows: list[ActionResult] | None = None
) -> tuple[list[LockDiff], list[str]]:
    """What the plan says against the committed lock: (differences, targets whose key
    is not known until an upstream action runs, so only the build can check them)."""
    from modelbuild.engine.build import chain_tools
    from modelbuild.store.lockfile import lock_path

    lock = _lock_targets(plan.recipe)
    lockname = lock_path(plan.recipe).name  # NAME.build.lock, or model.build.lock
    by_uid = {r.action.uid: r for r in rows or [] if hasattr(r.action, "uid")}
    if not by_uid and rows:
        ids = {a.id: uid for uid, a in plan.actions.items()}
        by_uid = {ids[r.action.id]: r for r in rows if r.action.id in ids}
    diffs: list[LockDiff] = []
    unknown: list[str] = []
    if set(targets) == set(plan.recipe.targets):
        for name in sorted(set(lock) - set(targets)):
            diffs.append(LockDiff(name, "extra", f"in {lockname} but not in the recipe"))
    for name in targets:
        if name in plan.errors:
            diffs.append(LockDiff(name, "unplannable", plan.errors[name].render()))
            continue
        entry = lock.get(name)
        if not isinstance(entry, dict):
            diffs.append(LockDiff(name, "missing", f"not in {lockname}"))
            continue
        tp = plan.targets[name]
        diffs.extend(_tool_diffs(name, entry.get("tools") or {}, chain_tools(plan, tp.artifact)))
        art = by_uid.get(tp.artifact)
        if art is None or art.key is None:
            changed = _changed_upstream(plan, tp.artifact, by_uid)
            if changed:
                diffs.append(LockDiff(name, "rebuild", f"would be rebuilt: {changed}"))
            else:
                unknown.append(name)
            continue
        if art.key != entry.get("key"):
            why = "; ".join(str(r) for r in art.reasons) or "its ingredients changed"
            diffs.append(
                LockDiff(
                    name,
                    "key",
                    f"key {_short(entry.get('key'))} would be {_short(art.key)} ({why})",
                )
            )
        elif art.output is not None and art.output.digest != entry.get("digest"):
            diffs.append(
                LockDiff(
                    name,
                    "digest",
                    f"digest {_short(entry.get('digest'))}→{_short(art.output.digest)}",
                )
            )
        ver = by_uid.get(tp.verify) if tp.verify else None
        if ver is not None and ver.key is not None and ver.key != entry.get("verify_key"):
            why = "; ".join(str(r) for r in ver.reasons) or "its ingredients changed"
            diffs.append(LockDiff(name, "verify_key", f"parity check key changed ({why})"))
    return diffs, unknown


# Reasons that say nothing changed since the lock was written (a fresh or cleared cache).
_NO_CHANGE = {"never-built", "missing-output", "forced", "upstream"}


def _changed_upstream(plan: Plan, uid: str, by_uid: dict[str, ActionResult]) -> str:
    """What changed above an action whose key waits on upstream outputs: the reasons of
    the upstream actions that would run because their ingredients changed."""
    found: list[str] = []
    stack, seen = list(plan.actions[uid].deps), set()
    while stack:
        u = stack.pop()
        if u in seen:
            continue
        seen.add(u)
        r = by_uid.get(u)
        if r is not None and r.status == "run":
            why = [str(x) for x in r.reasons if getattr(x, "kind", "") not in _NO_CHANGE]
            if why:
                found.append(f"{r.action.id} ({'; '.join(why)})")
        stack.extend(plan.actions[u].deps)
    return ", ".join(sorted(found))


def result_diffs(result: BuildResult, lock: dict[str, Any]) -> list[LockDiff]:
    diffs = []
    for name, t in result.targets.items():
        entry = lock.get(name)
        if not t.ok or not isinstance(entry, dict):
            continue
        for kind, new in (("key", t.key), ("verify_key", t.verify_key), ("digest", t.digest)):
            if new != entry.get(kind):
                diffs.append(
                    LockDiff(name, kind, f"{kind} {_short(entry.get(kind))}→{_short(new)}")
                )
        diffs.extend(_tool_diffs(name, entry.get("tools") or {}, t.tools))
    return diffs


def _short(v: Any) -> str:
    return str(v)[:12] if v else str(v)
