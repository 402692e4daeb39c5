"""A simplified ONNX graph with onnxsim (constant folding, dead code, shape fixes)."""

from __future__ import annotations

from typing import Any

from modelbuild.step import Step, StepContext


class OnnxSimplify(Step):
    name = "onnx_simplify"
    version = 1
    tools = ("onnx", "onnxsim", "onnxruntime")
    output = "model.onnx"

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import onnx
        import onnxsim

        from modelbuild.errors import StepError
        from modelbuild.formats.onnx.external import onnx_file, save

        src = ctx.inputs["model"]
        if src.is_dir():  # over 2 GB: onnxsim serializes the model as one protobuf
            _link_tree(src, ctx.output)
            return {
                "skipped": True,
                "notices": [
                    "onnxsim skipped: the model is over 2 GB (external data) and onnxsim "
                    "works on one protobuf; the exported graph is used as it is"
                ],
            }
        m = onnx.load(str(onnx_file(src)))
        before = len(m.graph.node)
        simplified, ok = onnxsim.simplify(m)
        if not ok:
            raise StepError(
                "onnxsim could not validate the simplified model",
                hint="set `simplify: false` on the target",
            )
        save(simplified, ctx.output)
        return {"nodes_before": before, "nodes_after": len(simplified.graph.node)}


def _link_tree(src: Any, dst: Any) -> None:
    """``dst`` holding ``src``'s files as hard links (the cache ingests them once)."""
    import os
    import shutil

    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copyfile(f, dst / f.name)


STEP = OnnxSimplify()
