"""Loading model.build.yaml: safe YAML with positions, `extends`, validation.

Every error names file:line:column and the key path, and says what to do.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from modelbuild.errors import RecipeError
from modelbuild.params import from_mapping
from modelbuild.recipe.model import InputSpec, Source, Verify
from modelbuild.recipe.paths import RECIPE_FILENAME, find_recipe, output_dir, repo_root  # noqa: F401 (re-exported)
from modelbuild.recipe.yamlread import KeyPath, Position, load_yaml
from modelbuild.recipe.yamlread import format_path as format_path  # re-exported

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "recipes"
FORMAT_VERSION = 1


def deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base[k], v) if k in base else v
        return out
    return over


def _resolve_extends(
    ref: Any, here: Path, file: str, path: KeyPath, pos: dict[KeyPath, Position]
) -> Path:
    p = pos.get(path)
    where: dict[str, Any] = dict(
        file=file,
        line=p.line if p else None,
        column=p.column if p else None,
        key_path=format_path(path),
    )
    if not isinstance(ref, str) or not ref:
        raise RecipeError(
            "each `extends` entry must be a string: recipe:NAME or a relative path", **where
        )
    if ref.startswith("recipe:"):
        name = ref[len("recipe:") :]
        if "/" in name or "@" in name:  # an installed recipe pack: recipe:PACK/NAME[@SPEC]
            from modelbuild.recipe.packs import resolve

            return resolve(name, where)
        target = BUNDLED_DIR / f"{name}.yaml"
        if not target.is_file():
            known = sorted(f.stem for f in BUNDLED_DIR.glob("*.yaml"))
            raise RecipeError(
                f"no bundled recipe '{name}'", **where, hint=f"bundled recipes: {', '.join(known)}"
            )
        return target
    target, escape = confined(here.parent, ref, False)
    if escape:
        raise RecipeError(escape, **where, hint="keep extended recipes inside the repository")
    if not target.is_file():
        raise RecipeError(
            f"extended recipe '{ref}' not found (looked at {target})",
            **where,
            hint="paths in `extends` are relative to the recipe that names them",
        )
    return target


def _load_merged(
    path: Path,
    stack: tuple[Path, ...],
    positions: dict[KeyPath, Position],
    files: list[Path] | None = None,
) -> dict[str, Any]:
    display = _display(path)
    if files is not None:
        files.append(path)
    data, pos = load_yaml(path, display)
    if not isinstance(data, dict):
        raise RecipeError(
            "a recipe must be a mapping of keys to values",
            file=display,
            line=1,
            column=1,
            hint="start from `modelbuild init`",
        )
    merged: dict[str, Any] = {}
    ext = data.get("extends", [])
    if isinstance(ext, str):
        ext = [ext]
    if not isinstance(ext, list):
        p = pos.get(("extends",))
        raise RecipeError(
            "`extends` must be a list",
            file=display,
            line=p.line if p else None,
            column=p.column if p else None,
            key_path="extends",
        )
    for i, ref in enumerate(ext):
        target = _resolve_extends(ref, path, display, ("extends", str(i)), pos)
        if target in stack or target == path:
            p = pos.get(("extends", str(i)))
            chain = " -> ".join(_display(s) for s in stack + (path, target))
            raise RecipeError(
                f"`extends` cycle: {chain}",
                file=display,
                line=p.line if p else None,
                column=p.column if p else None,
                key_path=f"extends[{i}]",
                hint="remove one link of the cycle",
            )
        base = _load_merged(target, stack + (path,), positions, files)
        merged = deep_merge(merged, base)
    own = {k: v for k, v in data.items() if k != "extends"}
    positions.update({k: v for k, v in pos.items() if k[:1] != ("extends",)})
    return cast(dict[str, Any], deep_merge(merged, own))


def confined(base: Path, rel: str, allow_outside: bool) -> tuple[Path, str | None]:
    """Resolve ``rel`` against ``base``; say why if it escapes the repository (or is a
    symlink loop, which no path reaches the end of)."""
    try:
        p = (base / rel).resolve()
    except (RuntimeError, OSError):  # pathlib: "Symlink loop from ..."
        return base / rel, f"'{rel}' is a symlink loop ({base / rel})"
    if allow_outside:
        return p, None
    root = repo_root(base.resolve())
    if p == root or root in p.parents:
        return p, None
    how = (
        "an absolute path"
        if Path(rel).is_absolute()
        else "'..'"
        if ".." in Path(rel).parts
        else "a symlink"
    )
    return p, (f"'{rel}' resolves to {p}, outside the recipe's repository {root} (through {how})")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class Recipe:
    """A loaded, merged and validated recipe."""

    path: Path
    data: dict[str, Any]
    positions: dict[KeyPath, Position] = field(repr=False)
    source: Source
    inputs: dict[str, InputSpec]
    outputs: list[str]
    opset: int
    verify: Verify
    targets: dict[str, Any]  # name → format-specific target params
    output_dir: str
    allow_outside_repo: bool = False
    files: list[Path] = field(default_factory=list)  # this recipe and every file it extends

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def dir(self) -> Path:
        return self.path.parent

    def where(self, key_path: KeyPath) -> dict[str, Any]:
        """file/line/column kwargs for a RecipeError about ``key_path`` (or its nearest parent)."""
        kp = tuple(key_path)
        while kp and kp not in self.positions:
            kp = kp[:-1]
        p = self.positions.get(kp)
        return {
            "file": p.file if p else _display(self.path),
            "line": p.line if p else None,
            "column": p.column if p else None,
            "key_path": format_path(key_path),
        }

    def error(self, key_path: KeyPath, message: str, hint: str | None = None) -> RecipeError:
        return RecipeError(message, hint=hint, **self.where(key_path))


def load_recipe(path: str | Path | None = None) -> Recipe:
    rpath = find_recipe(str(path) if path is not None else None)
    positions: dict[KeyPath, Position] = {}
    files: list[Path] = []
    data = _load_merged(rpath, (), positions, files)
    from modelbuild.recipe.schema import validate

    validate(data, positions, _display(rpath))
    recipe = _typed(rpath, data, positions)
    recipe.files = files
    return recipe


def _typed(rpath: Path, data: dict[str, Any], positions: dict[KeyPath, Position]) -> Recipe:
    from modelbuild.formats import target_class
    from modelbuild.recipe.choose import first_candidate

    targets: dict[str, Any] = {}
    for name, t in data.get("targets", {}).items():
        t = first_candidate(name, t, positions, _display(rpath))  # precision: [a, b] → a
        targets[name] = from_mapping(target_class(t["format"]), t)
    recipe = Recipe(
        path=rpath,
        data=data,
        positions=positions,
        source=from_mapping(Source, data["source"]),
        inputs={k: from_mapping(InputSpec, v) for k, v in data["inputs"].items()},
        outputs=list(data.get("outputs", [])),
        opset=int(data.get("opset", 17)),
        verify=from_mapping(Verify, data.get("verify", {})),
        targets=targets,
        output_dir=output_dir(rpath, data),  # dist, or dist/NAME for NAME.build.yaml
        allow_outside_repo=bool(data.get("allow_outside_repo", False)),
    )
    _check_semantics(recipe)
    return recipe


def _check_semantics(r: Recipe) -> None:
    """Rules the schema cannot express."""
    src = r.source
    if src.framework in ("pytorch", "lightning"):
        if not src.model or ":" not in src.model:
            raise r.error(
                ("source", "model"),
                "pytorch sources need `model: module:callable`",
                hint="e.g. model: models.tiny_cnn:TinyCNN",
            )
    elif not src.model:
        raise r.error(
            ("source", "model"), f"{src.framework} sources need `model: PATH` to the model file"
        )
    _check_names(r)
    sizes: dict[str, tuple[int, str]] = {}  # symbolic axis name → (declared size, where)
    for name, spec in r.inputs.items():
        for axis, symbol in spec.dynamic.items():
            if int(axis) >= len(spec.shape):
                raise r.error(
                    ("inputs", name, "dynamic", axis),
                    f"axis {axis} does not exist in shape {spec.shape}",
                    hint=f"axes are 0..{len(spec.shape) - 1}"
                    if spec.shape
                    else "a scalar input (shape []) has no axes: remove `dynamic`",
                )
            size, where = sizes.setdefault(symbol, (spec.shape[int(axis)], f"{name}[{axis}]"))
            if size != spec.shape[int(axis)]:
                raise r.error(
                    ("inputs", name, "dynamic", axis),
                    f"axis '{symbol}' is {spec.shape[int(axis)]} here but {size} at {where}: "
                    "axes of one name always have one size",
                    hint="give the two axes the same size, or different names",
                )
        _check_input_size(r, name, spec)
        if spec.range is not None and spec.range[0] > spec.range[1]:
            raise r.error(
                ("inputs", name, "range"), "range low is above high", hint="write [low, high]"
            )
    _, escape = confined(r.dir, r.output_dir, r.allow_outside_repo)
    if escape:
        raise r.error(("output_dir",), escape, hint="set `allow_outside_repo: true` to allow it")
    from modelbuild.store.publish import output_dir_problem

    sources = _source_paths(r)
    for src_path in sources:
        _, loop = confined(src_path.parent, src_path.name, True)
        if loop:
            raise r.error(("source",), loop, hint="point the recipe at the file itself")
    clash = output_dir_problem(r.path, r.output_dir, list(r.targets), sources)
    if clash:
        raise r.error(
            ("output_dir",),
            clash,
            hint="publish into a folder of its own (the default `dist`), or rename the target",
        )
    if not r.targets:
        raise r.error(
            ("targets",),
            "no targets",
            hint="add at least one, e.g. onnx: {format: onnx, precision: fp32}",
        )
    from modelbuild.formats import check_target

    for name, t in r.targets.items():
        check_target(r, name, t)


MAX_NAME = 100  # target folders carry suffixes (.old-PID-…); file names stop at 255 bytes
MAX_INPUT_BYTES = 2 << 30  # one generated input array (the parity gate holds several)


def _check_names(r: Recipe) -> None:
    if r.verify.seed < 0:
        raise r.error(("verify", "seed"), f"seed {r.verify.seed} is negative", hint="use 0 or more")
    names = [(("name",), r.name)] + [(("targets", t), t) for t in r.targets]
    for path, name in names:
        if len(name) > MAX_NAME:
            raise r.error(
                path,
                f"the name is {len(name)} characters long; at most {MAX_NAME}",
                hint="names become folder and file names: shorten it",
            )


def _check_input_size(r: Recipe, name: str, spec: InputSpec) -> None:
    """Refuse, before anything allocates it, an input too large to generate or hold."""
    import math

    shape = list(spec.shape)
    for axis in spec.dynamic:  # the gate also tries a larger size of each dynamic axis
        n = shape[int(axis)]
        shape[int(axis)] = 2 if n == 1 else n + max(1, n // 2)
    size = math.prod(shape) * 8  # values are drawn as float64, then cast
    if size > MAX_INPUT_BYTES:
        raise r.error(
            ("inputs", name, "shape"),
            f"generating an input of shape {shape} takes {size / (1 << 30):.1f} GiB; "
            f"at most {MAX_INPUT_BYTES >> 30} GiB",
            hint="declare the shape of one example (batch 1, a typical size); "
            "mark the axes that vary as `dynamic`",
        )


def _source_paths(r: Recipe) -> list[Path]:
    """Files the recipe reads (checkpoint, code, model file, data): never published over."""
    rels: list[str] = [*(r.source.code or [])]
    if r.source.checkpoint:
        rels.append(r.source.checkpoint)
    if r.source.model and ":" not in r.source.model:
        rels.append(r.source.model)
    if r.verify.data:
        rels.append(r.verify.data)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "data" and isinstance(v, str):
                    rels.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(r.data.get("targets"))
    return [r.dir / rel for rel in rels]


def suggest(word: str, options: list[str]) -> str | None:
    close = difflib.get_close_matches(word, options, n=1)
    return close[0] if close else None


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
