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
from pathlib import Path
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
    # 3: the metadata appended to the exporter's bytes (append_metadata); 4: MHA q/k/v split by size
    version = 4
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
        from modelbuild.formats.onnx.external import onnx_file, save, threshold, too_big

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
        meta = {
            "modelbuild.recipe": p.recipe_name,
            "modelbuild.inputs": json.dumps(p.inputs, sort_keys=True),
            "modelbuild.outputs": json.dumps(p.outputs),
        }
        big = False
        try:
            if [f.name for f in tmp.parent.iterdir()] == [tmp.name] and (
                tmp.stat().st_size < threshold()
            ):  # one protobuf: its weights are not parsed, serialized and written again
                nodes = append_metadata(tmp, meta)
                onnx.checker.check_model(str(tmp))
                tmp.replace(ctx.output)
            else:
                m = onnx.load(str(tmp))
                for k, v in meta.items():
                    prop = m.metadata_props.add()
                    prop.key, prop.value = k, v
                big = too_big(m)
                nodes = len(m.graph.node)
                # over 2 GB: model.onnx + model.onnx.data in a folder (checked by its path)
                written = save(m, ctx.output)
                del m
                onnx.checker.check_model(str(onnx_file(written)))
                if big:
                    notices.append(
                        "the model is over 2 GB: the artifact is a folder, model.onnx with "
                        "its weights in model.onnx.data (ONNX external data)"
                    )
        except onnx.checker.ValidationError as exc:
            raise StepError(f"the exported model is not valid ONNX: {exc}") from exc
        return {"opset": p.opset, "nodes": nodes, "notices": notices, "external": big, **loaded}


MHA_NOTICE = (
    "exported with torch's fused attention fast path off "
    "(torch.backends.mha.set_fastpath_enabled(False)): under no_grad, {mods} take a fused "
    "kernel (aten::_transformer_encoder_layer_fwd / _native_multi_head_attention) that no "
    "exporter knows; the plain path computes the same; and its packed q/k/v projection split "
    "into its slices by size (the same values), which keeps the sequence length symbolic in "
    "the ONNX export"
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
    import torch.nn.functional as F

    if notices is not None:
        notices.append(MHA_NOTICE.format(mods="/".join(f"nn.{k}" for k in kinds)))
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    packed = getattr(F, "_in_projection_packed")  # noqa: B009 (private: not in the stubs)
    setattr(F, "_in_projection_packed", _chunked_in_projection(packed))  # noqa: B010
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
        setattr(F, "_in_projection_packed", packed)  # noqa: B010


def _chunked_in_projection(packed: Any) -> Any:
    """torch's packed q/k/v projection with the result split on the last axis.

    torch's own splits it by unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2).squeeze(-2),
    after which the TorchScript-based ONNX exporter loses the sequence length's symbol and
    writes the traced length as a constant into every later Reshape (an nn.MultiheadAttention
    export then fails at any other sequence length). The values are the same: one linear, cut
    into the same three (or two) slices."""
    import torch.nn.functional as F

    def chunked(q: Any, k: Any, v: Any, w: Any, b: Any = None) -> Any:
        if k is not v:
            return packed(q, k, v, w, b)
        e = q.size(-1)
        if q is k:  # sizes given (not chunk): Split keeps its opset-13 form for opset 17
            return tuple(c.contiguous() for c in F.linear(q, w, b).split([e, e, e], dim=-1))
        w_q, w_kv = w.split([e, e * 2])
        b_q, b_kv = (None, None) if b is None else b.split([e, e * 2])
        k_p, v_p = (c.contiguous() for c in F.linear(k, w_kv, b_kv).split([e, e], dim=-1))
        return F.linear(q, w_q, b_q), k_p, v_p

    return chunked


CAUSAL_NOTICE = (
    "exported with {mods}'s causal-mask detection off: it compares the mask's values with a "
    "causal one (data-dependent, which torch.export cannot trace: GuardOnDataDependentSymNode); "
    "the mask is applied as given, the same math (torch documents is_causal as a hint)"
)


@contextlib.contextmanager
def mask_as_given(model: Any, notices: list[str]) -> Iterator[None]:
    """Run the block with torch's ``_detect_is_causal_mask`` answering the caller's hint
    alone (False when none) when ``model`` has nn.TransformerEncoder/Decoder modules."""
    import torch
    import torch.nn.modules.transformer as tr

    kinds = (torch.nn.TransformerEncoder, torch.nn.TransformerDecoder)
    mods = model.modules() if isinstance(model, torch.nn.Module) else []
    found = sorted({type(m).__name__ for m in mods if isinstance(m, kinds)})
    if not found:
        yield
        return
    notices.append(CAUSAL_NOTICE.format(mods="/".join(f"nn.{k}" for k in found)))
    saved = tr._detect_is_causal_mask

    def hint_only(mask: Any, is_causal: bool | None = None, size: int | None = None) -> bool:
        return is_causal is True

    tr._detect_is_causal_mask = hint_only
    try:
        yield
    finally:
        tr._detect_is_causal_mask = saved


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


def append_metadata(path: Path, meta: dict[str, str]) -> int:
    """Add ``meta`` to the metadata_props of the ONNX file ``path`` without parsing its
    weights: a ModelProto holding only those props is appended to the file (protobuf merges
    a message's repeated fields across the stream, so the file parses as the model with
    them added, after any it had). Returns the graph's node count, read from the wire."""
    import onnx

    extra = onnx.ModelProto()
    for k, v in meta.items():
        prop = extra.metadata_props.add()
        prop.key, prop.value = k, v
    nodes = graph_nodes(path)
    with open(path, "ab") as f:
        f.write(extra.SerializeToString())
    return nodes


def graph_nodes(path: Path) -> int:
    """How many nodes the top-level graph of the ONNX file ``path`` has, from the protobuf
    wire format: ModelProto field 7 (graph), GraphProto field 1 (node); everything else,
    the initializers' bytes included, is stepped over without being read."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return sum(
            sum(1 for fld, s2, _ in _fields(buf, s, e) if fld == 1 and s2 >= 0)
            for fld, s, e in _fields(buf, 0, len(buf))
            if fld == 7 and s >= 0
        )


def _fields(buf: Any, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each field of the message in ``buf[start:end]``;
    start is -1 for a field that is not length-delimited."""

    def varint(i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, i
            shift += 7

    i = start
    while i < end:
        key, i = varint(i)
        wire = key & 7
        if wire == 0:
            _, i = varint(i)
            yield key >> 3, -1, -1
        elif wire == 1:
            i += 8
            yield key >> 3, -1, -1
        elif wire == 2:
            n, i = varint(i)
            yield key >> 3, i, i + n
            i += n
        elif wire == 5:
            i += 4
            yield key >> 3, -1, -1
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {i}")
