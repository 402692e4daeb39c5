"""End-to-end builds with real conversions on the tiny example models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_json, run_cli, statuses, write_recipe

HEAVY = [
    "torch",
    "tensorflow",
    "onnx",
    "onnxruntime",
    "coremltools",
    "openvino",
    "tensorrt",
    "rich",
    "onnx2tf",
    "onnxsim",
]

SMALL = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "torchscript": {"format": "torchscript", "method": "trace"},
}


def built(result: dict) -> set[str]:
    return {k for k, v in statuses(result).items() if v == "built"}


def test_full_example_builds_verifies_and_publishes(tiny_cnn: Path) -> None:
    res = build_json(tiny_cnn)
    assert res["ok"], res
    from modelbuild.recipe.load import load_recipe

    every = set(load_recipe(tiny_cnn / "model.build.yaml").targets)
    assert {
        "onnx",
        "onnx-fp16",
        "onnx-int8",
        "onnx-int8-dynamic",
        "onnx-ort",
        "torchscript",
        "openvino-fp16",
        "savedmodel",
        "tflite-fp16",
        "coreml-fp16",
    } <= every
    assert set(res["targets"]) == every
    for _name, t in res["targets"].items():
        assert t["verified"] is True
        assert Path(t["path"]).exists() and Path(t["path"]).parent.parent.name == "dist"
    # One ONNX export feeds every ONNX-derived target.
    steps = [a["step"] for a in res["actions"]]
    assert steps.count("onnx_from_torch") == 1 and steps.count("reference") == 1
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())
    assert set(lock["targets"]) == set(res["targets"])
    t = lock["targets"]["onnx-int8"]
    assert t["parity"]["passed"] and t["parity"]["outputs"]["logits"]["cosine"] >= 0.99
    assert {"torch", "onnx", "onnxruntime"} <= set(t["tools"])
    # The exported graph carries the recipe's metadata and dynamic batch.
    import onnx

    m = onnx.load(str(tiny_cnn / "dist" / "onnx" / "model.onnx"))
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["modelbuild.recipe"] == "tiny-cnn"
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_noop_build_caches_everything_and_imports_no_framework(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    build_json(tiny_cnn)
    lock_before = (tiny_cnn / "model.build.lock").read_bytes()
    code = (
        "import json, sys; from modelbuild.commands.main import main; "
        "rc = main(['build', '--json']); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr); "
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tiny_cnn,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert set(statuses(res).values()) == {"cached"}
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert (tiny_cnn / "model.build.lock").read_bytes() == lock_before


def test_incremental_rebuilds_only_what_changed(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    build_json(tiny_cnn)

    # One target's precision: only that target's own actions.
    targets = dict(
        SMALL,
        **{
            "onnx-fp16": {
                "format": "onnx",
                "precision": "int8",
                "quantize": {"mode": "dynamic", "per_channel": True},
            }
        },
    )
    write_recipe(tiny_cnn, targets)
    res = build_json(tiny_cnn)
    assert built(res) == {"onnx_int8[onnx-fp16]", "verify[onnx-fp16]"}

    # The opset: the ONNX chain, not TorchScript, not the reference outputs.
    write_recipe(tiny_cnn, targets, opset=16)
    res = build_json(tiny_cnn)
    b = built(res)
    assert "onnx_from_torch" in b and "onnx_simplify" in b
    assert not {"torchscript_from_torch", "verify[torchscript]", "reference", "make_inputs"} & b

    # Touching the checkpoint (same bytes, new mtime): nothing.
    ckpt = tiny_cnn / "weights" / "tiny_cnn.safetensors"
    os.utime(ckpt, (1, 1))
    res = build_json(tiny_cnn)
    assert built(res) == set()

    # New checkpoint bytes: everything that reads it, and everything downstream.
    from safetensors.numpy import load_file, save_file

    sd = load_file(str(ckpt))
    sd["head.bias"] = sd["head.bias"] + 0.5
    save_file(sd, str(ckpt))
    res = build_json(tiny_cnn)
    assert set(statuses(res).values()) - {"built"} <= {"cached"}
    assert {a for a, s in statuses(res).items() if s == "cached"} == {"make_inputs"}


def test_plan_explains_why(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    build_json(tiny_cnn)
    write_recipe(tiny_cnn, SMALL, opset=16)
    out = run_cli(["plan"], tiny_cnn).stdout
    assert "onnx_from_torch: opset changed 17→16" in out
    assert "cached  torchscript_from_torch" in out
    dry = run_cli(["build", "--dry-run"], tiny_cnn).stdout
    assert "opset changed 17→16" in dry
    (tiny_cnn / "dist").rename(tiny_cnn / "dist-old")
    res = build_json(tiny_cnn)  # the dry run built nothing: the export still runs now
    assert "onnx_from_torch" in built(res)


def test_tool_version_change_changes_the_key(
    tiny_cnn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbuild import step as base
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.scheduler import Engine
    from modelbuild.recipe.load import load_recipe
    from modelbuild.store.cache import Cache

    write_recipe(tiny_cnn, SMALL)
    build_json(tiny_cnn)
    recipe = load_recipe(tiny_cnn / "model.build.yaml")
    cache = Cache(Path(os.environ["MODELBUILD_CACHE"]))
    rows = {r.action.id: r for r in Engine(make_plan(recipe), cache).explain_plan(list(SMALL))}
    assert all(r.status == "cached" for r in rows.values())
    monkeypatch.setitem(base._VERSION_CACHE, "onnxsim", "99.0")
    rows2 = {r.action.id: r for r in Engine(make_plan(recipe), cache).explain_plan(list(SMALL))}
    assert rows2["onnx_simplify"].status == "run"
    assert rows2["onnx_simplify"].key != rows["onnx_simplify"].key
    assert any("onnxsim 0.4.36→99.0" in why for why in rows2["onnx_simplify"].reasons)
    assert rows2["torchscript_from_torch"].status == "cached"


def test_early_cutoff_on_a_code_change_that_does_not_change_the_export(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    build_json(tiny_cnn)
    code = tiny_cnn / "models" / "tiny_cnn.py"
    code.write_text(code.read_text() + "\n# a comment changes the key, not the graph\n")
    res = build_json(tiny_cnn)
    st = statuses(res)
    assert st["onnx_from_torch"] == "built" and st["reference"] == "built"
    assert st["onnx_simplify"] == "cached" and st["onnx_fp16"] == "cached"
    assert st["verify[onnx]"] == "cached"


def test_parity_failure_fails_with_figures_and_publishes_nothing(tiny_cnn: Path) -> None:
    targets = dict(SMALL)
    targets["onnx-fp16"] = {
        "format": "onnx",
        "precision": "fp16",
        "verify": {"tolerance": {"atol": 0.0, "rtol": 0.0}},
    }
    write_recipe(tiny_cnn, targets)
    proc = run_cli(["build", "--keep-going"], tiny_cnn, check=1)
    assert "parity check failed" in proc.stdout + proc.stderr
    assert (
        "max_abs=" in proc.stdout + proc.stderr and "would need atol" in proc.stdout + proc.stderr
    )
    assert not (tiny_cnn / "dist" / "onnx-fp16").exists()
    assert (tiny_cnn / "dist" / "onnx" / "model.onnx").exists()  # keep-going built the rest
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())
    assert "onnx-fp16" not in lock["targets"] and "onnx" in lock["targets"]
    res = build_json(tiny_cnn, "onnx-fp16", check=1)
    assert res["ok"] is False and res["targets"]["onnx-fp16"]["verified"] is False


BRANCHY = """
import torch


