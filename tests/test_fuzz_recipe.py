"""Property: any input to the recipe loader gives a Recipe or a ModelBuildError, never
another exception (hypothesis)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelbuild.errors import ModelBuildError
from modelbuild.recipe.load import Recipe, load_recipe

KEYS = [
    "modelbuild",
    "name",
    "extends",
    "source",
    "inputs",
    "outputs",
    "opset",
    "verify",
    "targets",
    "output_dir",
    "framework",
    "model",
    "checkpoint",
    "args",
    "shape",
    "dtype",
    "dynamic",
    "range",
    "format",
    "precision",
    "quantize",
    "mode",
    "calibration",
    "data",
    "tolerance",
    "atol",
    "rtol",
    "cosine",
    "simplify",
    "method",
    "samples",
    "0",
    "1",
]
VALUES = [
    "onnx",
    "fp16",
    "int8",
    "pytorch",
    "torchscript",
    "models.tiny_cnn:TinyCNN",
    "weights/tiny_cnn.safetensors",
    "recipe:cpu-server",
    "recipe:nope",
    "../x",
    "/etc",
    "float32",
    "int64",
    "batch",
    "static",
    "dynamic",
    "trace",
    "script",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 40),
    st.floats(allow_nan=True),
    st.sampled_from(VALUES),
    st.text(max_size=8),
)
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), kids, max_size=6),
    ),
    max_leaves=30,
)

BASE = {
    "modelbuild": 1,
    "name": "fuzz",
    "source": {
        "framework": "pytorch",
        "model": "models.tiny_cnn:TinyCNN",
        "checkpoint": "weights/tiny_cnn.safetensors",
    },
    "inputs": {"images": {"shape": [1, 3, 8, 8], "dynamic": {0: "batch"}}},
    "targets": {"onnx": {"format": "onnx"}},
}

_DIR = Path(tempfile.mkdtemp(prefix="modelbuild-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)
(_DIR / "models").mkdir()
(_DIR / "models" / "tiny_cnn.py").write_text("")
(_DIR / "weights").mkdir()
(_DIR / "weights" / "tiny_cnn.safetensors").write_bytes(b"")


def check(text: str) -> None:
    path = _DIR / "model.build.yaml"
    path.write_text(text)
    try:
        r = load_recipe(path)
    except ModelBuildError as exc:
        assert exc.render()  # renders without raising
        return
    assert isinstance(r, Recipe)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(trees)
def test_any_document(doc: object) -> None:
    check(yaml.safe_dump(doc))


@FUZZ
@given(st.lists(st.sampled_from(list(BASE) + KEYS[:5]), max_size=3), trees)
def test_a_valid_recipe_with_one_part_replaced(keys: list[str], value: object) -> None:
    doc = dict(BASE)
    for k in keys:
        doc[k] = value
    check(yaml.safe_dump(doc))


@FUZZ
@given(
    st.sampled_from(sorted(BASE)), st.sampled_from(sorted({"source", "inputs", "targets"})), trees
)
def test_nested_values(_: str, section: str, value: object) -> None:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    sec = doc[section]
    first = next(iter(sec))
    sec[first] = value
    check(yaml.safe_dump(doc))


@FUZZ
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.integers(0, 400), st.text(max_size=5))
def test_a_valid_recipe_cut_or_spliced(at: int, splice: str) -> None:
    text = yaml.safe_dump(BASE)
    check(text[:at] + splice + text[at:])
