"""Reference outputs: the source model run on the verification inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class ReferenceParams:
    """What the reference step is planned with (the recipe's source, inputs, outputs)."""

    source: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class Reference(Step):
    name = "reference"
    cost = 1.2
    version = 2
    tools = ("torch", "numpy")
    output = "reference.npz"
    Params = ReferenceParams

    def tool_versions(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        if params and params["source"]["framework"] == "onnx":
            from modelbuild.step import dist_version

            return {"onnxruntime": dist_version("onnxruntime")}
        return super().tool_versions(params)

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.parity.inputs import load_sets, save_sets
        from modelbuild.source.pytorch import check_forward, load_meta, load_torch_model, run_torch

        p = ctx.params
        names = [s["name"] for s in p["inputs"]]
        sets = load_sets(ctx.inputs["inputs"])
        meta: dict[str, Any] = {}
        if p["source"]["framework"] == "onnx":
            from modelbuild.formats.onnx.external import check_source
            from modelbuild.formats.runtime import load_runner

            check_source(ctx.inputs["model_file"])  # external data confined, before any is read
            runner = load_runner(ctx.inputs["model_file"], {"runtime": "onnxruntime"}, names, [])
            outs = [runner.run(s) for s in sets]
        else:
            import torch

            from modelbuild.formats.onnx.onnx_from_torch import no_mha_fastpath

            torch.manual_seed(0)
            model = load_torch_model(p, ctx.inputs, ctx.recipe_dir)
            meta = load_meta(model)  # the digest of the state applied, what was not loaded
            # the plain attention path, as the exports run it (see onnx_from_torch)
            with no_mha_fastpath(model):
                check_forward(model, sets[0], names)
                outs = [run_torch(model, s, names) for s in sets]
        out_names = p["outputs"] or [f"output{i}" for i in range(len(outs[0]))]
        if len(out_names) != len(outs[0]):
            from modelbuild.errors import SourceError

            raise SourceError(
                f"the model returns {len(outs[0])} outputs but the recipe names "
                f"{len(out_names)} ({', '.join(out_names)})",
                hint="make `outputs` list one name per model output",
            )
        save_sets(ctx.output, [dict(zip(out_names, o, strict=False)) for o in outs])
        return {"outputs": out_names, **meta}


STEP = Reference()
