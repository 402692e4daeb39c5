"""What `modelbuild init --model module:Class` can tell about a model without asking.

The model is imported and made once (with ``args``). Its inputs are proposed from, in
order of trust: a Hugging Face model's ``main_input_name`` and config (vocabulary,
channels, image size); the first Conv1d/2d/3d, Linear, Embedding or RNN layer, whose
sizes are read from the checkpoint when one is given (its tensors win over the
constructor's defaults); the forward signature for the input's name. A candidate shape
is kept only if a forward pass at it runs; a dynamic axis only if a second size runs
too. The outputs are named from what that forward returned (a Hugging Face output's
keys, else output / output_N).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import UsageError


@dataclass
class Proposal:
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe `inputs`
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how each thing was found

    @property
    def found(self) -> bool:
        return bool(self.inputs)


@dataclass(frozen=True)
class _Candidate:
    dtype: str
    shapes: list[list[int]]  # tried in order; the first that runs is proposed
    dynamic: dict[int, str]
    range: list[float]
    why: str


def _checkpoint_state(path: Path, model: Any) -> dict[str, Any]:
    from modelbuild.source.checkpoint import read_checkpoint, strip_prefixes, unwrap

    sd, _, _ = unwrap(read_checkpoint(path, trust_pickle=False), path.name, None)
    sd, _ = strip_prefixes(dict(sd), set(model.state_dict()), None)
    return sd


def _weight_shape(module_name: str, layer: Any, state: dict[str, Any]) -> tuple[list[int], str]:
    """A layer's weight shape: the checkpoint's tensor where it has one, else the model's."""
    attr = "weight_ih_l0" if hasattr(layer, "weight_ih_l0") else "weight"
    key = f"{module_name}.{attr}" if module_name else attr
    if key in state:
        return list(state[key].shape), "checkpoint"
    w: Any = getattr(layer, attr, None)
    return (list(w.shape) if hasattr(w, "shape") else []), "model"


def _first_layer(model: Any, state: dict[str, Any]) -> _Candidate | None:
    import torch.nn as nn

    for name, m in model.named_modules():
        shape, src = _weight_shape(name, m, state)
        label = f"the first layer `{name or type(m).__name__}` ({type(m).__name__}, from the {src})"
        if isinstance(m, nn.Embedding) and len(shape) == 2:
            n = shape[0]
            return _Candidate(
                "int64",
                [[1, s] for s in (128, 64, 16)],
                {0: "batch", 1: "sequence"},
                [0, n - 1],
                f"{label}: token ids below num_embeddings {n}",
            )
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and len(shape) >= 3:
            c = shape[1] * m.groups
            dims = len(shape) - 2
            sizes = {1: (16000, 3000, 1024, 256, 64), 2: (224, 128, 64, 32, 28), 3: (16, 8, 4)}
            if dims == 3:
                shapes = [[1, c, d, 4 * d + 48, 4 * d + 48] for d in sizes[3]]
            else:
                shapes = [[1, c] + [s] * dims for s in sizes[dims]]
            return _Candidate(
                "float32", shapes, {0: "batch"}, [0.0, 1.0], f"{label}: {c} input channels"
            )
        if isinstance(m, nn.Linear) and len(shape) == 2:
            f = shape[1]
            return _Candidate(
                "float32", [[1, f]], {0: "batch"}, [-1.0, 1.0], f"{label}: {f} input features"
            )
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)) and len(shape) == 2:
            f = shape[1]
            bf = bool(m.batch_first)
            shapes = [[1, t, f] if bf else [t, 1, f] for t in (32, 16)]
            axis = 0 if bf else 1
            return _Candidate(
                "float32", shapes, {axis: "batch"}, [-1.0, 1.0], f"{label}: {f} input features"
            )
    return None


def _hf_candidate(model: Any, first: _Candidate | None) -> tuple[str | None, _Candidate | None]:
    """A Hugging Face model's main input, shaped from its config where it says."""
    name = getattr(model, "main_input_name", None)
    cfg: Any = getattr(model, "config", None)
    if not isinstance(name, str):
        return None, first
    if name == "input_ids" and getattr(cfg, "vocab_size", None):
        v = int(cfg.vocab_size)
        return name, _Candidate(
            "int64",
            [[1, s] for s in (16, 8)],
            {0: "batch", 1: "sequence"},
            [0, v - 1],
            f"main_input_name input_ids and config.vocab_size {v}",
        )
    if name == "pixel_values" and getattr(cfg, "image_size", None):
        size = cfg.image_size if isinstance(cfg.image_size, int) else cfg.image_size[0]
        c = int(getattr(cfg, "num_channels", 3))
        return name, _Candidate(
            "float32",
            [[1, c, int(size), int(size)]],
            {0: "batch"},
            [0.0, 1.0],
            f"main_input_name pixel_values, config.num_channels {c}, config.image_size {size}",
        )
    return name, first


