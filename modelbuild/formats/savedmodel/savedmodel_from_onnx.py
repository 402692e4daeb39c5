"""A TensorFlow SavedModel from the fp32 ONNX, with onnx2tf.

One onnx2tf run feeds the SavedModel target and every TFLite target with the
same settings (TFLite steps convert from this SavedModel). onnx2tf rewrites its
input .onnx in place, so it gets a private copy; its own onnxsim pass is turned
off (the shared ONNX chain simplifies when the target says so). Its output is
not byte-identical between runs: keys rest on inputs, and there is no early
cutoff below it.

Each conversion is checked against onnxruntime on the ONNX it came from (the gate's input
sets when the step has them, else seeded ones): one that raises or computes other numbers
is retried from a static-shape graph, and that once more with onnx2tf's size-matching
layout guesses off (formats/savedmodel/onnx2tf_fixes.py), each said as a notice; when no
conversion computes the same numbers the step fails with the figures of each.

The step also records how onnx2tf laid tensors out (see formats/savedmodel/layout.py)
in ``assets.extra/modelbuild.json``, a folder TensorFlow ignores when loading.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuild.params import field
from modelbuild.step import Step, StepContext

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass(frozen=True)
class Params:
    """onnx2tf settings."""

    keep_nchw: list[str] = field(
        [], description="inputs kept channel-first (onnx2tf keep_ncw_or_nchw_or_ncdhw_input_names)"
    )
    inputs: list[dict[str, Any]] = field(
        [], description="input specs: the declared shapes for the static-shape retry"
    )
    tolerance: dict[str, Any] = field(
        {}, description="fp32 tolerance of the check against onnxruntime (default 1e-4/1e-3)"
    )


# The field's known fix when onnx2tf fails on a dynamic-shape graph (bool Mul, dimension
# mismatches from layout transposes) or leaves ops TFLite has only as Flex ops (Erf):
# a static-shape graph, Erf as a pseudo operator (lower-case: "Erf" is silently ignored),
# and inputs kept in the source layout.
STATIC_NOTICE = (
    "onnx2tf's default conversion {why}; converted instead from a static-shape graph "
    "(inputs fixed at {shapes}), with Erf replaced by onnx2tf's pseudo operator and "
    "inputs kept in the source layout: the artifact takes only those shapes"
)


class SavedModelFromOnnx(Step):
    name = "savedmodel_from_onnx"
    cost = 3.0
    # 3: node names made TensorFlow scope-safe; 4: checked against onnxruntime, retried
    version = 4
    tools = (
        "onnx2tf",
        "tensorflow",
        "tf-keras",
        "onnx",
        "onnxruntime",
        "onnx-graphsurgeon",
        "sng4onnx",
        "onnxsim",
    )
    output = "saved_model"
    Params = Params

    def run(self, ctx: StepContext) -> dict[str, Any]:
        from modelbuild.errors import StepError
        from modelbuild.formats.savedmodel.onnx2tf_fixes import check, check_sets, convert_checked

        p = self.params(ctx)
        out = ctx.workdir / "saved_model"
        meta: dict[str, Any] = {}
        specs = list(p.inputs)
        sets = check_sets(specs, ctx.inputs.get("inputs")) if specs else []
        onnx_path = ctx.inputs["model"]
        try:
            layout = convert(ctx, onnx_path, out, list(p.keep_nchw))
            wrong = check(out, onnx_path, specs, sets, p.tolerance) if sets else []
            why = f"does not match onnxruntime on the ONNX ({'; '.join(wrong)})" if wrong else ""
        except StepError as exc:
            if not specs:
                raise
            why, first = "failed", exc.message
        else:
            first = why
        if why:
            ctx.log.warning("onnx2tf's default conversion %s; static-shape retry", first)
            shutil.rmtree(out, ignore_errors=True)
            layout, notices = convert_checked(ctx, onnx_path, out, specs, sets, p.tolerance, first)
            meta["notices"] = [static_notice(specs, why), *notices]
            meta["static_shapes"] = {s["name"]: s["shape"] for s in specs}
        shutil.move(str(out), str(ctx.output))
        return {"layout": layout, **meta}


def static_notice(specs: list[dict[str, Any]], why: str) -> str:
    shapes = ", ".join(f"{s['name']} {list(s['shape'])}" for s in specs)
    return STATIC_NOTICE.format(why=why, shapes=shapes)


def convert_static(
    ctx: StepContext,
    onnx_path: Path,
    out: Path,
    specs: list[dict[str, Any]],
    first: str,
    literal: bool = False,
) -> dict[str, Any]:
    """The retry: declared shapes, pseudo Erf, every input in the source layout."""
    from modelbuild.errors import StepError

    try:
        static_path = _static_onnx(ctx, onnx_path, specs)
        return convert(
            ctx,
            static_path,
            out,
            [s["name"] for s in specs if 3 <= len(s["shape"]) <= 5],  # what onnx2tf moves
            static={s["name"]: list(s["shape"]) for s in specs},
            pseudo_erf=True,
            literal=literal,
        )
    except StepError as exc:
        raise StepError(
            f"onnx2tf failed, by default ({_short(first)}) and from a static-shape graph "
            f"with pseudo Erf ({_short(exc.message)})",
            hint="the log has onnx2tf's trace; another opset, or an ONNX/OpenVINO target",
        ) from None


def _static_onnx(ctx: StepContext, onnx_path: Path, specs: list[dict[str, Any]]) -> Path:
    """The graph with every input at its declared shape, simplified by onnxsim, which then
    folds the shape arithmetic (the source of onnx2tf's bool Mul and dimension mismatches)."""
    import onnx
    import onnxsim

    from modelbuild.errors import StepError

    model = onnx.load(str(onnx_path))
    shapes = {s["name"]: [int(d) for d in s["shape"]] for s in specs}
    try:
        model, ok = onnxsim.simplify(model, overwrite_input_shapes=shapes)
    except Exception as exc:
        raise StepError(f"onnxsim could not fix the input shapes: {_short(str(exc))}") from exc
    if not ok:
        raise StepError("onnxsim could not validate the static-shape graph")
    out = ctx.workdir / "static.onnx"
    onnx.save(model, str(out))
    return out


# TensorFlow's root scope names (tf.Variable names onnx2tf takes from ONNX node names, e.g.
# for grouped convolutions): torch's exporter starts node names with "/", which TF refuses
# when it saves ("'/features/features.3/Conv/kernel' is not a valid root scope name").
_SCOPE_BAD = re.compile(r"[^A-Za-z0-9_./>-]")


def scope_safe(name: str) -> str:
    """A node name TensorFlow accepts as a root scope name (the same name when it already is)."""
    fixed = _SCOPE_BAD.sub("_", name.lstrip("/"))
    if not fixed or not (fixed[0].isalnum() or fixed[0] == "."):
        fixed = "n" + fixed
    return fixed


def _sanitized_copy(onnx_path: Path, dst: Path) -> int:
    """Copy the ONNX to ``dst`` with every node name made scope-safe (and kept unique);
    the number of nodes renamed. Tensor names (the graph's inputs and outputs) are untouched."""
    import onnx

    model = onnx.load(str(onnx_path))
    taken: set[str] = set()
    renamed = 0

    def fix(graph: Any) -> None:
        nonlocal renamed
        for node in graph.node:
            name = scope_safe(node.name) if node.name else ""
            if name:
                base, i = name, 1
                while name in taken:
                    name, i = f"{base}_{i}", i + 1
                taken.add(name)
            if name != node.name:
                node.name, renamed = name, renamed + 1
            for attr in node.attribute:  # If/Loop/Scan bodies
                if attr.type == onnx.AttributeProto.GRAPH:
                    fix(attr.g)
                for g in attr.graphs:
                    fix(g)

    fix(model.graph)
    big = model.ByteSize() > 1_500_000_000  # protobuf's 2 GiB limit: weights beside it
    onnx.save(model, str(dst), save_as_external_data=big)
    os.chmod(dst, 0o644)
    return renamed


def _short(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[0] if lines else text)[:400]


def convert(
    ctx: StepContext,
    onnx_path: Path,
    out: Path,
    keep: list[str],
    static: dict[str, list[int]] | None = None,
    pseudo_erf: bool = False,
    literal: bool = False,
) -> dict[str, Any]:
    """One onnx2tf run into ``out`` (a SavedModel with its layout map); the layout map."""
    from modelbuild.errors import StepError

    src = ctx.workdir / "model.onnx"
    renamed = _sanitized_copy(onnx_path, src)  # never let onnx2tf rewrite a cached file
    if renamed:
        ctx.log.info("renamed %d ONNX node(s) for TensorFlow's scope names", renamed)
    extra: dict[str, Any] = {}
    if static:
        extra["overwrite_input_shape"] = [
            f"{n}:{','.join(str(d) for d in shape)}" for n, shape in static.items()
        ]
    if pseudo_erf:
        extra["replace_to_pseudo_operators"] = ["erf"]
    from modelbuild.formats.savedmodel.onnx2tf_fixes import literal_layouts

    fixes = literal_layouts() if literal else contextlib.nullcontext()
    with _onnx2tf_env(ctx), fixes:
        import onnx2tf

        try:
            # disable_model_save: onnx2tf hands back the Keras model before writing the
            # SavedModel and its two .tflite files (60% of its time), which TFLite targets
            # make themselves from the SavedModel, with their own settings.
            model = onnx2tf.convert(
                input_onnx_file_path=str(src),
                output_folder_path=str(out),
                not_use_onnxsim=True,
                keep_ncw_or_nchw_or_ncdhw_input_names=keep or None,
                onnxruntime_output_memmap_dir=str(ctx.workdir / "ort_memmap"),
                disable_model_save=True,
                verbosity="info",
                **extra,
            )
        except SystemExit as exc:  # onnx2tf calls sys.exit(1) on some errors
            raise StepError(
                f"onnx2tf stopped (exit status {exc.code}); its reasons are in the log"
            ) from None
        except Exception as exc:
            raise StepError(
                f"onnx2tf failed: {type(exc).__name__}: {str(exc)[:1500]}",
                hint="the log has onnx2tf's trace; another opset may convert",
            ) from exc
    try:
        _save(ctx, model, out)
        layout = _layout(onnx_path, out, model, keep)
    finally:
        import tf_keras

        # Workers are reused: free the graph, and keep Keras' name counters from giving
        # the next conversion's tensors suffixed names.
        del model
        tf_keras.backend.clear_session()
    extra_dir = out / "assets.extra"
    extra_dir.mkdir(exist_ok=True)
    (extra_dir / "modelbuild.json").write_text(json.dumps(layout, indent=1, sort_keys=True))
    ctx.log.info("layout: %s", json.dumps(layout))
    return layout


@contextlib.contextmanager
def _onnx2tf_env(ctx: StepContext) -> Iterator[None]:
    """Run onnx2tf in the scratch folder, with the venv's tools first on PATH and no downloads.

    onnx2tf looks for helper files in the current directory and, for some image
    models, downloads sample images from GitHub; a build must never reach the
    network, so that function is replaced by seeded random images."""
    import numpy as np
    import onnx2tf.onnx2tf  # noqa: F401  (the module, not the re-exported function)

    mod = sys.modules["onnx2tf.onnx2tf"]

    def sample_images() -> NDArray[Any]:
        ctx.log.info("onnx2tf asked for sample images: using seeded random ones (no download)")
        return np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32)

    saved = (os.getcwd(), os.environ.get("PATH", ""), mod.download_test_image_data)
    os.chdir(ctx.workdir)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + saved[1]
    mod.download_test_image_data = sample_images  # type: ignore[attr-defined]
    try:
        yield
    finally:
        mod.download_test_image_data = saved[2]  # type: ignore[attr-defined]
        os.environ["PATH"] = saved[1]
        os.chdir(saved[0])