class Branchy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.mean() > 0):  # data-dependent control flow: tracing freezes one branch
            return x * 2.0
        return x - 1.0
"""


def test_wrong_export_is_caught_by_the_parity_gate(tiny_cnn: Path) -> None:
    """Tracing silently freezes a branch; the gate catches it, scripting passes."""
    (tiny_cnn / "models" / "branchy.py").write_text(BRANCHY)
    src = {"framework": "pytorch", "model": "models.branchy:Branchy"}
    inputs = {"x": {"shape": [2, 4], "dtype": "float32", "range": [-1.0, 1.0]}}
    targets = {
        "onnx": {"format": "onnx"},
        "traced": {"format": "torchscript", "method": "trace"},
        "scripted": {"format": "torchscript", "method": "script"},
    }
    write_recipe(tiny_cnn, targets, source=src, inputs=inputs, outputs=["y"], verify={"samples": 6})
    res = build_json(tiny_cnn, "--keep-going", check=1)
    t = res["targets"]
    assert t["scripted"]["verified"] is True
    assert t["onnx"]["verified"] is False and "parity check failed" in t["onnx"]["error"]
    assert t["traced"]["verified"] is False and "max_abs=" in t["traced"]["error"]
    assert sorted(p.name for p in (tiny_cnn / "dist").iterdir()) == ["scripted"]


def test_build_one_target_builds_only_what_it_needs(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    res = build_json(tiny_cnn, "onnx-fp16")
    assert set(res["targets"]) == {"onnx-fp16"}
    assert {a["step"] for a in res["actions"]} == {
        "onnx_from_torch",
        "onnx_simplify",
        "onnx_fp16",
        "make_inputs",
        "reference",
        "verify",
    }
    assert not (tiny_cnn / "dist" / "torchscript").exists()
    proc = run_cli(["build", "nope"], tiny_cnn, check=2)
    assert "unknown target" in proc.stderr


def test_text_classifier_two_int64_inputs_dynamic_batch_and_sequence(text_classifier: Path) -> None:
    res = build_json(text_classifier, "-j", "2")
    assert res["ok"], res
    lock = json.loads((text_classifier / "model.build.lock").read_text())
    for name, t in lock["targets"].items():
        assert t["parity"]["sets_checked"] == 4, name  # both sizes of batch and sequence
    import onnxruntime as ort

    s = ort.InferenceSession(str(text_classifier / "dist" / "onnx" / "model.onnx"))
    assert [i.name for i in s.get_inputs()] == ["input_ids", "attention_mask"]
    ids = np.ones((3, 7), dtype=np.int64)
    assert s.run(None, {"input_ids": ids, "attention_mask": ids})[0].shape == (3, 3)


def test_graph_formats(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, SMALL)
    text = run_cli(["graph"], tiny_cnn).stdout
    assert "onnx_fp16  <- onnx_simplify  => onnx-fp16" in text
    dot = run_cli(["graph", "--format", "dot"], tiny_cnn).stdout
    assert dot.startswith("digraph") and '"onnx_from_torch" -> "onnx_simplify";' in dot
    mer = run_cli(["graph", "--format", "mermaid"], tiny_cnn).stdout
    assert mer.startswith("graph LR") and "-->" in mer


def test_clean_removes_published_artifacts(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}})
    build_json(tiny_cnn)
    assert (tiny_cnn / "dist" / "onnx").exists()
    run_cli(["clean", "--cache"], tiny_cnn)
    assert not (tiny_cnn / "dist" / "onnx").exists()
    res = build_json(tiny_cnn)
    assert set(statuses(res).values()) == {"built"}


def test_missing_checkpoint_is_a_recipe_error(tiny_cnn: Path) -> None:
    (tiny_cnn / "weights" / "tiny_cnn.safetensors").unlink()
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "source.checkpoint" in proc.stderr and "file not found" in proc.stderr
    assert not (tiny_cnn / "dist").exists()


def test_a_worker_imports_torch_once_for_all_its_actions(tiny_cnn: Path) -> None:
    """Workers are reused: with -j 1 every torch step runs in the same process."""
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.scheduler import Engine
    from modelbuild.recipe.load import load_recipe
    from modelbuild.store.cache import Cache

    write_recipe(tiny_cnn, SMALL)
    recipe = load_recipe(tiny_cnn / "model.build.yaml")
    eng = Engine(make_plan(recipe), Cache(Path(os.environ["MODELBUILD_CACHE"])), jobs=1)
    results = eng.run(list(SMALL))
    torch_steps = [
        r
        for r in results
        if r.action.step in ("onnx_from_torch", "torchscript_from_torch", "reference")
    ]
    assert len(torch_steps) == 3 and all(r.status == "built" for r in torch_steps)
    assert len({r.pid for r in results}) == 1 and eng.workers_started == 1


def test_fast_noop_path_is_right_about_touches_and_deletions(tiny_cnn: Path) -> None:
    """The no-op answer from the state file: a touched checkpoint stays a no-op without
    loading the planner; a deleted artifact or changed bytes go through the planner."""
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}})
    build_json(tiny_cnn)
    ckpt = tiny_cnn / "weights" / "tiny_cnn.safetensors"
    os.utime(ckpt, (5, 5))
    code = (
        "import json, sys; from modelbuild.commands.main import main; "
        "rc = main(['build', '--json']); "
        "print(json.dumps([m for m in ('networkx', 'jsonschema', 'yaml') "
        "if m in sys.modules]), file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tiny_cnn, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(json.loads(proc.stdout)).values()) == {"cached"}
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []  # answered from the state file
    import shutil

    shutil.rmtree(tiny_cnn / "dist" / "onnx")
    res = build_json(tiny_cnn)
    assert set(statuses(res).values()) == {"cached"}
    assert (tiny_cnn / "dist" / "onnx" / "model.onnx").is_file()  # published again
    from safetensors.numpy import load_file, save_file

    sd = load_file(str(ckpt))
    sd["head.bias"] = sd["head.bias"] * 2
    save_file(sd, str(ckpt))
    os.utime(ckpt, (5, 5))
    res = build_json(tiny_cnn)
    assert statuses(res)["onnx_from_torch"] == "built"


def test_verify_command_reruns_the_checks_and_prints_figures(tiny_cnn: Path) -> None:
    write_recipe(
        tiny_cnn, {"onnx": {"format": "onnx"}, "onnx-fp16": {"format": "onnx", "precision": "fp16"}}
    )
    build_json(tiny_cnn)
    out = json.loads(run_cli(["verify", "--json"], tiny_cnn).stdout)
    assert out["ok"] and sorted(out["rechecked"]) == ["verify[onnx-fp16]", "verify[onnx]"]
    rows = {r["target"]: r for r in out["rows"]}
    assert rows["onnx"]["max_abs"] < 1e-4 and rows["onnx-fp16"]["cosine"] > 0.999
    text = run_cli(["verify", "onnx-fp16"], tiny_cnn).stdout
    assert "onnx-fp16" in text and "logits" in text and " ok" in text


def test_onnx_and_torchscript_files_as_sources(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}, "ts": {"format": "torchscript"}})
    build_json(tiny_cnn)
    import shutil

    shutil.copy(tiny_cnn / "dist" / "onnx" / "model.onnx", tiny_cnn / "source.onnx")
    shutil.copy(tiny_cnn / "dist" / "ts" / "model.pt", tiny_cnn / "source.pt")
    # An ONNX file: checked, converted to the recipe's opset, then the usual chain.
    write_recipe(
        tiny_cnn,
        {"fp16": {"format": "onnx", "precision": "fp16"}},
        source={"framework": "onnx", "model": "source.onnx"},
        opset=16,
    )
    res = build_json(tiny_cnn)
    assert res["ok"] and "onnx_from_file" in statuses(res)
    import onnx

    m = onnx.load(res["targets"]["fp16"]["path"])
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 16
    # A TorchScript file: exported to ONNX, verified against the TorchScript module.
    write_recipe(
        tiny_cnn,
        {"onnx": {"format": "onnx"}, "ts": {"format": "torchscript"}},
        source={"framework": "torchscript", "model": "source.pt"},
    )
    res = build_json(tiny_cnn)
    assert res["ok"] and res["targets"]["onnx"]["verified"]
    # TorchScript cannot come from ONNX: a recipe error, not a crash.
    write_recipe(
        tiny_cnn,
        {"ts": {"format": "torchscript"}},
        source={"framework": "onnx", "model": "source.onnx"},
    )
    assert "cannot be made from an ONNX source" in run_cli(["build"], tiny_cnn, check=2).stderr


def test_verification_on_the_recipes_own_samples(tiny_cnn: Path) -> None:
    """verify.data: real inputs keyed by input name; a dynamic batch is also checked at 1."""
    rng = np.random.default_rng(7)
    np.savez(
        tiny_cnn / "data" / "samples.npz",
        images=rng.uniform(0, 1, (3, 3, 32, 32)).astype(np.float32),
    )
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}}, verify={"data": "data/samples.npz"})
    res = build_json(tiny_cnn)
    assert res["ok"]
    lock = json.loads((tiny_cnn / "model.build.lock").read_text())
    assert lock["targets"]["onnx"]["parity"]["sets_checked"] == 2  # batch 3 and batch 1
    np.savez(tiny_cnn / "data" / "samples.npz", pixels=np.zeros((1, 3, 32, 32), np.float32))
    proc = run_cli(["build"], tiny_cnn, check=2)
    assert "no array for input(s) images" in proc.stdout + proc.stderr
