"""Loading the source model inside a worker (imports torch; never in the main process)."""

from __future__ import annotations

import importlib
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbuild.errors import SourceError
from modelbuild.parity.inputs import generate
from modelbuild.recipe.paths import repo_root
from modelbuild.source import imports
from modelbuild.source.checkpoint import LoadReport, apply_checkpoint, state_digest

if TYPE_CHECKING:
    from numpy.typing import NDArray


def _import_callable(spec: str, recipe_dir: Path) -> Any:
    """``module:callable``, imported from the recipe's folder first (never an earlier
    recipe's package of the same name), refused unless a step may run it."""
    module, _, attr = spec.partition(":")
    root = str(recipe_dir)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        raise SourceError(
            f"cannot import model module '{module}': {type(exc).__name__}: {exc}",
            hint="`source.model` is module:callable relative to the recipe's folder",
        ) from exc
    try:
        obj = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise SourceError(
            f"module '{module}' has no '{attr}'", hint=f"check `source.model: {spec}`"
        ) from None
    imports.check_callable(obj, spec, repo_root(recipe_dir))
    return obj


# model → what its load applied; read by the steps through ``load_meta``
_REPORTS: weakref.WeakKeyDictionary[Any, LoadReport] = weakref.WeakKeyDictionary()


def load_report(model: Any) -> LoadReport | None:
    return _REPORTS.get(model)


def load_meta(model: Any) -> dict[str, Any]:
    """Step metadata of a loaded model: ``source_state`` (digest of the state applied, what
    was not loaded) and the load's ``notices``."""
    r = _REPORTS.get(model)
    if r is None:
        return {}
    return {"source_state": r.meta(), "notices": list(r.notices)}


# The source model this worker built last, for the next action that needs the same one
# (reference, export, trace of one recipe): the checkpoint is read and the model built once
# per worker. One entry: a big model is held once, and a new one replaces it.
_MODELS: dict[str, tuple[Any, imports.Found | None, dict[str, list[int]]]] = {}
MODEL_ROLES = ("checkpoint", "model_file", "code:")  # the inputs a model is built from


