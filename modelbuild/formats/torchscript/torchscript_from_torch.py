"""TorchScript from a PyTorch model: torch.jit.trace with the example inputs, or script."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """TorchScript settings."""

    method: Literal["trace", "script"] = field("trace", description="trace or script")
    freeze: bool = field(False, description="torch.jit.freeze")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    source: dict[str, Any] = field({}, description="source spec")


class TorchScriptFromTorch(Step):
    name = "torchscript_from_torch"
    cost = 1.2
    version = 2
    tools = ("torch",)
    output = "model.pt"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import warnings

        import torch

        from modelbuild.errors import StepError
        from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath
        from modelbuild.source.pytorch import (
            check_forward,
            example_arrays,
            load_torch_model,
            to_tensors,
        )

        p = self.params(ctx)
        model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
        names = [s["name"] for s in p.inputs]
        arrays = example_arrays(p.inputs)
        check_forward(model, arrays, names)
        args = to_tensors(arrays, names)
        notices: list[str] = []
        with warnings.catch_warnings(), no_mha_fastpath(model, notices):
            warnings.simplefilter("ignore")
            try:
                if isinstance(model, torch.jit.ScriptModule):
                    scripted = model
                elif p.method == "trace":
                    with torch.no_grad():
                        scripted = torch.jit.trace(model, args, check_trace=False)
                else:
                    scripted = torch.jit.script(model)
            except Exception as exc:
                raise StepError(
                    f"torch.jit.{p.method} failed: {str(exc).splitlines()[0][:400]}",
                    hint="try `method: trace`"
                    if p.method == "script"
                    else "try `method: script` for data-dependent control flow",
                ) from exc
            if p.freeze:
                scripted = torch.jit.freeze(scripted.eval())
        torch.jit.save(scripted, str(ctx.output))
        return {"method": p.method, "notices": notices}


STEP = TorchScriptFromTorch()
