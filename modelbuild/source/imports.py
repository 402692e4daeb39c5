"""What the model's code imports, found by the import itself (in the worker), and which
callables a step may run.

While the model module is imported and its factory called, every ``import`` statement a
module of the repository executes is recorded (``builtins.__import__`` sees imports of
modules already loaded too). The repository's modules are first removed from
``sys.modules``, so they execute again: what is found does not depend on what an earlier
action in the same worker imported. Each module found is classified by where its file is:

- in an installed distribution (transformers, timm, …): the distribution, whose version
  enters the key;
- in the standard library, or built in: nothing (the interpreter is not keyed);
- in the repository: the file, by content (repository-relative in the key and the lock);
- anywhere else (a ``PYTHONPATH`` folder outside the repository): the file, by content,
  by its absolute path. Only what the repository's modules import directly: a module
  outside is not executed again (what it imports in turn is not followed), and modules
  another recipe left in the process are never counted.

The worker reads the result with ``take()`` and re-keys the action with it; the lock
stores it (``imports``) so the next plan keys those files before anything runs.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import inspect
import os
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from modelbuild.errors import SourceError

_PKG = str(Path(__file__).resolve().parent.parent)  # modelbuild itself is keyed otherwise
# Modules never purged nor recorded: modelbuild and a test runner's own modules.
_PROTECTED = ("modelbuild", "tests", "conftest", "_pytest", "pytest", "__main__")


@dataclass
class Found:
    files: set[str] = field(default_factory=set)  # absolute paths (repository or outside)
    distributions: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, list[str]]:
        return {"files": sorted(self.files), "distributions": sorted(self.distributions)}


_FOUND: Found | None = None


def reset() -> None:
    global _FOUND
    _FOUND = None


def take() -> dict[str, list[str]] | None:
    """What the last model load(s) since ``reset`` imported; None when nothing was loaded."""
    global _FOUND
    found, _FOUND = _FOUND, None
    return None if found is None else found.to_json()


@contextlib.contextmanager
def captured() -> Iterator[list[Found | None]]:
    """What the body's model load imports, on its own (for a per-worker model cache to
    replay): yields a list whose one item is then that Found (None when the body watched
    no import), which is also added to what this action has found so far."""
    global _FOUND
    outer = _FOUND
    _FOUND = None
    box: list[Found | None] = [None]
    try:
        yield box
    finally:
        box[0], _FOUND = _FOUND, outer
        if box[0] is not None:
            replay(box[0])


def replay(found: Found | None) -> None:
    """Record ``found`` as imported by this action (a model served from the worker's cache
    was imported once, by an earlier action); None records nothing."""
    global _FOUND
    if found is None:
        return
    if _FOUND is None:
        _FOUND = Found()
    _FOUND.files |= found.files
    _FOUND.distributions |= found.distributions


# -- where a module lives --------------------------------------------------------------
_DIST_OF: dict[str, list[str]] | None = None


def _dists_of(top: str) -> list[str]:
    global _DIST_OF
    if _DIST_OF is None:
        _DIST_OF = dict(metadata.packages_distributions())
    return _DIST_OF.get(top, [])


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


_STDLIB = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    | {os.path.realpath(sys.base_prefix)}
)


def module_file(mod: Any) -> str | None:
    f = getattr(mod, "__file__", None)
    return os.path.realpath(f) if isinstance(f, str) else None


def _installed(file: str) -> bool:
    """A file of an installed distribution: under a site-packages (dist-packages) folder.
    Never purged: an installed package is imported once per process."""
    return any(part in ("site-packages", "dist-packages") for part in Path(file).parts)


def classify(name: str, file: str | None, repo: str) -> tuple[str, str | None]:
    """(kind, what): ("dist", "name[,name]") | ("repo", file) | ("outside", file) |
    ("std", None)."""
    top = name.split(".", 1)[0]
    if file is None or top in sys.builtin_module_names:
        return "std", None
    if _under(file, _PKG) or top == "modelbuild":
        return "std", None
    if _installed(file):
        dists = sorted(_dists_of(top))  # a namespace package may come from several
        return ("dist", ",".join(dists)) if dists else ("std", None)
    if top in sys.stdlib_module_names and any(_under(file, s) for s in _STDLIB):
        return "std", None
    if _under(file, repo):
        return "repo", file
    return "outside", file


def _purge(repo: str, top: str) -> None:
    """Forget the repository's (and the model package's) modules so they execute again."""
    for name, mod in list(sys.modules.items()):
        if name.split(".", 1)[0] in _PROTECTED:
            continue
        f = module_file(mod)
        if name.split(".", 1)[0] == top or (f is not None and classify(name, f, repo)[0] == "repo"):
            del sys.modules[name]


# -- the watch -------------------------------------------------------------------------
@contextlib.contextmanager
def watching(module: str, repo: Path) -> Iterator[Found]:
    """Record what the code imports while the body imports ``module`` and builds the model."""
    global _FOUND
    root = os.path.realpath(repo)
    _purge(root, module.split(".", 1)[0])
    found = _FOUND if _FOUND is not None else Found()
    _FOUND = found
    seen: list[tuple[str, tuple[str, ...]]] = []
    original = builtins.__import__

    def hook(
        name: str,
        globals: dict[str, Any] | None = None,  # noqa: A002 - __import__'s own signature
        locals: Any = None,  # noqa: A002
        fromlist: Any = (),
        level: int = 0,
    ) -> ModuleType:
        mod = original(name, globals, locals, fromlist, level)
        caller = (globals or {}).get("__file__")
        who = str((globals or {}).get("__name__", ""))
        if isinstance(caller, str) and classify(who, os.path.realpath(caller), root)[0] == "repo":
            absname = name
            if level:
                pkg = (globals or {}).get("__package__") or ""
                with contextlib.suppress(ImportError, ValueError):
                    absname = importlib.util.resolve_name("." * level + name, pkg)
            seen.append((absname, tuple(fromlist or ())))
        return mod

    builtins.__import__ = hook  # type: ignore[assignment]
    try:
        yield found
    finally:
        builtins.__import__ = original
        names = {module, *(n for n, _ in seen)}
        for n, fl in seen:
            names.update(f"{n}.{f}" for f in fl if f != "*")
        for n in list(names):  # a module's parent packages ran too
            parts = n.split(".")
            names.update(".".join(parts[:i]) for i in range(1, len(parts)))
        for n, mod in list(sys.modules.items()):  # imported by other means (import_module)
            if n.split(".", 1)[0] not in _PROTECTED and mod is not None:
                kind, _ = classify(n, module_file(mod), root)
                if kind == "repo":
                    names.add(n)
        for n in names:
            _note(found, n, sys.modules.get(n), root)


def _note(found: Found, name: str, mod: Any, repo: str) -> None:
    if mod is None or name.split(".", 1)[0] in _PROTECTED:
        return
    kind, what = classify(name, module_file(mod), repo)
    if kind == "dist" and what:
        found.distributions.update(what.split(","))
    elif kind in ("repo", "outside") and what:
        found.files.add(what)


def note_model(model: Any, repo: Path) -> None:
    """The distributions the built model's classes come from (a factory of a library)."""
    if _FOUND is None:
        return
    root = os.path.realpath(repo)
    mods = {type(m).__module__ for m in model.modules()} if hasattr(model, "modules") else set()
    for n in mods | {type(model).__module__}:
        _note(_FOUND, n, sys.modules.get(n), root)


