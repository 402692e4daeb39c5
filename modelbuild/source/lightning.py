"""A LightningModule and its `.ckpt`, built as ``load_from_checkpoint`` builds it: the
class called with the checkpoint's saved hyper-parameters (the recipe's `args` win), its
``on_load_checkpoint`` hook run, then the checkpoint's ``state_dict`` applied through the
same checks as any checkpoint (ties, allow_missing/allow_unexpected).

Imports torch: runs inside a worker, never in the main process.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Any

from modelbuild.errors import SourceError

INSTALL_HINT = "pip install 'modelbuild[lightning]' -c constraints.txt"
# where Lightning has kept the hyper-parameters over its versions (newest last)
HPARAMS_KEYS = ("module_arguments", "hparams", "hyper_parameters")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_lightning() -> None:
    if not any(_importable(m) for m in ("lightning", "pytorch_lightning")):
        raise SourceError(
            "`framework: lightning` needs the lightning package, which is not installed",
            hint=INSTALL_HINT,
        )


def init_kwargs(cls: Any, ckpt: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``load_from_checkpoint`` would call ``cls`` with."""
    saved: dict[str, Any] = {}
    if isinstance(ckpt, dict):
        for k in HPARAMS_KEYS:
            v = ckpt.get(k)
            if isinstance(v, dict):
                saved.update(v)
            elif v is not None and hasattr(v, "__dict__"):  # an argparse.Namespace
                saved.update(vars(v))
    params = inspect.signature(cls.__init__).parameters
    names = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL,)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    name = ckpt.get("hparams_name") if isinstance(ckpt, dict) else None
    if name and name in names:  # __init__(self, hparams) style
        return {name: saved, **args}
    if not takes_any:
        saved = {k: v for k, v in saved.items() if k in names}
    return {**saved, **args}


def build_lightning(factory: Any, src: dict[str, Any], ckpt: Any) -> Any:
    """The LightningModule with the checkpoint's hyper-parameters (weights not yet applied)."""
    import torch

    kwargs = init_kwargs(factory, ckpt, dict(src.get("args") or {}))
    torch.manual_seed(0)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise SourceError(
            f"cannot build {src['model']} with the checkpoint's hyper-parameters and `args` "
            f"({sorted(kwargs)}): {exc}",
            hint="check `source.args` against the LightningModule's __init__",
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise SourceError(f"{src['model']} returned a {type(model).__name__}, not a module")
    # as LightningModule.to_torchscript does while it traces: a module with no Trainer
    # otherwise raises when the tracer reads its `trainer` property
    if hasattr(type(model), "_jit_is_scripting"):
        setattr(model, "_jit_is_scripting", True)  # noqa: B010 (an nn.Module attribute)
    hook = getattr(model, "on_load_checkpoint", None)
    if callable(hook) and isinstance(ckpt, dict):
        hook(ckpt)
    return model


def checkpoint_path(inputs: dict[str, Path]) -> Path:
    if "checkpoint" not in inputs:
        raise SourceError(
            "`framework: lightning` needs `source.checkpoint` (the .ckpt file)",
            hint="set `source.checkpoint: PATH.ckpt`",
        )
    return inputs["checkpoint"]
