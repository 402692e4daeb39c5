"""onnx2tf's layout guesses turned off, and the check that decides when to turn them off.

onnx2tf keeps a flag per tensor, ``before_op_output_shape_trans``: whether the TensorFlow
tensor is laid out channels-last while the ONNX one is channels-first. It guesses it from
shapes, and two of its guesses are wrong whenever sizes repeat (measured on the zoo,
onnx2tf 1.29.24):

- ``utils.common_functions.inverted_operation_enable_disable``: a rank >= 3 tensor whose
  non-batch sizes are all equal ([4, 16, 16]: ALBERT's and ELECTRA's embeddings with
  sequence 16 = embedding 16; Swin's patch-merging [1, 16, 16, 16]) is taken as transposed
  although its TF and ONNX shapes agree; then a constant added to it is transposed
  (ALBERT/ELECTRA: the position embeddings, cosine 0.51 / -0.01) or a Slice's axes are moved
  (Swin: x[:, 0::2, 0::2, :] slices the wrong axes, cosine -0.15);
- ``ops.Transpose``: a perm that moves axis 0 is rebuilt by matching sizes between the TF
  input and the ONNX output, which picks the wrong axis when two sizes are equal
  (torch MultiheadAttention's packed K/V unflatten: [10, 2, 2, 32] with batch 2 = the K/V
  pack of 2; nn.TransformerDecoder, cosine 0.986).

``literal_layouts()`` makes both take the ONNX layout as it is where TF and ONNX shapes
agree (the flag from the shape comparison alone; the ONNX perm on such an input). It is a
retry, chosen only when the checked conversion computes different numbers from onnxruntime
on the same ONNX (``check``): a convolutional net whose NHWC tensors happen to have
equal sizes needs the guess.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_TOLERANCE = {"atol": 1e-4, "rtol": 1e-3}


def _onnx_shape(shape: Any, batch_size: Any) -> list[Any] | None:
    """onnx2tf's own normalisation of an ONNX shape before it compares it with TF's."""
    if shape is None:
        return None
    s = [d if not isinstance(d, str) else None for d in shape]
    if s and s.count(None) != len(s) and batch_size is not None:
        s[0] = batch_size
    return [None if d is not None and d < 1 else d for d in s]


def _flag_from_shapes(orig: Any) -> Any:
    def make_node(*args: Any, **kwargs: Any) -> Any:
        result = orig(*args, **kwargs)
        node, layers = kwargs.get("graph_node"), kwargs.get("tf_layers_dict")
        if node is None or layers is None:
            return result
        trans = False
        for out in node.outputs:
            e = layers.get(out.name)
            if not e or "tf_node" not in e or "before_op_output_shape_trans" not in e:
                continue
            onnx_shape = _onnx_shape(out.shape, kwargs.get("batch_size"))
            trans = trans or onnx_shape != e["tf_node"].shape
            e["before_op_output_shape_trans"] = trans
        return result

    return make_node


def _literal_transpose(orig: Any) -> Any:
    def make_node(*args: Any, **kwargs: Any) -> Any:
        import tensorflow as tf

        result = orig(*args, **kwargs)
        node, layers = kwargs["graph_node"], kwargs["tf_layers_dict"]
        perm = node.attrs.get("perm")
        src = layers.get(node.inputs[0].name)
        if perm is None or int(perm[0]) == 0 or not src or "tf_node" not in src:
            return result
        x = src["tf_node"]
        if src.get("before_op_output_shape_trans", True):
            return result
        if _onnx_shape(node.inputs[0].shape, kwargs.get("batch_size")) != x.shape:
            return result
        out = node.outputs[0]
        y = tf.transpose(x, perm=[int(p) for p in perm])
        layers[out.name]["tf_node"] = y
        layers[out.name]["before_op_output_shape_trans"] = (
            _onnx_shape(out.shape, kwargs.get("batch_size")) != y.shape
        )
        return result

    return make_node


@contextlib.contextmanager
def literal_layouts() -> Iterator[None]:
    """onnx2tf's two size-matching layout guesses off for the conversions inside (every op
    module's ``make_node`` wrapped, and put back after: workers are reused)."""
    import onnx2tf.ops

    saved: list[tuple[Any, Any]] = []
    try:
        for m in pkgutil.iter_modules(onnx2tf.ops.__path__):
            if m.name in ("Input", "__init__"):
                continue
            mod = importlib.import_module(f"onnx2tf.ops.{m.name}")
            orig = getattr(mod, "make_node", None)
            if orig is None:
                continue
            saved.append((mod, orig))
            wrapped = _flag_from_shapes(orig)
            fixed = _literal_transpose(wrapped) if m.name == "Transpose" else wrapped
            setattr(mod, "make_node", fixed)  # noqa: B010
        yield
    finally:
        for mod, orig in saved:
            setattr(mod, "make_node", orig)  # noqa: B010


