"""CoreML targets: real coremltools conversions; on Linux a spec check instead of numbers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import build_json, statuses, write_recipe

needs_coremltools = pytest.mark.skipif(
    importlib.util.find_spec("coremltools") is None, reason="the coreml extra is not installed"
)
off_macos = pytest.mark.skipif(
    sys.platform == "darwin", reason="on macOS the check compares numbers, not the spec"
)

FP16 = {"format": "coreml", "precision": "fp16"}
IMAGE = {
    "format": "coreml",
    "precision": "fp16",
    "image": {"scale": 0.00392156862745098, "bias": [0.0]},
    # An image input is one picture: the batch axis is fixed, so the target says so (the
    # dynamic-shape contract refuses an artifact that froze a declared axis silently).
    "static_shapes": True,
}
INT8 = {"format": "coreml", "precision": "int8", "quantize": {"weight_threshold": 0}}
SPEC = {
    "name": "images",
    "shape": [1, 3, 16, 16],
    "dtype": "float32",
    "dynamic": {"0": "batch"},
    "range": [0.0, 1.0],
}


# -- recipe checks (no coremltools needed) ---------------------------------------------


@pytest.mark.parametrize(
    "target, key, words",
    [
        (
            {"format": "coreml", "method": "export", "precision": "fp32", "quantize": {}},
            "targets.c.quantize",
            "int8 targets only",
        ),
        (
            {"format": "coreml", "precision": "int8", "deployment_target": "iOS15"},
            "targets.c.deployment_target",
            "iOS16",
        ),
        (
            {"format": "coreml", "ranges": {"seq": {"max": 4}}},
            "targets.c.ranges.seq",
            "no input has a dynamic axis named 'seq'",
        ),
        (
            {"format": "coreml", "ranges": {"batch": {"min": 2}}},
            "targets.c.ranges.batch",
            "must hold its declared size",
        ),
        ({"format": "coreml", "image": {"color_layout": "G"}}, "targets.c.image", "[1, 1, H, W]"),
        (
            {"format": "coreml", "image": {"bias": [0.1, 0.2]}},
            "targets.c.image.bias",
            "1 or 3 values",
        ),
        (
            {"format": "coreml", "image": {"input": "pixels"}},
            "targets.c.image.input",
            "no input named 'pixels'",
        ),
    ],
)
def test_unsupported_settings_are_recipe_errors(
    tiny_cnn: Path, target: dict[str, Any], key: str, words: str
) -> None:
    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    path = write_recipe(tiny_cnn, {"c": target})
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.key_path == key and words in info.value.message
    assert info.value.line is not None


def test_sources_coreml_cannot_take(tiny_cnn: Path) -> None:
    from modelbuild.errors import RecipeError
    from modelbuild.recipe.load import load_recipe

    onnx_src = {"framework": "onnx", "model": "model.onnx"}
    (tiny_cnn / "model.onnx").write_bytes(b"")
    with pytest.raises(RecipeError, match="ONNX source"):
        load_recipe(write_recipe(tiny_cnn, {"c": FP16}, source=onnx_src))
    ts_src = {"framework": "torchscript", "model": "model.pt"}
    with pytest.raises(RecipeError, match="torch.export needs a pytorch source"):
        load_recipe(write_recipe(tiny_cnn, {"c": dict(FP16, method="export")}, source=ts_src))


def test_plan_shares_the_trace_with_torchscript_targets(tiny_cnn: Path) -> None:
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    recipe = load_recipe(
        write_recipe(
            tiny_cnn,
            {
                "ts": {"format": "torchscript", "method": "trace"},
                "c16": FP16,
                "c8": INT8,
                "cx": dict(FP16, method="export", ranges={"batch": {"max": 8}}),
            },
        )
    )
    plan = make_plan(recipe)
    assert not plan.errors
    steps = [a.step for a in plan.actions.values()]
    assert steps.count("torchscript_from_torch") == 1  # one trace feeds ts, c16 and c8
    conv = {
        plan.actions[plan.targets[n].artifact].params["precision"]: plan.actions[
            plan.targets[n].artifact
        ]
        for n in ("c16", "c8", "cx")
    }
    assert conv["int8"].params["deployment_target"] == "iOS16"  # 8-bit weights need it
    assert conv["int8"].params["ranges"] == {"batch": [1, 16]}  # default: max(4n, 16)
    export = plan.actions[plan.targets["cx"].artifact]
    assert "model" not in export.inputs and "checkpoint" in export.inputs
    assert export.params["ranges"] == {"batch": [1, 8]}
    assert plan.targets["c16"].output_name == "model.mlpackage"


# -- the converter and the spec check (real coremltools) -------------------------------


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()
    path = tmp_path_factory.mktemp("trace") / "model.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, torch.rand(1, 3, 16, 16)), str(path))
    return path


def _convert(trace: Path, out: Path, **params: Any) -> Path:
    from modelbuild.formats.coreml.coreml_from_torch import STEP
    from modelbuild.step import StepContext

    p = {
        "precision": "fp16",
        "method": "trace",
        "deployment_target": "iOS15",
        "ranges": {"batch": [1, 16]},
        "inputs": [SPEC],
        "outputs": ["logits"],
        **params,
    }
    out.mkdir(parents=True)
    (out / "work").mkdir()
    ctx = StepContext(
        inputs={"model": trace},
        params=p,
        output=out / STEP.output,
        workdir=out / "work",
        log=logging.getLogger("test"),
        recipe_dir=out,
        cache_dir=out / "cache",
    )
    STEP.run(ctx)
    return ctx.output


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _sets() -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    sets = [{"images": rng.uniform(0, 1, (n, 3, 16, 16)).astype(np.float32)} for n in (1, 2)]
    refs = [{"logits": np.zeros((n, 4), np.float32)} for n in (1, 2)]
    return sets, refs


@needs_coremltools
def test_fp16_package_is_reproducible_and_keeps_float32_io(
    trace_file: Path, tmp_path: Path
) -> None:
    from modelbuild.formats.runtime import load_runner

    a = _convert(trace_file, tmp_path / "a")
    b = _convert(trace_file, tmp_path / "b")
    assert a.name == "model.mlpackage" and (a / "Manifest.json").is_file()
    # No conversion date, no random Manifest ids: same inputs, same bytes.
    assert _tree_digest(a) == _tree_digest(b)
    r = load_runner(
        a, {"runtime": "coreml", "precision": "fp16", "numeric": False}, ["images"], ["logits"]
    )
    spec = r.spec.description
    assert "com.github.apple.coremltools.conversion_date" not in spec.metadata.userDefined
    assert spec.input[0].type.multiArrayType.dataType == 65568  # FLOAT32, not FLOAT16
    assert spec.output[0].type.multiArrayType.dataType == 65568
    assert r.accepts({"images": [16, 3, 16, 16]}) and not r.accepts({"images": [17, 3, 16, 16]})
    sets, refs = _sets()
    assert r.check_spec(sets, refs) == []


@needs_coremltools
@off_macos
def test_spec_check_finds_what_does_not_match(trace_file: Path, tmp_path: Path) -> None:
    from modelbuild.formats.runtime import load_runner

    fp32 = _convert(trace_file, tmp_path / "fp32", precision="fp32")
    fixed = _convert(trace_file, tmp_path / "fixed", inputs=[dict(SPEC, dynamic={})])
    sets, refs = _sets()

    def problems(
        path: Path,
        precision: str,
        inputs: list[str] = None,
        outputs: list[str] = None,
        refs: list[dict] = refs,
    ) -> str:
        if outputs is None:
            outputs = ["logits"]
        if inputs is None:
            inputs = ["images"]
        r = load_runner(
            path, {"runtime": "coreml", "precision": precision, "numeric": False}, inputs, outputs
        )
        assert r.numeric is False and "numeric parity was not run" in r.note
        with pytest.raises(RuntimeError, match="only be run on macOS"):
            r.run(sets[0])
        return "\n".join(r.check_spec(sets, refs))

    assert problems(fp32, "fp32") == ""
    assert "fp16 was asked for" in problems(fp32, "fp16")
    assert "int8 was asked for" in problems(fp32, "int8")
    assert "inputs are ['images']" in problems(fp32, "fp32", inputs=["x"])
    assert "outputs are ['logits'], expected ['probs']" in problems(fp32, "fp32", outputs=["probs"])
    two = [dict(r, extra=r["logits"]) for r in refs]
    assert "the model has 1 outputs, the source model 2" in problems(fp32, "fp32", refs=two)
    # A frozen batch takes the declared set only; a set of none that fits is a problem.
    r = load_runner(
        fixed, {"runtime": "coreml", "precision": "fp16", "numeric": False}, ["images"], ["logits"]
    )
    assert r.accepts({"images": [1, 3, 16, 16]}) and not r.accepts({"images": [2, 3, 16, 16]})
    assert r.check_spec(sets, refs) == []
    assert "no verification input set fits" in "\n".join(r.check_spec(sets[1:], refs[1:]))


@needs_coremltools
def test_int8_quantizes_weights_or_says_why_not(trace_file: Path, tmp_path: Path) -> None:
    from modelbuild.errors import StepError
    from modelbuild.formats.coreml.layout import QUANT_OPS, count_ops
    from modelbuild.formats.runtime import load_runner

    out = _convert(
        trace_file,
        tmp_path / "q",
        precision="int8",
        deployment_target="iOS16",
        quantize={"weight_threshold": 0},
    )
    r = load_runner(
        out, {"runtime": "coreml", "precision": "int8", "numeric": False}, ["images"], ["logits"]
    )
    assert count_ops(r.spec, QUANT_OPS) == 2  # the conv and the linear weight
    assert r.check_spec(*_sets()) == []
    # Every weight here is below coremltools' default threshold of 2048 elements.
    with pytest.raises(StepError, match="no weight was quantized"):
        _convert(
            trace_file, tmp_path / "q2", precision="int8", deployment_target="iOS16", quantize={}
        )


@needs_coremltools
def test_image_input_takes_one_picture_with_scale_and_bias(
    trace_file: Path, tmp_path: Path
) -> None:
    from modelbuild.formats.runtime import load_runner

    image = {"input": "images", "scale": 1 / 255, "bias": [0.0], "color_layout": "RGB"}
    out = _convert(trace_file, tmp_path / "img", image=image)
    r = load_runner(
        out,
        {"runtime": "coreml", "precision": "fp16", "image": image, "numeric": False},
        ["images"],
        ["logits"],
    )
    img = r.spec.description.input[0].type.imageType
    assert (img.width, img.height) == (16, 16)
    ops = {
        op.type
        for op in r.spec.mlProgram.functions["main"]
        .block_specializations[r.spec.mlProgram.functions["main"].opset]
        .operations
    }
    assert "mul" in ops  # the scale, applied inside the program
    assert r.accepts({"images": [1, 3, 16, 16]}) and not r.accepts({"images": [2, 3, 16, 16]})
    assert r.check_spec(*_sets()) == []


# -- the whole build (CLI) ---------------------------------------------------------------


@pytest.mark.slow
@needs_coremltools
@off_macos
def test_build_publishes_mlpackage_and_records_spec_only_check(tiny_cnn: Path) -> None:
    write_recipe(
        tiny_cnn, {"torchscript": {"format": "torchscript"}, "coreml": FP16, "coreml-img": IMAGE}
    )
    res = build_json(tiny_cnn)
    assert res["ok"], res
    st = statuses(res)
    assert [a["step"] for a in res["actions"]].count("torchscript_from_torch") == 1
    assert st["verify[coreml]"] == "built"
    pkg = Path(res["targets"]["coreml"]["path"])
    assert pkg.name == "model.mlpackage" and (pkg / "Manifest.json").is_file()
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())["targets"]
    for name in ("coreml", "coreml-img"):
        parity = lock[name]["parity"]
        assert parity["numeric"] is False and parity["passed"] is True
        assert "numeric parity was not run" in parity["note"]
        assert "coremltools" in lock[name]["tools"]
    assert lock["coreml"]["parity"]["sets_checked"] == 4
    # An image is one picture: the batch-2 sets do not fit and are skipped, not failed.
    assert lock["coreml-img"]["parity"]["sets_checked"] == 2
    assert lock["coreml-img"]["parity"]["sets_skipped"] == 2
    assert lock["torchscript"]["parity"]["numeric"] is True
    again = build_json(tiny_cnn)
    assert set(statuses(again).values()) == {"cached"}
