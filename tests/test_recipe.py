"""Loading, extends, validation errors with file:line:column and key paths, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbuild.errors import RecipeError
from modelbuild.recipe.load import load_recipe
from modelbuild.recipe.schema import SCHEMA_PATH, schema_text
from tests.conftest import EXAMPLES, run_cli

GOOD = """\
modelbuild: 1
name: t
source:
  framework: pytorch
  model: models.tiny_cnn:TinyCNN
  checkpoint: weights/tiny_cnn.safetensors
inputs:
  images: {shape: [1, 3, 32, 32], dynamic: {0: batch}}
targets:
  onnx: {format: onnx, precision: fp32}
"""


def write(tmp: Path, text: str, name: str = "model.build.yaml") -> Path:
    (tmp / "models").mkdir(exist_ok=True)
    (tmp / "models" / "tiny_cnn.py").write_text("# model\n")
    p = tmp / name
    p.write_text(text)
    return p


def error_of(path: Path) -> RecipeError:
    with pytest.raises(RecipeError) as ei:
        load_recipe(path)
    return ei.value


def test_examples_load_and_extends_merges_bundled_recipe() -> None:
    r = load_recipe(EXAMPLES / "tiny_cnn" / "model.build.yaml")
    assert r.name == "tiny-cnn"
    # onnx-int8-dynamic is the recipe's own; cpu-server's targets are merged in and overridden.
    assert {"onnx", "onnx-int8", "onnx-fp16", "torchscript"} <= set(r.targets)
    assert r.targets["onnx-int8"].quantize.mode == "static"  # this file wins over cpu-server
    assert r.inputs["images"].dynamic == {"0": "batch"}
    t = load_recipe(EXAMPLES / "text_classifier" / "model.build.yaml")
    assert list(t.inputs) == ["input_ids", "attention_mask"]


def test_unknown_key_names_line_column_path_and_suggestion(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        GOOD.replace(
            "onnx: {format: onnx, precision: fp32}", "onnx: {format: onnx, precison: fp32}"
        ),
    )
    e = error_of(p)
    assert (e.line, e.key_path) == (10, "targets.onnx.precison")
    assert e.column == 24
    assert "unknown key 'precison'" in e.message and "precision" in (e.hint or "")
    assert (
        e.render().startswith(f"{p}:10:24: targets.onnx.precison:")
        or ":10:24: targets.onnx.precison:" in e.render()
    )


def test_wrong_type_and_enum(tmp_path: Path) -> None:
    e = error_of(
        write(tmp_path, GOOD.replace("shape: [1, 3, 32, 32]", "shape: [1, three, 32, 32]"))
    )
    assert e.line == 8 and e.key_path == "inputs.images.shape.1" and "expected integer" in e.message
    e = error_of(write(tmp_path, GOOD.replace("precision: fp32", "precision: fp64")))
    assert e.line == 10 and e.key_path == "targets.onnx.precision" and "fp64" in e.message
    assert "fp32" in (e.hint or "")
    e = error_of(write(tmp_path, GOOD.replace("format: onnx,", "format: onxx,")))
    assert e.key_path == "targets.onnx.format" and "onnx" in (e.hint or "")


def test_missing_required_key(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, GOOD.replace("name: t\n", "")))
    assert "missing required key 'name'" in e.message and e.line == 1


def test_malformed_yaml_has_position(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, GOOD.replace("inputs:\n", "inputs: [\n")))
    assert "malformed YAML" in e.message and e.line is not None and e.column is not None


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, GOOD + "name: again\n"))
    assert "duplicate key 'name'" in e.message and e.line == 11


def test_unsupported_format_precision_pair(tmp_path: Path) -> None:
    e = error_of(
        write(
            tmp_path,
            GOOD.replace(
                "{format: onnx, precision: fp32}", "{format: torchscript, precision: int8}"
            ),
        )
    )
    assert e.key_path == "targets.onnx.precision"


def test_extends_relative_and_cycle(tmp_path: Path) -> None:
    write(tmp_path, "modelbuild: 1\nopset: 13\nextends: [b.yaml]\n", "a.yaml")
    write(tmp_path, "modelbuild: 1\nextends: [a.yaml]\n", "b.yaml")
    e = error_of(write(tmp_path, GOOD + "extends: [a.yaml]\n"))
    assert "cycle" in e.message and "a.yaml" in e.message
    write(tmp_path, "modelbuild: 1\nopset: 13\nverify: {samples: 2}\n", "a.yaml")
    r = load_recipe(write(tmp_path, GOOD + "extends: [a.yaml]\nverify: {seed: 3}\n"))
    assert r.opset == 13 and r.verify.samples == 2 and r.verify.seed == 3  # deep merge


def test_unknown_bundled_recipe(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, GOOD + "extends: [recipe:gpu-magic]\n"))
    assert "gpu-magic" in e.message and "cpu-server" in (e.hint or "")


def test_dynamic_axis_out_of_range(tmp_path: Path) -> None:
    e = error_of(write(tmp_path, GOOD.replace("dynamic: {0: batch}", "dynamic: {7: batch}")))
    assert e.key_path == "inputs.images.dynamic.7"


def test_committed_schema_is_fresh() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "schemas/model.build.schema.json is stale: regenerate it with `modelbuild schema > "
        "schemas/model.build.schema.json`"
    )
    schema = json.loads(schema_text())
    assert schema["properties"]["targets"]["additionalProperties"]["allOf"]


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    assert run_cli(["validate", str(good)], tmp_path).returncode == 0
    bad = write(tmp_path, GOOD.replace("opset", "opsett") + "opsett: 3\n", "bad.yaml")
    proc = run_cli(["validate", str(bad)], tmp_path, check=2)
    assert "bad.yaml:11:1: opsett: unknown key 'opsett'" in proc.stderr


def test_init_writes_a_valid_recipe(tmp_path: Path) -> None:
    run_cli(["init", "--name", "demo"], tmp_path)
    text = (tmp_path / "model.build.yaml").read_text()
    assert "name: demo" in text
    run_cli(["init"], tmp_path, check=2)  # refuses to overwrite
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_model.py").write_text("")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "my_model.safetensors").write_bytes(b"")
    run_cli(["validate"], tmp_path)


def test_schema_command_prints_the_schema(tmp_path: Path) -> None:
    out = run_cli(["schema"], tmp_path).stdout
    assert json.loads(out)["title"].startswith("model.build.yaml")
