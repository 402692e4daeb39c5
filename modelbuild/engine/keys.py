"""One model of keys and invalidation.

An action's key is the sha256 of its ``KeyIngredients`` as canonical JSON: the step
and its version, its params (minus ``UNKEYED_PARAMS``), the content digests of its
inputs, and the versions of the tools it uses plus what of the environment the step
declares (``Step.key_environment``: the GPU for TensorRT). The same serialised form
is stored with every cache entry and in the per-recipe state, so ``explain`` can say
why a key changed by diffing two of them: the scheduler, ``plan``, the dry-run
runner, the no-op fast path and ``bench`` all read keys from here.

A ``Reason`` is data (kind, name, old, new) and reads as text: it is a ``str``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuild import toolchain
from modelbuild.step import UNKEYED_PARAMS, get_step
from modelbuild.store.hashing import digest_json

# The kinds of reason, grouped as doit groups them: data first, text on the terminal.
NEW = "never-built"
VERSION = "step-version"
PARAM = "param"
INPUT = "input"
TOOL = "tool"
FORCED = "forced"
MISSING = "missing-output"
UPSTREAM = "upstream"


class Reason(str):
    """Why an action runs. A ``str`` (its text), with the data behind it."""

    kind: str
    name: str | None
    old: Any
    new: Any

    def __new__(
        cls, kind: str, text: str, name: str | None = None, old: Any = None, new: Any = None
    ) -> Reason:
        self = super().__new__(cls, text)
        self.kind, self.name, self.old, self.new = kind, name, old, new
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "text": str(self),
        }


@dataclass(frozen=True)
class KeyIngredients:
    """Everything that enters an action's key, in the form the cache and the lock store."""

    step: str
    version: int
    params: dict[str, Any]
    inputs: dict[str, str]  # role → content digest
    tools: dict[str, str]  # distribution (or environment field) → version

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "version": self.version,
            "params": self.params,
            "inputs": self.inputs,
            "tools": self.tools,
        }

    @property
    def key(self) -> str:
        return digest_json(self.to_json())


def step_tools(step_name: str, params: dict[str, Any]) -> dict[str, str]:
    """Tool versions plus the environment the step declares, as they enter its key."""
    step = get_step(step_name)
    tools = {**step.tool_versions(params), **step.key_environment(params)}
    tools.update(imported_versions(params))  # what the model's code imports
    env = toolchain.for_step(step_name)  # a pinned environment: its lock and its versions
    return tools if env is None else env.key_tools(tools)


# -- what the model's code imports (found in the worker, see source/imports.py) ----------
IMPORT_ROLE = "import:"  # an input found by the import itself; "code:" ones the recipe names
CODE_ROLE = "code:"


def imported_versions(params: dict[str, Any]) -> dict[str, str]:
    """Versions of the installed distributions the model's code imports."""
    from modelbuild.step import dist_version

    src = params.get("source")
    dists = src.get("distributions") if isinstance(src, dict) else None
    return {d: dist_version(d) for d in dists or [] if isinstance(d, str)}


def import_name(path: str, recipe_dir: str) -> str:
    """How an imported file is named in a key and the lock: relative to the recipe's folder
    inside the repository (so every checkout keys it alike), else its absolute path."""
    from modelbuild.recipe.paths import repo_root

    root = repo_root(Path(recipe_dir))
    if Path(path).is_relative_to(root):
        return Path(os.path.relpath(path, recipe_dir)).as_posix()
    return path


def with_imports(
    job_ingredients: dict[str, Any],
    params: dict[str, Any],
    found: dict[str, list[str]],
    recipe_dir: str,
) -> KeyIngredients | None:
    """The ingredients of an action that loaded the model, with what its code imported (as
    the next plan will key it from the lock); None when the action was keyed with exactly
    that already."""
    from modelbuild.store.hashing import sha256_file

    declared = {
        k[len(CODE_ROLE) :]: v
        for k, v in job_ingredients.get("inputs", {}).items()
        if k.startswith(CODE_ROLE)
    }
    inputs = {
        k: v for k, v in job_ingredients.get("inputs", {}).items() if not k.startswith(IMPORT_ROLE)
    }
    for f in found.get("files", []):
        name = import_name(f, recipe_dir)
        if name not in declared:
            inputs[IMPORT_ROLE + name] = sha256_file(f)
    old_src = params.get("source") or {}
    src = {k: v for k, v in old_src.items() if k != "distributions"}
    if found.get("distributions"):  # as the planner writes it: absent when there is none
        src["distributions"] = sorted(found["distributions"])
    if inputs == job_ingredients.get("inputs") and src == old_src:
        return None
    new_params = {**params, "source": src}
    return ingredients(str(job_ingredients["step"]), new_params, inputs)


def ingredients(step_name: str, params: dict[str, Any], inputs: dict[str, str]) -> KeyIngredients:
    step = get_step(step_name)
    return KeyIngredients(
        step=step_name,
        version=step.version,
        params={k: v for k, v in params.items() if k not in UNKEYED_PARAMS},
        inputs=dict(inputs),
        tools=step_tools(step_name, params),
    )


def _short(a: Any, b: Any) -> tuple[str, str]:
    return json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)


def explain(old: dict[str, Any] | None, new: KeyIngredients) -> list[Reason]:
    """Why an action must run, as ninja's -d explain would say it: ``old`` is the stored
    form of the last key built for this action (None: never built)."""
    if old is None:
        return [Reason(NEW, "never built")]
    cur = new.to_json()
    reasons: list[Reason] = []
    if old.get("version") != cur["version"]:
        reasons.append(
            Reason(
                VERSION,
                f"step version {old.get('version')}→{cur['version']}",
                new.step,
                old.get("version"),
                cur["version"],
            )
        )
    for field_name, kind in (("params", PARAM), ("inputs", INPUT), ("tools", TOOL)):
        before = old.get(field_name) or {}
        after = cur[field_name]
        if not isinstance(before, dict):
            before = {}
        for k in sorted(set(before) | set(after)):
            a, b = before.get(k), after.get(k)
            if a == b:
                continue
            if kind == PARAM:
                sa, sb = _short(a, b)
                text = f"{k} changed {sa}→{sb}" if len(sa) + len(sb) < 80 else f"{k} changed"
            elif kind == INPUT:
                what = "added" if a is None else "removed" if b is None else "changed"
                text = f"input {k} {what}"
            else:
                text = f"{k} {a}→{b}"
            reasons.append(Reason(kind, text, k, a, b))
    return reasons or [Reason(MISSING, "output missing from cache")]


def forced() -> list[Reason]:
    return [Reason(FORCED, "--force")]


def after(upstream: list[str]) -> list[Reason]:
    names = ", ".join(upstream)
    return [
        Reason(UPSTREAM, f"after {names} (unchanged output would cut it off)", names, None, None)
    ]
