"""A simplified ONNX graph with onnxsim (constant folding, dead code, shape fixes)."""

from __future__ import annotations

from typing import Any

from modelbuild.step import Step, StepContext


class OnnxSimplify(Step):
    name = "onnx_simplify"
    version = 3  # 2: fused pads; 3: whole-input pools
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
        pools = fix_whole_input_pools(simplified)
        save(simplified, ctx.output)
        out: dict[str, Any] = {"nodes_before": before, "nodes_after": len(simplified.graph.node)}
        notices = []
        if fixed:
            notices.append(
                f"onnxsim fused a Pad into {len(fixed)} node(s) that kept auto_pad=VALID "
                f"({_names(fixed)}); auto_pad removed so their explicit pads apply (ONNX "
                "forbids both, onnxruntime refuses)"
            )
        if pools:
            notices.append(
                f"{len(pools)} AveragePool node(s) with ceil_mode whose window covers the whole "
                f"input ({_names(pools)}) became GlobalAveragePool: torch averages over the "
                "input, onnxruntime divides by the whole window"
            )
        if notices:
            out["notices"] = notices
        return out


def _names(nodes: list[str]) -> str:
    return ", ".join(nodes[:3]) + (", ..." if len(nodes) > 3 else "")


def fix_whole_input_pools(model: Any) -> list[str]:
    """Replace ``AveragePool(ceil_mode=1)`` whose kernel covers the whole (static) spatial
    input with one output per channel by ``GlobalAveragePool``; the names of those nodes.

    torch (``nn.AvgPool2d(k, ceil_mode=True)`` with k >= the input, as Hugging Face
    EfficientNet's head) divides by the part of the window inside the input: the mean.
    onnxruntime divides by the whole window, so its result was smaller by the ratio of
    the areas (EfficientNet's logits off by 0.2 with a cosine of 1). For such a node
    ``GlobalAveragePool`` is torch's result exactly."""
    import onnx

    if not any(
        n.op_type == "AveragePool" and any(a.name == "ceil_mode" and a.i for a in n.attribute)
        for n in model.graph.node
    ):  # shape inference copies the whole model (weights included) twice: only if needed
        return []
    shapes: dict[str, list[int | None]] = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    fixed: list[str] = []
    for node in model.graph.node:
        if node.op_type != "AveragePool":
            continue
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        spatial = shapes.get(node.input[0], [])[2:]
        kernel = list(a.get("kernel_shape", []))
        if (
            not a.get("ceil_mode")
            or any(a.get("pads", [0]))
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or not spatial
            or len(kernel) != len(spatial)
            or any(d is None or k < d for k, d in zip(kernel, spatial, strict=True))
        ):
            continue
        # kernel >= input on every axis: one window per axis (a second would start past
        # the input, which neither torch nor ONNX allows), covering all of the input
        del node.attribute[:]
        node.op_type = "GlobalAveragePool"
        fixed.append(node.name or "AveragePool")
    return fixed


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
