"""The recipe's typed model (format 1). The JSON Schema is generated from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field

DType = Literal["float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]


@dataclass(frozen=True)
class Source:
    """Where the model comes from."""

    framework: Literal["pytorch", "lightning", "torchscript", "exported-program", "onnx"] = field(
        description="pytorch: module:callable + checkpoint; lightning: module:LightningModule + "
        "a .ckpt (hyper-parameters from it, as load_from_checkpoint); torchscript: a .pt "
        "TorchScript file; exported-program: a .pt2 file from torch.export.save; onnx: an "
        ".onnx file"
    )
    model: str | None = field(
        None,
        description="module:callable, imported relative to the recipe's folder (pytorch, "
        "lightning), or the model file (torchscript, exported-program, onnx)",
    )
    args: dict[str, Any] = field({}, description="keyword arguments for the callable")
    checkpoint: str | None = field(
        None,
        description=".safetensors, or .pt/.pth state_dict loaded with weights_only=True; "
        "training checkpoints ({state_dict: ...}, {model_state_dict: ...}, {model: ...}) and "
        "DDP/torch.compile key prefixes are understood",
    )
    checkpoint_key: str | None = field(
        None,
        description="the entry of the checkpoint's dict that holds the model's state "
        "(default: found: state_dict, model_state_dict or model)",
    )
    strip_prefix: str | None = field(
        None,
        description="a prefix to remove from the checkpoint's keys (module. and _orig_mod. "
        "are removed without it)",
    )
    allow_missing: list[str] = field(
        [],
        description="globs of model tensors the checkpoint may leave at their initial values "
        "(e.g. 'head.*'); any other tensor not loaded is an error",
    )
    allow_unexpected: list[str] = field(
        [],
        description="globs of checkpoint tensors the model may leave unused; any other is an error",
    )
    code: list[str] = field(
        [],
        description="files/folders whose bytes enter the key (default: the module file of `model`)",
    )
    trust_pickle: bool = field(
        False,
        description="allow a .pt/.pth checkpoint that needs full "
        "pickle (can run code): only for files you trust",
    )

    def load_options(self) -> dict[str, Any]:
        """How the checkpoint is applied: step params, so they enter the key."""
        return {
            "checkpoint_key": self.checkpoint_key,
            "strip_prefix": self.strip_prefix,
            "allow_missing": list(self.allow_missing),
            "allow_unexpected": list(self.allow_unexpected),
        }


# Keys a recipe may no longer use → what to write instead (the schema rejects them; this
# is the hint its error carries).
REMOVED_KEYS: dict[tuple[str, ...], str] = {
    ("source", "strict"): "`strict` was removed: a partial load no longer passes silently. "
    "Name the model tensors that may stay at init in `source.allow_missing: [glob, ...]` and "
    "checkpoint tensors the model does not use in `source.allow_unexpected: [glob, ...]`",
}


@dataclass(frozen=True)
class InputSpec:
    """One model input; inputs are ordered and their names become graph input names."""

    shape: list[int] = field(
        description="example shape; dynamic axes may take other sizes",
        items={"type": "integer", "minimum": 1},
        minItems=0,
    )
    dtype: DType = field("float32", description="element type")
    dynamic: dict[str, str] = field(
        {},
        description="axis index -> symbolic name, e.g. {0: batch}",
        propertyNames={"pattern": "^[0-9]+$"},
    )
    range: list[float] | None = field(
        None,
        description="[low, high] of generated values, both included for integer dtypes "
        "(token ids of a vocabulary of N: [0, N-1]); default [0, 1]",
        minItems=2,
        maxItems=2,
    )
    kind: Literal["values", "attention_mask"] = field(
        "values",
        description="values: random in `range`; attention_mask: right-padded 0/1 rows along "
        "the last axis, each with at least one real token (random masks can mask a whole "
        "row, where outputs mean nothing)",
    )


@dataclass(frozen=True)
class Tolerance:
    """Parity tolerance: every element |a-r| <= atol + rtol*|r|, and/or cosine >= cosine."""

    atol: float | None = field(None, description="absolute tolerance", minimum=0)
    rtol: float | None = field(None, description="relative tolerance", minimum=0)
    cosine: float | None = field(
        None, description="minimum cosine similarity per output", minimum=-1, maximum=1
    )


@dataclass(frozen=True)
class Tolerances:
    """Tolerance per precision."""

    fp32: Tolerance = field(Tolerance(atol=1e-4, rtol=1e-3), description="fp32 targets")
    fp16: Tolerance = field(Tolerance(atol=1e-2, rtol=1e-2), description="fp16 targets")
    bf16: Tolerance = field(Tolerance(atol=5e-2, rtol=5e-2), description="bf16 targets")
    int8: Tolerance = field(Tolerance(cosine=0.99), description="int8 targets")


@dataclass(frozen=True)
class Verify:
    """The parity gate: every target is compared with the source model."""

    enabled: bool = field(True, description="run the parity check (on by default)")
    data: str | None = field(None, description=".npz of real inputs keyed by input name")
    samples: int = field(
        4,
        description="random samples to generate when `data` is not given; "
        "dynamic axes alternate between two sizes",
        minimum=1,
        maximum=64,
    )
    seed: int = field(0, description="seed for generated inputs")
    tolerance: dict[str, Tolerance] | None = field(
        None,
        description="per precision (fp32, fp16, bf16, int8)",
        propertyNames={"enum": ["fp32", "fp16", "bf16", "int8"]},
    )


@dataclass(frozen=True)
class TargetVerify:
    """A target's override of the parity gate."""

    enabled: bool = field(True, description="check this target")
    tolerance: Tolerance | None = field(None, description="override the precision's tolerance")


DEFAULT_TOLERANCES = Tolerances()
