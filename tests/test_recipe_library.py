"""The bundled recipe library: the tiny CNN built through every recipe this machine can run
(real conversions, one cache for the module so the shared export is made once); the GPU
ones planned and refused with the reason; `modelbuild recipes` lists and shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelbuild.recipe.load import BUNDLED_DIR
from tests.conftest import build_json, copy_example, run_cli

LIBRARY = {
    "cpu-server",
    "mobile",
    "nvidia-gpu",
    "intel-cpu",
    "arm-cpu",
    "android",
    "ios",
    "jetson",
}
GPU_REFUSAL = "a TensorRT engine is built on the GPU it will run on"


def test_the_library_is_what_the_readme_says() -> None:
    assert {p.stem for p in BUNDLED_DIR.glob("*.yaml")} == LIBRARY
    for p in BUNDLED_DIR.glob("*.yaml"):
        data = yaml.safe_load(p.read_text())
        assert data["modelbuild"] == 1 and data["targets"], p
        assert len(data["description"]) > 40 and "\n" not in data["description"], p
        assert p.read_text().startswith("# Bundled recipe: "), p  # the header says how to use it
        precisions = {t.get("precision", "fp32") for t in data["targets"].values()}
        tolerances = (data.get("verify") or {}).get("tolerance") or {}
        # every precision the recipe builds has the tolerance it wants (fp32: the default)
        assert precisions - {"fp32"} <= set(tolerances), (p, precisions, tolerances)


def _through(root: Path, name: str, monkeypatch: pytest.MonkeyPatch, **targets: Any) -> Path:
    """tiny_cnn extending only recipe:NAME (its own targets, opset and tolerances removed)."""
    monkeypatch.setenv("MODELBUILD_CACHE", str(root / "cache"))
    folder = copy_example("tiny_cnn", root / name)
    data = yaml.safe_load((folder / "model.build.yaml").read_text())
    for key in ("targets", "opset", "verify"):
        data.pop(key, None)
    data["extends"] = [f"recipe:{name}"]
    if targets:
        data["targets"] = targets
    (folder / "model.build.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def library_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("library")


# recipe → (targets verified here, overrides for the tiny model)
RUNNABLE: dict[str, tuple[set[str], dict[str, Any]]] = {
    "cpu-server": ({"onnx", "onnx-int8"}, {}),
    "intel-cpu": ({"openvino", "openvino-int8", "openvino-bf16", "onnx-int8"}, {}),
    "arm-cpu": ({"onnx-int8", "tflite-int8"}, {}),
    "android": ({"tflite-fp16", "tflite-int8"}, {}),
    "mobile": ({"onnx-fp16", "torchscript", "tflite-fp16", "coreml-fp16"}, {}),
    # the tiny CNN's weights are all under the 2048-element threshold real models want
    "ios": (
        {"coreml-fp16", "coreml-int8"},
        {"coreml-int8": {"quantize": {"weight_threshold": 64}}},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_builds_through_each_recipe_this_machine_runs(
    name: str, library_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.formats.openvino.cpu import bf16_support

    want, overrides = RUNNABLE[name]
    folder = _through(library_root, name, monkeypatch, **overrides)
    bf16_refused = name == "intel-cpu" and not bf16_support()[0]
    res = build_json(folder, "--keep-going", check=1 if bf16_refused else 0)
    if bf16_refused:  # the one target a CPU without bf16 cannot check: refused, the rest built
        assert "OpenVINO bf16 needs a CPU" in res["targets"]["openvino-bf16"]["error"]
        want = want - {"openvino-bf16"}
    assert {n for n, t in res["targets"].items() if t.get("verified")} == want, res
    lock = json.loads((folder / "model.build.lock").read_text())["targets"]
    recipe = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())
    for target in want:
        entry = lock[target]
        tol = recipe.get("verify", {}).get("tolerance", {}).get(entry["precision"])
        if tol and entry["parity"].get("tolerance") is not None:  # CoreML on Linux: spec only
            assert entry["parity"]["tolerance"] == tol, (target, entry["parity"])


@pytest.mark.parametrize("name", ["nvidia-gpu", "jetson"])
def test_gpu_recipes_are_planned_and_refused_with_the_reason(
    name: str, library_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild.formats.tensorrt.gpu import probe

    if probe() is not None:
        pytest.skip("an NVIDIA GPU is present: these recipes build here")
    folder = _through(library_root, name, monkeypatch)
    proc = run_cli(["plan", "--json"], folder, check=1)
    out = json.loads(proc.stdout)
    refused = {e["path"].split(".")[1] for e in out["errors"]}
    trt = {
        n
        for n, t in yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())["targets"].items()
        if t["format"] == "tensorrt"
    }
    assert refused == trt and trt
    assert all(GPU_REFUSAL in e["message"] for e in out["errors"])
    assert all("NVIDIA" in (e["hint"] or "") + e["message"] for e in out["errors"])
    if name == "nvidia-gpu":  # its ONNX fp16 target builds anywhere
        res = build_json(folder, "--keep-going", check=1)
        assert res["targets"]["onnx-fp16"]["verified"] is True
        assert GPU_REFUSAL in res["targets"]["trt-fp16"]["error"]


def test_recipes_lists_bundled_with_a_line_each_and_shows_one(tmp_path: Path) -> None:
    out = json.loads(run_cli(["recipes", "--json"], tmp_path).stdout)
    bundled = {r["name"]: r for r in out["recipes"] if r["source"] == "bundled"}
    assert set(bundled) == LIBRARY
    assert bundled["intel-cpu"]["extends"] == "recipe:intel-cpu"
    assert "bf16" in bundled["intel-cpu"]["description"]
    text = run_cli(["recipes"], tmp_path).stdout
    assert all(f"recipe:{n} " in text for n in LIBRARY)
    assert len(text.splitlines()) >= len(LIBRARY)
    show = run_cli(["recipes", "show", "android"], tmp_path).stdout
    assert show == (BUNDLED_DIR / "android.yaml").read_text()
    bad = run_cli(["recipes", "show", "andriod"], tmp_path, check=2)
    assert "no recipe 'andriod'" in bad.stderr and "android" in bad.stderr
