"""OpenVINO IR directly from the PyTorch module (``converter: torch``): no ONNX in between.

``openvino.convert_model(module, example_input=..., input=[(name, PartialShape)])``: each
input named as the recipe names it, every declared dynamic axis a dynamic dimension (so the
IR takes every declared size; the gate checks it at a second one). The module is the one
the reference runs (built once per worker), converted with torch's MHA fast path off when it
has one. Then the same precision handling as the ONNX route (``finish_ir``): fp32, fp16
weight compression, the bf16 inference hint, int8 with NNCF. The outputs are named as the
recipe names them (the first ones, as the ONNX exporter names them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelbuild.formats.openvino.openvino_from_onnx import OpenVinoFromOnnx, finish_ir
from modelbuild.formats.openvino.openvino_from_onnx import Params as OnnxParams
from modelbuild.params import field
from modelbuild.step import StepContext


@dataclass(frozen=True)
class Params(OnnxParams):
    """The ONNX route's precision settings, and the source model to convert."""

    outputs: list[str] = field([], description="output names")
    source: dict[str, Any] = field({}, description="source spec")


class OpenVinoFromTorch(OpenVinoFromOnnx):
    """Shares the ONNX route's key hooks: nncf for int8, the CPU's bf16 for bf16."""

    name = "openvino_from_torch"
    cost = 1.5
    version = 2  # 2: MHA q/k/v projection split by size (no_mha_fastpath)
    tools: ClassVar[tuple[str, ...]] = ("openvino", "torch")
    output = "openvino"
    Params = Params

    def _run(self, ctx: StepContext) -> dict[str, Any]:
        return convert_torch(ctx, self.params(ctx), ctx.output)


def convert_torch(ctx: StepContext, p: Any, output: Path) -> dict[str, Any]:
    """The source module converted, finished and saved as ``output``; the metadata."""
    from modelbuild.source.pytorch import load_meta, load_torch_model

    model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
    loaded = load_meta(model)
    notices: list[str] = loaded.pop("notices", [])
    ov_model = torch_to_ov(model, p.inputs, p.outputs, notices)
    meta = finish_ir(ctx, p, ov_model, output)
    notices.extend(meta.pop("notices", []))
    return {**meta, "converter": "torch", "notices": notices, **loaded}


def torch_to_ov(
    model: Any, specs: list[dict[str, Any]], outputs: list[str], notices: list[str]
) -> Any:
    """``model`` as an ov.Model, its inputs and outputs named as the recipe names them."""
    import warnings

    import openvino as ov
    import torch

    from modelbuild.errors import StepError
    from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath
    from modelbuild.formats.onnx.onnx_from_torch_export import _first, example_inputs
    from modelbuild.source.pytorch import check_forward, to_tensors

    names = [s["name"] for s in specs]
    arrays = example_inputs(specs)  # a dynamic axis declared as 1 taken at 2
    check_forward(model, arrays, names)
    shapes = [
        (
            s["name"],
            ov.PartialShape([-1 if i in dyn else int(d) for i, d in enumerate(s["shape"])]),
        )
        for s in specs
        for dyn in [{int(k) for k in s.get("dynamic") or {}}]
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad(), no_mha_fastpath(model, notices):
                ov_model = ov.convert_model(
                    model, example_input=to_tensors(arrays, names), input=shapes
                )
        except Exception as exc:
            said = [ln.strip("- ") for ln in str(exc).splitlines() if ln.startswith("-- ")]
            raise StepError(
                "OpenVINO could not convert the PyTorch module: "
                + ("; ".join(said) if said else _first(exc)),
                hint="converter: onnx (through the shared ONNX export), or auto",
            ) from exc
    # exactly the recipe's names: the frontend adds its own (input_values and "42"), and
    # a runtime may look a port up by any of them
    pairs = [*zip(ov_model.inputs, names, strict=True)]
    pairs += zip(ov_model.outputs, outputs, strict=False)  # the first outputs, as ONNX names
    for port, name in pairs:
        port.get_tensor().set_names({name})
    return ov_model


STEP = OpenVinoFromTorch()