def _save(ctx: StepContext, model: Any, out: Path) -> None:
    """Write the SavedModel the way onnx2tf does (its fallback included)."""
    import tensorflow as tf

    from modelbuild.errors import StepError

    try:
        tf.saved_model.save(model, str(out))
        return
    except Exception as exc:  # onnx2tf falls back to an export archive on some models
        ctx.log.warning(
            "tf.saved_model.save failed (%s: %s); trying an export archive", type(exc).__name__, exc
        )
        shutil.rmtree(out, ignore_errors=True)
    import tf_keras

    try:
        archive = tf_keras.export.ExportArchive()
        archive.add_endpoint(
            name="serving_default",
            fn=lambda *inputs: model(inputs),
            input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs],
        )
        archive.write_out(str(out))
    except Exception as exc:
        raise StepError(
            f"TensorFlow cannot save the converted model: {type(exc).__name__}: {exc}"
        ) from exc


def _layout(onnx_path: Path, saved: Path, model: Any, keep: list[str]) -> dict[str, Any]:
    """Which tensors onnx2tf moved to channels-last, and their signature names."""
    import onnx
    import tensorflow as tf

    from modelbuild.errors import StepError
    from modelbuild.formats.savedmodel.layout import channels_first_perm, channels_last_perm

    g = onnx.load(str(onnx_path), load_external_data=False).graph

    def dims(vi: Any) -> list[int | None]:
        return [
            d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim
        ]

    inits = {i.name for i in g.initializer}
    onnx_in = [(vi.name, dims(vi)) for vi in g.input if vi.name not in inits]
    onnx_out = [(vi.name, dims(vi)) for vi in g.output]
    sig = tf.saved_model.load(str(saved)).signatures["serving_default"]
    in_specs = {k: v.shape.as_list() for k, v in sig.structured_input_signature[1].items()}
    out_specs = {k: v.shape.as_list() for k, v in sig.structured_outputs.items()}
    nhwc_out = dict(getattr(model, "onnx_output_layouts", None) or {})

    def key(name: str, specs: dict[str, Any], kind: str) -> str:
        for cand in (name, name.replace(":", "__"), name.lstrip("/")):
            if cand in specs:
                return cand
        if len(specs) == 1:
            return next(iter(specs))
        raise StepError(
            f"cannot find ONNX {kind} {name!r} in the SavedModel's signature ({', '.join(specs)})"
        )

    inputs = []
    for name, shape in onnx_in:
        k = key(name, in_specs, "input")
        # onnx2tf's rule (ops/Input.py): 3-5D inputs go channels-last unless kept.
        perm = channels_last_perm(len(shape)) if 3 <= len(shape) <= 5 and name not in keep else None
        inputs.append({"name": name, "key": k, "perm": perm})
    outputs = []
    for name, shape in onnx_out:
        k = key(name, out_specs, "output")
        tf_shape = out_specs[k]
        perm = None
        rank = len(tf_shape)
        if 3 <= rank <= 5:
            back = channels_first_perm(rank)
            moved = [tf_shape[i] for i in back]
            # onnx2tf says which outputs it left channels-last; shapes back it up when it doesn't.
            if nhwc_out.get(name) or (
                not _compatible(tf_shape, shape) and _compatible(moved, shape)
            ):
                perm = back
        outputs.append({"name": name, "key": k, "perm": perm})
    return {"signature": "serving_default", "inputs": inputs, "outputs": outputs}


def _compatible(a: list[int | None], b: list[int | None]) -> bool:
    """Same rank, and every dimension equal where both are known."""
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=False)
    )


STEP = SavedModelFromOnnx()
