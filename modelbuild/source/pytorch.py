"""Loading the source model inside a worker (imports torch; never in the main process)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelbuild.errors import SourceError
from modelbuild.parity.inputs import generate

if TYPE_CHECKING:
    from numpy.typing import NDArray


def _import_callable(spec: str, recipe_dir: Path) -> Any:
    module, _, attr = spec.partition(":")
    root = str(recipe_dir)
    if root not in sys.path:
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
    return obj


def load_state_dict(path: Path, trust_pickle: bool) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise SourceError(f"cannot read checkpoint {path.name}: {exc}") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if (
            "weights_only" in str(exc)
            or "Unsupported global" in str(exc)
            or type(exc).__name__ == "UnpicklingError"
        ):
            if not trust_pickle:
                raise SourceError(
                    f"checkpoint {path.name} needs full pickle to load, which can run arbitrary "
                    "code; refused",
                    hint="re-save it as .safetensors or a plain state_dict, or set "
                    "`source.trust_pickle: true` if you trust the file",
                ) from None
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        else:
            raise SourceError(f"cannot read checkpoint {path.name}: {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # Lightning and many training loops wrap it
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise SourceError(f"checkpoint {path.name} holds a {type(obj).__name__}, not a state_dict")
    return obj


def load_torch_model(params: dict[str, Any], inputs: dict[str, Path], recipe_dir: Path) -> Any:
    """The source model in eval mode, weights loaded."""
    import torch

    src = params["source"]
    if src["framework"] == "torchscript":
        return torch.jit.load(str(inputs["model_file"]), map_location="cpu").eval()
    factory = _import_callable(src["model"], recipe_dir)
    # Weights the checkpoint does not set (or all, without one) must be the same in
    # every worker: the reference and the export run in different processes.
    torch.manual_seed(0)
    try:
        model = factory(**(src.get("args") or {}))
    except TypeError as exc:
        raise SourceError(
            f"cannot build the model with args {src.get('args')}: {exc}", hint="check `source.args`"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise SourceError(
            f"{src['model']} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    if "checkpoint" in inputs:
        sd = load_state_dict(inputs["checkpoint"], bool(src.get("trust_pickle")))
        own = model.state_dict()
        wrong = [
            f"{k} {list(v.shape)} in the checkpoint, {list(own[k].shape)} in the model"
            for k, v in sd.items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
        ]
        if wrong:
            raise SourceError(
                "the checkpoint does not match the model: shape mismatch for "
                + "; ".join(wrong[:10])
                + (f" (+{len(wrong) - 10} more)" if len(wrong) > 10 else ""),
                hint="check `source.args` (layer sizes) against the checkpoint",
            )
        result = model.load_state_dict(sd, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        if (missing or unexpected) and src.get("strict", True):
            parts = []
            if missing:
                parts.append(
                    f"missing keys: {', '.join(missing[:10])}"
                    + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
                )
            if unexpected:
                parts.append(
                    f"unexpected keys: {', '.join(unexpected[:10])}"
                    + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else "")
                )
            raise SourceError(
                "the checkpoint does not match the model: " + "; ".join(parts),
                hint="check `source.args` and the checkpoint, or set "
                "`source.strict: false` to load what matches",
            )
    return model.eval()


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


def check_forward(model: Any, arrays: dict[str, NDArray[Any]], names: list[str]) -> None:
    """Run the model once on example inputs; a rejection is a bad recipe, not a crash."""
    try:
        run_torch(model, arrays, names)
    except Exception as exc:
        shapes = ", ".join(f"{n}: {list(a.shape)} {a.dtype}" for n, a in arrays.items())
        raise SourceError(
            f"the model rejected the declared inputs ({shapes}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            hint="fix `inputs` (order, shapes, dtypes) to match the model's forward()",
        ) from None