def check_sets(
    specs: list[dict[str, Any]], inputs: Path | None, seed: int = 0
) -> list[dict[str, Any]]:
    """The gate's input sets when the step has them, else seeded ones at both sizes of
    every dynamic axis (attention masks as the recipe declares them)."""
    from modelbuild.parity.inputs import generate, load_sets

    if inputs is not None:
        return load_sets(inputs)
    return generate(specs, 2, seed)


def check(
    saved: Path,
    onnx_path: Path,
    specs: list[dict[str, Any]],
    sets: list[dict[str, Any]],
    tolerance: dict[str, Any] | None,
) -> list[str]:
    """The converted SavedModel against onnxruntime on the ONNX it came from, on every set
    both take (as the gate runs it: source layout in, source layout out); the problems, []
    when it computes the same numbers."""
    import onnxruntime as ort

    from modelbuild.formats.savedmodel.runtime import SavedModelRunner
    from modelbuild.parity.compare import Comparison, compare_outputs

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    names = [s["name"] for s in specs]
    runner = SavedModelRunner(saved, {}, names, out_names)
    tol = tolerance or DEFAULT_TOLERANCE
    cmp = Comparison(tol)
    checked = 0
    for feeds in sets:
        if not runner.accepts({k: list(v.shape) for k, v in feeds.items()}):
            continue
        try:
            ref = sess.run(out_names, {k: feeds[k] for k in names})
        except Exception:  # the ONNX itself does not take this set: nothing to compare
            continue
        try:
            outs = runner.run(feeds)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in feeds.items())
            return [f"TensorFlow fails on it at {shapes}: {type(exc).__name__}: {first}"]
        compare_outputs(out_names, outs, ref, tol, cmp)
        checked += 1
    if cmp or not checked:  # nothing both take: the gate judges the artifact alone
        return []
    return cmp.problems or [cmp.summary().replace("\n", "; ")]


def convert_checked(
    ctx: Any,
    onnx_path: Path,
    out: Path,
    specs: list[dict[str, Any]],
    sets: list[dict[str, Any]],
    tolerance: dict[str, Any] | None,
    first: str,
) -> tuple[dict[str, Any], list[str]]:
    """The static-shape retry, checked against onnxruntime on the static graph; when onnx2tf
    computes other numbers there, once more with its size-matching layout guesses off
    (onnx2tf_fixes.literal_layouts). The layout map and the notices of what was done."""
    from modelbuild.errors import StepError
    from modelbuild.formats.savedmodel.savedmodel_from_onnx import _short, convert_static

    layout = convert_static(ctx, onnx_path, out, specs, first)
    static_path = ctx.workdir / "static.onnx"
    wrong = check(out, static_path, specs, sets, tolerance) if sets else []
    if not wrong:
        return layout, []
    ctx.log.warning("the static-shape conversion computes other numbers: %s", "; ".join(wrong))
    shutil.rmtree(out, ignore_errors=True)
    layout = convert_static(ctx, onnx_path, out, specs, first, literal=True)
    again = check(out, static_path, specs, sets, tolerance)
    if again:
        raise StepError(
            "onnx2tf computes other numbers than onnxruntime on the same ONNX: from the "
            f"static-shape graph {'; '.join(wrong)}; with its layout guesses off as well "
            f"{'; '.join(again)} (the default conversion: {_short(first)})",
            hint="onnx2tf -cotof (check_onnx_tf_outputs_elementwise_close_full) on the "
            "static-shape graph names the first op that diverges; an ONNX or OpenVINO "
            "target converts this model",
        )
    return layout, [LITERAL_NOTICE.format(why="; ".join(wrong))]


LITERAL_NOTICE = (
    "onnx2tf computed other numbers than onnxruntime from the static-shape graph ({why}): "
    "converted again with its two size-matching layout guesses off (tensors whose sizes "
    "repeat taken as laid out in the ONNX), which computes the same numbers"
)