def model_key(params: dict[str, Any], inputs: dict[str, Path], recipe_dir: Path) -> str:
    """What identifies a built source model within a worker: the source spec and the stat
    stamps (size, mtime, inode, ctime) of the files it is built from."""
    import os

    from modelbuild.store.hashing import digest_json

    files = {}
    for role, path in sorted(inputs.items()):
        if role.startswith(MODEL_ROLES):
            st = os.stat(path)
            files[role] = [str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    return digest_json({"source": params["source"], "dir": str(recipe_dir), "files": files})


def load_torch_model(params: dict[str, Any], inputs: dict[str, Path], recipe_dir: Path) -> Any:
    """The source model in eval mode, weights loaded; built once per worker for every
    action that asks for the same one (see ``model_key``)."""
    key = model_key(params, inputs, recipe_dir)
    hit = _MODELS.get(key)
    if hit is not None and _stamps(hit[1]) == hit[2]:  # nor any module it imported changed
        imports.replay(hit[1])  # its code was imported once, for every action it serves
        return hit[0]
    _MODELS.clear()  # release the previous model before building the next
    with imports.captured() as found:
        model = _build_torch_model(params, inputs, recipe_dir)
    _MODELS[key] = (model, found[0], _stamps(found[0]))
    return model


def _stamps(found: imports.Found | None) -> dict[str, list[int]]:
    import os

    out: dict[str, list[int]] = {}
    for f in sorted(found.files) if found is not None else []:
        try:
            st = os.stat(f)
            out[f] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        except OSError:
            out[f] = []
    return out


def _build_torch_model(params: dict[str, Any], inputs: dict[str, Path], recipe_dir: Path) -> Any:
    import torch

    src = params["source"]
    if src["framework"] == "torchscript":
        ts = torch.jit.load(str(inputs["model_file"]), map_location="cpu").eval()
        _REPORTS[ts] = LoadReport(state_digest=state_digest(ts), tensors=len(ts.state_dict()))
        return ts
    if src["framework"] == "exported-program":
        from modelbuild.source.exported import load_exported

        module, program = load_exported(inputs["model_file"])
        _REPORTS[module] = LoadReport(
            state_digest=state_digest(program), tensors=len(program.state_dict())
        )
        return module
    if src["framework"] == "lightning":
        return _load_lightning(src, inputs, recipe_dir)
    repo = repo_root(recipe_dir)
    with imports.watching(src["model"].partition(":")[0], repo):  # what the code imports
        factory = _import_callable(src["model"], recipe_dir)
        # Weights the checkpoint does not set (or all, without one) must be the same in
        # every worker: the reference and the export run in different processes.
        torch.manual_seed(0)
        try:
            model = factory(**(src.get("args") or {}))
        except TypeError as exc:
            raise SourceError(
                f"cannot build the model with args {src.get('args')}: {exc}",
                hint="check `source.args`",
            ) from exc
    imports.note_model(model, repo)
    if not isinstance(model, torch.nn.Module):
        raise SourceError(
            f"{src['model']} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if "checkpoint" in inputs:
        report = apply_checkpoint(model, inputs["checkpoint"], src)
    else:
        report = LoadReport(state_digest=state_digest(model), tensors=len(model.state_dict()))
    model = model.eval()
    _REPORTS[model] = report
    return model


def _load_lightning(src: dict[str, Any], inputs: dict[str, Path], recipe_dir: Path) -> Any:
    from modelbuild.source.checkpoint import read_checkpoint
    from modelbuild.source.lightning import build_lightning, checkpoint_path, require_lightning

    require_lightning()
    path = checkpoint_path(inputs)
    ckpt = read_checkpoint(path, bool(src.get("trust_pickle")))
    repo = repo_root(recipe_dir)
    with imports.watching(src["model"].partition(":")[0], repo):
        model = build_lightning(_import_callable(src["model"], recipe_dir), src, ckpt)
    imports.note_model(model, repo)
    report = apply_checkpoint(model, path, src, obj=ckpt)
    model = model.eval()
    _REPORTS[model] = report
    return model


def example_arrays(specs: list[dict[str, Any]], seed: int = 0) -> dict[str, NDArray[Any]]:
    return generate(specs, 1, seed)[0]


def to_tensors(arrays: dict[str, NDArray[Any]], names: list[str]) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in names)


def run_torch(model: Any, arrays: dict[str, NDArray[Any]], names: list[str]) -> list[NDArray[Any]]:
    import torch

    with torch.no_grad():
        out = model(*to_tensors(arrays, names))
    return flatten_outputs(out)


def flatten_outputs(out: Any) -> list[NDArray[Any]]:
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)):
        out = [out]
    flat = []
    for o in out:
        if isinstance(o, (list, tuple, dict)):
            flat.extend(flatten_outputs(o))
        else:
            flat.append(o.detach().cpu().numpy() if hasattr(o, "detach") else np.asarray(o))
    return flat


def out_of_memory(exc: BaseException) -> bool:
    """An allocation failure (torch's, or Python's MemoryError), not a rejection."""
    import torch

    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text or ("can't allocate memory" in text and "bytes" in text)


def check_forward(model: Any, arrays: dict[str, NDArray[Any]], names: list[str]) -> None:
    """Run the model once on example inputs; a rejection is a bad recipe, not a crash."""
    try:
        run_torch(model, arrays, names)
    except Exception as exc:
        shapes = ", ".join(f"{n}: {list(a.shape)} {a.dtype}" for n, a in arrays.items())
        if out_of_memory(exc):
            raise SourceError(
                f"the model ran out of memory in forward() at the declared inputs ({shapes}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                hint="declare smaller `inputs` shapes (the check and export run at them), "
                "or build on a machine with more memory",
            ) from None
        raise SourceError(
            f"the model rejected the declared inputs ({shapes}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            hint="fix `inputs` (order, shapes, dtypes) to match the model's forward()",
        ) from None
