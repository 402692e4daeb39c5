"""A simplified ONNX graph with onnxsim (constant folding, dead code, shape fixes)."""

from __future__ import annotations

from typing import Any

from modelbuild.step import Step, StepContext


class OnnxSimplify(Step):
    name = "onnx_simplify"
    version = 2
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
        fixed = fix_fused_pads(simplified)
        save(simplified, ctx.output)
        out: dict[str, Any] = {"nodes_before": before, "nodes_after": len(simplified.graph.node)}
        if fixed:
            out["notices"] = [
                f"onnxsim fused a Pad into {len(fixed)} node(s) that kept auto_pad=VALID "
                f"({', '.join(fixed[:3])}{', ...' if len(fixed) > 3 else ''}); auto_pad "
                "removed so their explicit pads apply (ONNX forbids both, onnxruntime refuses)"
            ]
        return out


def fix_fused_pads(model: Any) -> list[str]:
    """Drop ``auto_pad=VALID`` from nodes that also carry ``pads``; the names of those nodes.

    torch exports ``padding="valid"`` as ``auto_pad=VALID`` (no padding); onnxsim then fuses a
    preceding ``Pad`` into ``pads`` and keeps ``auto_pad``. VALID means "no implicit padding",
    so the fused explicit pads are the model's padding and ``auto_pad`` goes.
    """
    fixed: list[str] = []
    for node in model.graph.node:
        names = {a.name: a for a in node.attribute}
        auto_pad, pads = names.get("auto_pad"), names.get("pads")
        if auto_pad is None or pads is None or auto_pad.s not in (b"VALID", b"NOTSET"):
            continue
        node.attribute.remove(auto_pad)
        fixed.append(node.name or node.op_type)
    return fixed


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
