"""ONNX sources with external data: confined to the model's folder, keyed by content.

Issue 11 items 3 and 4: a location ``../../etc/passwd`` (or an absolute one, or a
symlink out) is refused with exit 2 by the planner and by every step that reads
the model (the reference step too, which loads it in onnxruntime), before any of
it is read; a changed ``weights.bin`` rebuilds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import build_json, run_cli, statuses


def _model(folder: Path, weights: np.ndarray, location: str = "weights.bin") -> Path:
    """y = x @ W with W stored externally at ``location`` (written when inside ``folder``)."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, list(weights.shape), vals=[0.0] * weights.size)
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(weights.nbytes))):
        entry = w.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    if not os.path.isabs(location) and ".." not in location:
        (folder / location).write_bytes(weights.astype("<f4").tobytes())
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _recipe(folder: Path) -> Path:
    recipe = {
        "modelbuild": 1,
        "name": "ext",
        "source": {"framework": "onnx", "model": "m.onnx"},
        "inputs": {"x": {"shape": [2, 4], "dtype": "float32", "dynamic": {0: "batch"}}},
        "outputs": ["y"],
        "targets": {"onnx": {"format": "onnx", "precision": "fp32"}},
    }
    path = folder / "model.build.yaml"
    path.write_text(yaml.safe_dump(recipe))
    (folder / ".git").mkdir(exist_ok=True)  # the repository the recipe's paths stay inside
    return path


def _weights(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)


def _objects(cache: Path) -> list[Path]:
    return [p for p in (cache / "objects").rglob("*") if p.is_file()]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the repository whose bytes must never reach the cache."""
    p = tmp_path / "outside" / "secret.bin"
    p.parent.mkdir()
    p.write_bytes(b"TOP-SECRET-BYTES" * 4)  # 64 bytes: enough for the 48-byte tensor
    return p


def _hostile(kind: str, repo: Path, secret: Path) -> None:
    if kind == "dotdot":
        rel = os.path.relpath(secret, repo)
        assert rel.startswith("..")
        _model(repo, _weights(0), rel)
    elif kind == "absolute":
        _model(repo, _weights(0), str(secret))
    else:  # a symlink inside the folder that points out of it
        os.symlink(secret, repo / "weights.bin")
        _model(repo, _weights(0), "link-target-placeholder")
        # rewrite the location to the symlink's name (written after: _model would overwrite it)
        import onnx

        m = onnx.load(str(repo / "m.onnx"), load_external_data=False)
        for kv in m.graph.initializer[0].external_data:
            if kv.key == "location":
                kv.value = "weights.bin"
        (repo / "m.onnx").write_bytes(m.SerializeToString())


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_escaping_external_data_is_refused_before_anything_is_read(
    tmp_path: Path, cache_dir: Path, secret: Path, kind: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _hostile(kind, repo, secret)
    _recipe(repo)
    proc = run_cli(["build"], repo, check=2)
    err = proc.stderr
    assert "source.model" in err and "external data" in err, err
    assert "refused" in err
    assert not (repo / "dist").exists()
    for obj in _objects(cache_dir):  # nothing of the secret reached the cache
        assert b"TOP-SECRET" not in obj.read_bytes()
    # plan and validate-by-plan say the same, exit 2
    assert run_cli(["plan"], repo, check=2).returncode == 2


@pytest.mark.parametrize("step", ["reference", "onnx_from_file"])
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_every_step_that_reads_the_source_refuses_it(
    tmp_path: Path, secret: Path, step: str, kind: str
) -> None:
    """Each step checks on its own (a planner bug or a hand-made job cannot get past it):
    the reference step used to load the model in onnxruntime and cache the file's bytes."""
    from modelbuild.errors import SourceError
    from modelbuild.formats.onnx.onnx_from_file import STEP as FROM_FILE
    from modelbuild.parity.inputs import generate, save_sets
    from modelbuild.parity.reference import STEP as REFERENCE
    from modelbuild.step import StepContext

    repo = tmp_path / "repo"
    repo.mkdir()
    _hostile(kind, repo, secret)
    spec = {"name": "x", "shape": [2, 4], "dtype": "float32"}
    save_sets(tmp_path / "inputs.npz", generate([spec], 1, seed=0))
    params: dict[str, Any] = {"inputs": [spec], "outputs": ["y"]}
    if step == "reference":
        params["source"] = {"framework": "onnx", "model": "m.onnx"}
    out = tmp_path / "out" / "result"
    out.parent.mkdir()
    ctx = StepContext(
        inputs={"model_file": repo / "m.onnx", "inputs": tmp_path / "inputs.npz"},
        params=params,
        output=out,
        workdir=tmp_path,
        log=logging.getLogger("test"),
        recipe_dir=repo,
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(SourceError) as info:
        (REFERENCE if step == "reference" else FROM_FILE).run(ctx)
    assert info.value.exit_code == 2
    assert "outside the model's folder" in info.value.message or "absolute" in info.value.message
    assert not out.exists()


def test_external_data_is_keyed_by_content(tmp_path: Path, cache_dir: Path) -> None:
    """Changing weights.bin (same size, other values) rebuilds; the artifact follows it."""
    import onnxruntime as ort

    repo = tmp_path / "repo"
    _model(repo, _weights(0))
    _recipe(repo)
    first = build_json(repo)
    assert first["ok"] and first["targets"]["onnx"]["verified"]
    (repo / "weights.bin").write_bytes(_weights(1).astype("<f4").tobytes())
    second = build_json(repo)
    st = statuses(second)
    assert st["onnx_from_file"] == "built" and st["reference"] == "built", st
    assert second["targets"]["onnx"]["digest"] != first["targets"]["onnx"]["digest"]
    x = np.ones((1, 4), np.float32)
    sess = ort.InferenceSession(str(repo / "dist" / "onnx" / "model.onnx"))
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x @ _weights(1), rtol=1e-5)
    # and unchanged bytes stay a no-op
    third = build_json(repo)
    assert set(statuses(third).values()) <= {"cached"}
