"""ONNX from a PyTorch (or TorchScript) model with torch.onnx.export.

Uses the TorchScript-based exporter (``dynamo=False``): it honours the
requested opset and writes byte-identical single-file output across runs,
which the dynamo exporter (torch 2.13's default) does not.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext


@dataclass(frozen=True)
class Params:
    """Export settings."""

    opset: int = field(17, description="ONNX opset")
    inputs: list[dict[str, Any]] = field([], description="input specs")
    outputs: list[str] = field([], description="output names")
    recipe_name: str = field("", description="recorded in the model's metadata")
    source: dict[str, Any] = field({}, description="source spec")
    constant_folding: bool = field(True, description="fold constants during export")


class OnnxFromTorch(Step):
    name = "onnx_from_torch"
    cost = 1.5
    version = 2
    tools = ("torch", "onnx")
    output = "model.onnx"
    Params = Params

    def key_environment(self, params: dict[str, Any] | None = None) -> dict[str, str]:
        import os

        from modelbuild.formats.onnx.external import THRESHOLD_ENV

        value = os.environ.get(THRESHOLD_ENV)
        return {THRESHOLD_ENV: value} if value else {}

    def run(self, ctx: StepContext) -> dict[str, Any]:
        import warnings

        import onnx
        import torch

        from modelbuild.errors import SourceError, StepError
        from modelbuild.source.pytorch import (
            check_forward,
            example_arrays,
            load_meta,
            load_torch_model,
            to_tensors,
        )

        p = self.params(ctx)
        model = load_torch_model(ctx.params, ctx.inputs, ctx.recipe_dir)
        loaded = load_meta(model)  # the digest of the state applied, what was not loaded
        notices: list[str] = loaded.pop("notices", [])
        model = _sync_bn_to_bn(model, notices)
        names = [s["name"] for s in p.inputs]
        arrays = example_arrays(p.inputs)
        check_forward(model, arrays, names)
        args = to_tensors(arrays, names)
        dynamic_axes = {
            s["name"]: {int(k): v for k, v in (s.get("dynamic") or {}).items()}
            for s in p.inputs
            if s.get("dynamic")
        }
        from modelbuild.formats.onnx.external import onnx_file, save, too_big

        # its own folder: over 2 GB the exporter writes a data file per tensor beside it
        (ctx.workdir / "export").mkdir()
        tmp = ctx.workdir / "export" / "export.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with torch.no_grad(), no_mha_fastpath(model, notices):
                    torch.onnx.export(
                        model,
                        args,
                        str(tmp),
                        dynamo=False,
                        opset_version=p.opset,
                        input_names=names,
                        output_names=p.outputs or None,
                        dynamic_axes=dynamic_axes or None,
                        do_constant_folding=p.constant_folding,
                    )
            except RuntimeError as exc:
                raise _explain_export_error(exc, p.opset, model, args) from exc
            except TypeError as exc:
                raise SourceError(
                    f"the model rejected the declared inputs: {exc}",
                    hint="check `inputs` (names, shapes, dtypes) against the model's forward()",
                ) from exc
        m = onnx.load(str(tmp))
        meta = {
            "modelbuild.recipe": p.recipe_name,
            "modelbuild.inputs": json.dumps(p.inputs, sort_keys=True),
            "modelbuild.outputs": json.dumps(p.outputs),
        }
        for k, v in meta.items():
            prop = m.metadata_props.add()
            prop.key, prop.value = k, v
        big = too_big(m)
        nodes = len(m.graph.node)
        try:
            if big:  # model.onnx + model.onnx.data in a folder (the checker reads the path)
                written = save(m, ctx.output)
                del m
                onnx.checker.check_model(str(onnx_file(written)))
                notices.append(
                    "the model is over 2 GB: the artifact is a folder, model.onnx with its "
                    "weights in model.onnx.data (ONNX external data)"
                )
            else:
                onnx.checker.check_model(m)
                onnx.save(m, str(ctx.output))
        except onnx.checker.ValidationError as exc:
            raise StepError(f"the exported model is not valid ONNX: {exc}") from exc
        return {"opset": p.opset, "nodes": nodes, "notices": notices, "external": big, **loaded}


MHA_NOTICE = (
    "exported with torch's fused attention fast path off "
    "(torch.backends.mha.set_fastpath_enabled(False)): under no_grad, {mods} take a fused "
    "kernel (aten::_transformer_encoder_layer_fwd / _native_multi_head_attention) that no "
    "exporter knows; the plain path computes the same"
)


def has_mha(model: Any) -> list[str]:
    """Names of the torch.nn attention module types in ``model`` that have a fast path."""
    import torch

    kinds = (
        torch.nn.MultiheadAttention,
        torch.nn.TransformerEncoderLayer,
        torch.nn.TransformerEncoder,
    )
    modules = model.modules() if isinstance(model, torch.nn.Module) else []
    return sorted({type(m).__name__ for m in modules if isinstance(m, kinds)})


@contextlib.contextmanager
def no_mha_fastpath(model: Any, notices: list[str] | None = None) -> Iterator[None]:
    """Run the block with torch's MHA fast path off when ``model`` has modules that take it
    (export, trace and the reference then see the same plain math); says so in ``notices``."""
    import torch

    kinds = has_mha(model)
    if not kinds:
        yield
        return
    if notices is not None:
        notices.append(MHA_NOTICE.format(mods="/".join(f"nn.{k}" for k in kinds)))
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _sync_bn_to_bn(model: Any, notices: list[str]) -> Any:
    """SyncBatchNorm cannot be exported; at inference it equals BatchNorm."""
    import torch

    if not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()):
        return model

    def convert(module: Any) -> Any:
        out = module
        if isinstance(module, torch.nn.SyncBatchNorm):
            out = torch.nn.BatchNorm2d(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            out.load_state_dict(module.state_dict())
        for name, child in module.named_children():
            out.add_module(name, convert(child))
        return out

    notices.append(
        "SyncBatchNorm has no ONNX export; converted it to BatchNorm2d (the same "
        "computation at inference)"
    )
    return convert(model).eval()


def _module_of(model: Any, args: tuple[Any, ...], op: str) -> str | None:
    """Which submodule calls ``op`` (from the trace's scopes), e.g. 'body.1 (Warp)'."""
    import torch

    try:
        with torch.no_grad():
            graph = torch.jit.trace(model, args, check_trace=False).inlined_graph
        modules = dict(model.named_modules())
        for node in graph.nodes():
            if node.kind() == op:
                path = node.scopeName().split("/")[-1].replace("__module.", "", 1)
                path = "" if path == "__module" else path
                sub = modules.get(path)
                return f"{path or '<root>'} ({type(sub).__name__})" if sub is not None else path
    except Exception:  # naming the module is a courtesy; the op name stands alone
        return None
    return None


def _explain_export_error(
    exc: Exception, opset: int, model: Any = None, args: tuple[Any, ...] = ()
) -> Exception:
    from modelbuild.errors import SourceError, StepError

    text = str(exc)
    first = text.splitlines()[0][:400] if text else repr(exc)
    if "Unsupported" in text or "not supported" in text or "Exporting the operator" in text:
        import re

        m = re.search(r"operator '?([\w:.]+)'?", text)
        op = m.group(1) if m else "an operator"
        where = _module_of(model, args, op) if m and model is not None else None
        if where:
            op = f"{op} (called in module {where})"
        added = re.search(r"added in (?:opset )?version (\d+)", text)
        if added:
            return SourceError(
                f"{op} needs ONNX opset {added.group(1)}, the recipe asks for "
                f"opset {opset}: {first}",
                hint=f"set `opset: {added.group(1)}` or higher",
            )
        return SourceError(
            f"the ONNX exporter does not support {op} at opset {opset}: {first}",
            hint="replace that operator in the model (or register a custom "
            "symbolic with torch.onnx.register_custom_op_symbolic); other "
            "formats that do not go through ONNX (torchscript) still work",
        )
    return StepError(f"torch.onnx.export failed: {first}")


STEP = OnnxFromTorch()
