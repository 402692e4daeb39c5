"""Recipe → a DAG of immutable actions.

The planner decides everything; the executor only runs. Shared intermediates
are one node, so the ONNX export feeds every ONNX-derived target once:

    make_inputs ──────────────┬────────────────────────┐
    reference (source model) ─┼────────────────────┐   │
    onnx_from_torch ─ onnx_simplify ─┬─ onnx_fp16 ─ verify[onnx-fp16]
                                     ├─ onnx_int8 ─ verify[onnx-int8]
                                     └──────────── verify[onnx]
    torchscript_from_torch ─────────────────────── verify[torchscript]

An action's structural uid hashes its step, params and upstream uids; its
content key (computed at build time, see engine.py) hashes input *bytes*.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.engine.contracts import check_params, tolerance_for  # noqa: F401 (re-exported)
from modelbuild.errors import ModelBuildError, PlanError, RecipeError
from modelbuild.formats import format_module
from modelbuild.params import to_mapping
from modelbuild.recipe.choose import SEP, choices_of, settle_candidates, variants
from modelbuild.recipe.load import Recipe
from modelbuild.store.hashing import digest_json

PACKS_STEP = "recipe_packs"  # see recipe/packs.py
_LOADS_CODE = ("pytorch", "lightning")  # frameworks whose model is the repository's code


@dataclass(frozen=True)
class FileRef:
    """A source file (checkpoint, code, data) that enters the key by content."""

    path: str  # absolute


Ref = str | FileRef  # an upstream action uid, or a file


@dataclass
class Action:
    uid: str
    step: str
    params: dict[str, Any]
    inputs: dict[str, Ref]
    targets: list[str] = field(default_factory=list)
    id: str = ""

    @property
    def deps(self) -> list[str]:
        return [r for r in self.inputs.values() if isinstance(r, str)]


@dataclass
class TargetPlan:
    name: str
    format: str
    precision: str
    artifact: str  # uid
    verify: str | None  # uid
    output_name: str


@dataclass
class Plan:
    recipe: Recipe
    actions: dict[str, Action]
    targets: dict[str, TargetPlan]
    errors: dict[str, ModelBuildError]  # targets that cannot be planned (missing toolchain, ...)
    choices: dict[str, Any] = field(default_factory=dict)  # name → recipe.choose.Choice
    rejected: dict[str, ModelBuildError] = field(default_factory=dict)  # unplannable candidates

    def order(self) -> list[str]:
        """Actions in a deterministic topological order (recipe order breaks ties)."""
        import networkx as nx

        g = self.graph()
        index = {uid: i for i, uid in enumerate(self.actions)}
        return list(nx.lexicographical_topological_sort(g, key=lambda u: index[u]))

    def graph(self) -> Any:
        import networkx as nx

        g = nx.DiGraph()
        for uid, a in self.actions.items():
            g.add_node(uid, action=a)
            for d in a.deps:
                g.add_edge(d, uid)
        return g

    def needed(self, targets: list[str]) -> list[str]:
        """Uids needed by ``targets``, in build order."""
        want: set[str] = set()
        stack = []
        for t in targets:
            if t in self.choices:  # a precision list needs every candidate
                stack.extend(
                    self.needed([c for c in self.choices[t].candidates if c in self.targets])
                )
            tp = self.targets[t]
            stack.append(tp.artifact)
            if tp.verify:
                stack.append(tp.verify)
        while stack:
            uid = stack.pop()
            if uid in want:
                continue
            want.add(uid)
            stack.extend(self.actions[uid].deps)
        return [u for u in self.order() if u in want]

    def by_id(self) -> dict[str, Action]:
        return {a.id: a for a in self.actions.values()}


class Planner:
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.actions: dict[str, Action] = {}
        self._imported: dict[str, list[str]] | None = None
        self._model_file: dict[str, Ref] | None = None

    # -- building blocks ---------------------------------------------------
    def add(self, step: str, params: dict[str, Any], inputs: dict[str, Ref], target: str) -> str:
        params = to_mapping(params)
        check_params(step, params)
        if step != PACKS_STEP and (packs := self.packs(target)):
            inputs = {**inputs, PACKS_STEP: packs}  # a pack upgrade reaches every key
        uid = digest_json(
            {
                "step": step,
                "params": params,
                "inputs": {
                    k: (v if isinstance(v, str) else {"file": v.path}) for k, v in inputs.items()
                },
            }
        )[:16]
        a = self.actions.get(uid)
        if a is None:
            a = self.actions[uid] = Action(uid, step, params, dict(inputs))
        if target not in a.targets:
            a.targets.append(target)
        return uid

    def packs(self, target: str) -> str | None:
        """The action naming the recipe packs the recipe extends (None: it extends none)."""
        from modelbuild.recipe.packs import packs_of

        versions = packs_of(self.recipe.files)
        return self.add(PACKS_STEP, {"packs": versions}, {}, target) if versions else None

    def file(self, rel: str, key_path: tuple[str, ...]) -> FileRef:
        from modelbuild.recipe.load import confined

        p, escape = confined(self.recipe.dir, rel, self.recipe.allow_outside_repo)
        if escape:
            raise self.recipe.error(
                key_path,
                escape,
                hint="move the file into the repository, or set "
                "`allow_outside_repo: true` if you mean it",
            )
        if not p.exists():
            raise self.recipe.error(
                key_path,
                f"file not found: {rel} (looked at {p})",
                hint="paths are relative to the recipe's folder",
            )
        return FileRef(str(p))

    def input_specs(self) -> list[dict[str, Any]]:
        return [{"name": n, **to_mapping(s)} for n, s in self.recipe.inputs.items()]

    def imported(self) -> dict[str, list[str]]:
        """What the model's code imported in the last build (the lock's ``imports``, found
        by the import itself in the worker): keyed before anything runs."""
        if self._imported is None:
            from modelbuild.store.lockfile import lock_imports

            self._imported = lock_imports(self.recipe)
        return self._imported

    def source_params(self) -> dict[str, Any]:
        s = self.recipe.source
        dists = self.imported()["distributions"] if s.framework in _LOADS_CODE else []
        return {
            "source": {
                "framework": s.framework,
                "model": s.model,
                "args": s.args,
                **s.load_options(),
                "trust_pickle": s.trust_pickle,
                "checkpoint": bool(s.checkpoint),
                **({"distributions": dists} if dists else {}),
            },
            "inputs": self.input_specs(),
            "outputs": self.recipe.outputs,
            "recipe_dir": str(self.recipe.dir),
        }

    def source_inputs(self) -> dict[str, Ref]:
        s = self.recipe.source
        out: dict[str, Ref] = {}
        if s.framework in _LOADS_CODE:
            if s.checkpoint:
                out["checkpoint"] = self.file(s.checkpoint, ("source", "checkpoint"))
            rdir = str(self.recipe.dir)
            for f in self.code_files():
                out[f"code:{Path(os.path.relpath(f.path, rdir)).as_posix()}"] = f
            declared = {k[len("code:") :] for k in out if k.startswith("code:")}
            for name in self.imported()["files"]:
                path = os.path.normpath(os.path.join(rdir, name))
                if name not in declared and os.path.isfile(path):
                    out[f"import:{name}"] = FileRef(path)  # found by the import: not confined
        else:
            out.update(self.model_file())
        return out

    def model_file(self) -> dict[str, Ref]:
        """The source model file, and for an ONNX one each external data file it names
        (confined to its folder, keyed by content: a changed weights.bin rebuilds)."""
        if self._model_file is not None:
            return dict(self._model_file)
        s = self.recipe.source
        ref = self.file(str(s.model), ("source", "model"))
        out: dict[str, Ref] = {"model_file": ref}
        if s.framework == "onnx":
            from modelbuild.formats.onnx.external import external_files

            try:
                files = external_files(Path(ref.path))
            except ModelBuildError as exc:
                raise self.recipe.error(("source", "model"), exc.message, hint=exc.hint) from exc
            base = Path(ref.path).parent
            for f in files:
                out[f"external:{f.relative_to(base.resolve()).as_posix()}"] = FileRef(str(f))
        self._model_file = out
        return dict(out)

    def code_files(self) -> list[FileRef]:
        s = self.recipe.source
        rdir = self.recipe.dir
        top = str(s.model).split(":", 1)[0].split(".", 1)[0]
        if top in sys.stdlib_module_names:  # os:system, subprocess:run, builtins:exec …
            raise self.recipe.error(
                ("source", "model"),
                f"'{s.model}' is from Python's standard library, not a model: refused",
                hint="a step runs only a torch.nn.Module subclass or a factory defined in the "
                "repository or in an installed distribution (see Trust in the README)",
            )
        if s.code:
            out: list[FileRef] = []
            for i, c in enumerate(s.code):
                ref = self.file(c, ("source", "code", str(i)))
                p = Path(ref.path)
                if p.is_dir():
                    from modelbuild.store.hashing import iter_files

                    # each file confined too: a symlink inside the folder may point outside
                    key = ("source", "code", str(i))
                    out.extend(self.file(os.path.relpath(f, rdir), key) for f in iter_files(p))
                else:
                    out.append(ref)
            return out
        module = str(s.model).split(":", 1)[0]
        base = rdir.joinpath(*module.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                return [self.file(str(cand.relative_to(rdir)), ("source", "model"))]
        raise self.recipe.error(
            ("source", "model"),
            f"module '{module}' not found next to the recipe (looked for {base}.py)",
            hint="`model` is module:callable, imported relative to the recipe's folder",
        )

    def onnx_base(self, target: str) -> Ref:
        """The fp32 ONNX every ONNX-derived target starts from."""
        r = self.recipe
        common = {
            "opset": r.opset,
            "inputs": self.input_specs(),
            "outputs": r.outputs,
            "recipe_name": r.name,
        }
        if r.source.framework == "onnx":
            return self.add("onnx_from_file", common, self.model_file(), target)
        return self.add(
            "onnx_from_torch", {**common, **self.source_params()}, self.source_inputs(), target
        )

    def verify_inputs(self, target: str) -> str:
        v = self.recipe.verify
        inputs: dict[str, Ref] = {}
        if v.data:
            inputs["data"] = self.file(v.data, ("verify", "data"))
        return self.add(
            "make_inputs",
            {"inputs": self.input_specs(), "samples": v.samples, "seed": v.seed},
            inputs,
            target,
        )

    def reference(self, target: str) -> str:
        ins = self.verify_inputs(target)
        return self.add(
            "reference", self.source_params(), {"inputs": ins, **self.source_inputs()}, target
        )


def make_plan(recipe: Recipe, only: list[str] | None = None) -> Plan:
    """Plan every target (or ``only`` those); unplannable targets land in ``errors``."""
    from modelbuild.step import get_step

    pl = Planner(recipe)
    targets: dict[str, TargetPlan] = {}
    errors: dict[str, ModelBuildError] = {}
    names = only if only else list(recipe.targets)
    choices = choices_of(recipe)
    for name, t in variants(recipe, names, choices):  # a precision list: one per candidate
        mod = format_module(t.format)
        before = dict(pl.actions)
        shared = {uid: list(a.targets) for uid, a in pl.actions.items()}
        try:
            art = mod.plan(pl, name, t)
        except RecipeError:
            raise
        except PlanError as exc:
            if exc.key_path is None:
                exc.key_path = f"targets.{name}"
            if SEP in name:  # a candidate of a precision list: said as the recipe wrote it
                base, prec = name.split(SEP, 1)
                exc.key_path = exc.key_path.replace(f"targets.{name}", f"targets.{base}", 1)
                exc.message = f"candidate {prec}: {exc.message}"
            errors[name] = exc
            pl.actions = before
            for uid, claims in shared.items():  # a refused target claims no shared action
                pl.actions[uid].targets = claims
            continue
        ver: str | None = None
        enabled = recipe.verify.enabled and (t.verify is None or t.verify.enabled)
        if enabled:
            ver = pl.add(
                "verify",
                {
                    "format": t.format,
                    "precision": t.precision,
                    "tolerance": tolerance_for(recipe, t),
                    "runner": mod.runner(t),
                    "inputs": [n for n in recipe.inputs],
                    "outputs": recipe.outputs,
                    "recipe_dir": str(recipe.dir),
                },
                {
                    "artifact": art,
                    "inputs": pl.verify_inputs(name),
                    "reference": pl.reference(name),
                },
                name,
            )
        targets[name] = TargetPlan(
            name, t.format, t.precision, art, ver, get_step(pl.actions[art].step).output
        )
    locked: dict[str, Any] = {}
    if choices:
        from modelbuild.store.lockfile import read_lock

        locked = read_lock(recipe).get("targets", {})
    chosen, rejected = settle_candidates(choices, names, targets, errors, locked)
    _assign_ids(pl.actions)
    return Plan(recipe, pl.actions, targets, errors, chosen, rejected)


def _assign_ids(actions: dict[str, Action]) -> None:
    by_step: dict[str, list[Action]] = {}
    for a in actions.values():
        by_step.setdefault(a.step, []).append(a)
    seen: set[str] = set()
    for step, group in by_step.items():
        for a in group:
            # verify is per target by nature: always name the target.
            base = step if len(group) == 1 and step != "verify" else f"{step}[{a.targets[0]}]"
            aid = base if base not in seen else f"{base}#{a.uid[:6]}"
            a.id = aid
            seen.add(aid)