def _inputs_of(model: Any) -> list[str]:
    """The forward's required parameters, in order."""
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


def _tensor(c: _Candidate, shape: list[int]) -> Any:
    import torch

    if c.dtype == "int64":
        return torch.randint(int(c.range[0]), int(c.range[1]) + 1, shape)
    return torch.rand(shape) * (c.range[1] - c.range[0]) + c.range[0]


def _outputs(out: Any) -> list[str] | None:
    import torch

    if isinstance(out, torch.Tensor):
        return ["output"]
    if isinstance(out, dict) or hasattr(out, "keys"):  # a Hugging Face ModelOutput
        names = [k for k in out.keys() if isinstance(out[k], torch.Tensor)]  # noqa: SIM118
        return names or None
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return [f"output_{i}" for i in range(len(out))]
    return None


def _runs(model: Any, name: str, c: _Candidate, shape: list[int]) -> Any:
    import torch

    try:
        with torch.no_grad():
            return model(**{name: _tensor(c, shape)})
    except Exception:  # a trial: the shape the model does not take is simply not proposed
        return None


def propose(
    spec: str, folder: Path, checkpoint: Path | None, args: dict[str, Any]
) -> tuple[Proposal, Any]:
    """Import and make the model once; returns the proposal and the model."""
    from modelbuild.errors import SourceError
    from modelbuild.source.pytorch import _import_callable

    if ":" not in spec:
        raise UsageError(f"--model {spec}: expected module:Class", hint="e.g. models.net:Net")
    factory = _import_callable(spec, folder)
    try:
        model = factory(**args)
    except TypeError as exc:
        raise UsageError(
            f"cannot make the model {spec}(**{args}): {exc}",
            hint="pass its constructor arguments: --args '{name: value, ...}' (YAML)",
        ) from exc
    except Exception as exc:
        raise SourceError(f"{spec}(**{args}) raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(model, "named_modules"):
        raise UsageError(f"{spec} made a {type(model).__name__}, not a torch.nn.Module")
    model.eval()
    state = _checkpoint_state(checkpoint, model) if checkpoint else {}
    if state:
        try:
            model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise UsageError(
                f"{checkpoint} does not fit {spec}(**{args}): {str(exc).splitlines()[-1]}",
                hint="pass the constructor arguments it was trained with: --args '{name: value}'",
            ) from exc
    first = _first_layer(model, state)
    hf_name, cand = _hf_candidate(model, first)
    required = _inputs_of(model)
    prop = Proposal()
    name = hf_name or (required[0] if required else "input")
    if cand is None:
        prop.notes.append("no first Conv/Linear/Embedding/RNN layer found: edit `inputs`")
        return prop, model
    if len(required) > 1:
        prop.notes.append(
            f"forward takes {', '.join(required)}: only {name} was proposed; add the others"
        )
    for shape in cand.shapes:
        out = _runs(model, name, cand, shape)
        if out is None:
            continue
        dynamic: dict[int, str] = {}
        for axis, label in cand.dynamic.items():
            other = list(shape)
            other[axis] = shape[axis] * 2 if axis == 0 or shape[axis] < 64 else shape[axis] // 2
            if _runs(model, name, cand, other) is not None:
                dynamic[axis] = label
        spec_ = {"shape": shape, "dtype": cand.dtype, "dynamic": dynamic, "range": cand.range}
        prop.inputs[name] = spec_
        prop.outputs = _outputs(out) or ["output"]
        prop.notes.append(
            f"inputs.{name}: from {cand.why}; a forward pass at {shape} ran"
            + (f", and at another {', '.join(dynamic.values())} size" if dynamic else "")
        )
        return prop, model
    prop.notes.append(
        f"no forward pass ran at the shapes tried for {name} ({cand.why}): edit `inputs`"
    )
    return prop, model