# -- which callables a step runs -------------------------------------------------------
def check_callable(obj: Any, spec: str, repo: Path) -> None:
    """Refuse, before calling it, anything but an ``nn.Module`` subclass or a factory defined
    in the repository or an installed distribution (``os:system`` is neither)."""
    import torch

    if inspect.isclass(obj):
        if issubclass(obj, torch.nn.Module):
            return
        where = f"class {obj.__module__}.{obj.__qualname__}, not a torch.nn.Module subclass"
    elif inspect.isfunction(obj) or inspect.ismethod(obj):
        func = inspect.unwrap(obj.__func__ if inspect.ismethod(obj) else obj)
        mod = sys.modules.get(func.__module__ or "")
        kind, _ = classify(func.__module__ or "", module_file(mod), os.path.realpath(repo))
        if kind in ("repo", "dist"):
            return
        place = {"std": "Python's standard library", "outside": "a module outside the repository"}
        where = f"a function from {place[kind]} ({func.__module__})"
    else:
        where = f"a {type(obj).__name__}, not a class or a Python function"
    raise SourceError(
        f"source.model: {spec} is {where}: refused before anything was called",
        hint="a step runs only a torch.nn.Module subclass or a factory function defined in "
        "the repository or in an installed distribution (see Trust in the README)",
    )
