"""Work that scales with the model is done once (issue 15.3).

The source model is built (and its checkpoint read) once per worker for every action
that needs it (reference, ONNX export, TorchScript trace); a touched big file whose
bytes did not change is re-hashed once and stays a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import build_json, run_cli, statuses, write_recipe

COUNTER = """

# test_scale: every construction of the model appends this worker's pid to a log
_mb_original_init = TinyCNN.__init__


def _mb_counted_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    import os

    with open(os.environ["MB_MODEL_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    _mb_original_init(self, *args, **kwargs)


TinyCNN.__init__ = _mb_counted_init
"""

TARGETS = {"onnx": {"format": "onnx"}, "ts": {"format": "torchscript", "method": "trace"}}


def _counted(tiny_cnn: Path) -> Path:
    with open(tiny_cnn / "models" / "tiny_cnn.py", "a") as f:
        f.write(COUNTER)
    write_recipe(tiny_cnn, TARGETS)
    return tiny_cnn / "models.log"


def test_the_source_model_is_built_once_per_worker(tiny_cnn: Path, cache_dir: Path) -> None:
    log = _counted(tiny_cnn)
    env = {"MB_MODEL_LOG": str(log)}
    proc = run_cli(["build", "--json", "-j", "1"], tiny_cnn, env=env)
    st = statuses(json.loads(proc.stdout))
    users = ("reference", "onnx_from_torch", "torchscript_from_torch")
    assert all(st[u] == "built" for u in users), st
    pids = log.read_text().split()
    assert len(pids) == 1, f"one worker built the model {len(pids)} times for {users}"
    # two workers: at most once each
    log.unlink()
    run_cli(["build", "--json", "-j", "2", "--force"], tiny_cnn, env=env)
    pids = log.read_text().split()
    assert len(pids) == len(set(pids)) <= 2, pids


def test_a_changed_model_module_is_not_served_from_the_worker_cache(
    tiny_cnn: Path, cache_dir: Path
) -> None:
    """The worker's model is keyed by the files it is built from: a change to the model's
    code between two builds in one process builds it again (the in-process runner)."""
    from modelbuild.engine.build import build
    from modelbuild.engine.plan import make_plan
    from modelbuild.engine.runners import InProcessRunner
    from modelbuild.recipe.load import load_recipe
    from modelbuild.source import pytorch
    from modelbuild.store.cache import Cache

    log = _counted(tiny_cnn)
    write_recipe(tiny_cnn, {"ts": TARGETS["ts"]})
    os.environ["MB_MODEL_LOG"] = str(log)

    def once() -> None:
        plan = make_plan(load_recipe(tiny_cnn / "model.build.yaml"))
        res = build(plan, Cache(cache_dir), ["ts"], runner=InProcessRunner(), force=True)
        assert res.ok

    try:
        once()
        assert len(log.read_text().split()) == 1
        with open(tiny_cnn / "models" / "tiny_cnn.py", "a") as f:
            f.write("\nCHANGED = 1\n")
        once()
        assert len(log.read_text().split()) == 2, "a stale model was reused"
    finally:
        os.environ.pop("MB_MODEL_LOG", None)
        pytorch._MODELS.clear()


def _checkpoint_stamp(cache_dir: Path, ckpt: Path) -> list[int]:
    (state,) = [p for p in (cache_dir / "state").glob("noop-*.json")]
    stamps = json.loads(state.read_text())["stamps"]
    return list(stamps[str(ckpt.resolve())])


def test_a_touched_checkpoint_is_rehashed_once_and_stays_a_no_op(
    tiny_cnn: Path, cache_dir: Path
) -> None:
    write_recipe(tiny_cnn, {"ts": {"format": "torchscript"}})
    build_json(tiny_cnn)
    ckpt = tiny_cnn / "weights" / "tiny_cnn.safetensors"
    before = _checkpoint_stamp(cache_dir, ckpt)
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))  # touch
    out = run_cli(["build"], tiny_cnn).stdout
    assert "nothing to do" in out, out
    after = _checkpoint_stamp(cache_dir, ckpt)
    assert after != before and after[1] == ckpt.stat().st_mtime_ns  # the new stamp is kept
    # same bytes under a new inode (a copy renamed over it): a no-op too
    tmp = ckpt.with_name("copy.tmp")
    shutil.copyfile(ckpt, tmp)
    os.replace(tmp, ckpt)
    assert "nothing to do" in run_cli(["build"], tiny_cnn).stdout
    assert _checkpoint_stamp(cache_dir, ckpt)[2] == ckpt.stat().st_ino
    assert "nothing to do" in run_cli(["build"], tiny_cnn).stdout


def test_the_driver_does_not_hash_again_what_a_worker_put_in_the_cache(tmp_path: Path) -> None:
    """A worker hashes its output as it moves it into the cache; the driver, which then
    materializes it for the next action and for publishing, takes that digest (one stat
    of the object) instead of reading the bytes a second time."""
    from test_executor import make_plan

    from modelbuild.engine.runners import InProcessRunner
    from modelbuild.engine.scheduler import Engine
    from modelbuild.errors import CacheError
    from modelbuild.store.cache import Cache

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1 << 20))
    spec = {
        "a": {"params": {"text": "a"}, "inputs": {"src": src}},
        "b": {"params": {"text": "b"}, "inputs": {"up": "a"}},
        "c": {"params": {"text": "c"}, "inputs": {"up": "b"}},
    }
    eng = Engine(make_plan(tmp_path, spec), Cache(tmp_path / "cache"), runner=InProcessRunner())
    results = eng.run(list(spec))
    assert [r.status for r in results] == ["built", "built", "built"]
    assert eng.cache.stat.hashed_bytes == src.stat().st_size  # the source only
    digests = [r.output.digest for r in results if r.output is not None]
    for d in digests:  # and each object's digest is right, as a fresh reader hashes it
        assert Cache(tmp_path / "cache").check_object(d).is_file()
    # an object changed after the worker hashed it is not vouched for: hashed, then refused
    obj, other = eng.cache.object_path(digests[0]), Cache(tmp_path / "cache")
    st = obj.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"changed")
    other.stat.vouch(obj, stamp, digests[0])
    with pytest.raises(CacheError, match="corrupt"):
        other.check_object(digests[0])


def test_a_no_op_build_loads_only_the_build_command(tiny_cnn: Path) -> None:
    """The no-op fast path builds the parser of `build` alone and reads the store through
    its light modules: no other command's module, no modelbuild.api, no cache object
    store, no YAML, schema or graph library."""
    import subprocess
    import sys

    write_recipe(tiny_cnn, {"ts": {"format": "torchscript", "method": "trace"}})
    build_json(tiny_cnn)
    unwanted = [
        "modelbuild.api",
        "modelbuild.store.cache",
        "modelbuild.commands.cache",
        "modelbuild.commands.scaffold",
        "modelbuild.registry",
        "yaml",
        "jsonschema",
        "networkx",
        "torch",
    ]
    code = (
        "import json, sys; from modelbuild.commands.main import main; rc = main(['build']); "
        f"print(json.dumps([m for m in {unwanted!r} if m in sys.modules]), file=sys.stderr); "
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tiny_cnn, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout, proc.stdout
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    # the build command's own options and help are all there
    helped = run_cli(["build", "--help"], tiny_cnn).stdout
    assert "--keep-going" in helped and "--no-sync" in helped


def test_the_export_adds_its_metadata_without_rewriting_the_weights(tmp_path: Path) -> None:
    """The exporter's file gets the recipe's metadata appended (a second ModelProto
    fragment, which protobuf merges): it parses as the model with the metadata added, the
    checker and onnxruntime take it, and the node count read from the wire is the graph's."""
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from modelbuild.formats.onnx.onnx_from_torch import append_metadata, graph_nodes

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    path = tmp_path / "m.onnx"
    x = torch.rand(1, 8)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"])
    before = onnx.load(str(path))
    size = path.stat().st_size
    meta = {"modelbuild.recipe": "r", "modelbuild.outputs": '["y"]'}
    assert append_metadata(path, meta) == len(before.graph.node) == 3
    assert path.read_bytes()[:size] == before.SerializeToString()  # the weights untouched
    after = onnx.load(str(path))
    onnx.checker.check_model(str(path))
    assert {p.key: p.value for p in after.metadata_props} == meta
    after.ClearField("metadata_props")
    before.ClearField("metadata_props")
    assert after == before
    got = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert graph_nodes(path) == 3


EXTERNAL_TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32", "simplify": True},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "ov": {"format": "openvino", "precision": "fp16"},
}


def test_a_model_past_the_protobuf_limit_is_a_folder_with_external_data(
    tiny_cnn: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15.2 at a size the suite can afford: the external-data threshold lowered to
    1 kB (MODELBUILD_EXTERNAL_DATA_OVER, which enters the export's key), so tiny_cnn takes
    the path a > 2 GB model takes. The real size runs in test_a_model_over_2_gb_builds."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    monkeypatch.setenv("MODELBUILD_EXTERNAL_DATA_OVER", "1000")
    write_recipe(tiny_cnn, EXTERNAL_TARGETS)
    proc = run_cli(["build", "--json"], tiny_cnn)
    res = json.loads(proc.stdout)
    assert res["ok"] and all(t["verified"] for t in res["targets"].values()), res["targets"]
    art = tiny_cnn / "dist" / "onnx" / "model.onnx"
    assert art.is_dir() and sorted(p.name for p in art.iterdir()) == [
        "model.onnx",
        "model.onnx.data",
    ]
    entries = [json.loads(p.read_text()) for p in (cache_dir / "actions").glob("*/*.json")]
    (simplify,) = [e for e in entries if e["step"] == "onnx_simplify"]
    assert simplify["meta"]["skipped"] and "onnxsim skipped" in simplify["meta"]["notices"][0]
    first = {t: v["digest"] for t, v in res["targets"].items()}
    # deterministic: stable names, so a rebuild from nothing gives the same digests
    again = build_json(tiny_cnn, "--force")
    assert {t: v["digest"] for t, v in again["targets"].items()} == first
    # the export's key knows the threshold: without it, the single-file model is rebuilt
    monkeypatch.delenv("MODELBUILD_EXTERNAL_DATA_OVER")
    plain = build_json(tiny_cnn)
    assert statuses(plain)["onnx_from_torch"] == "built"
    assert (tiny_cnn / "dist" / "onnx" / "model.onnx").is_file()


BIG = '''
import torch


class BigEmbedding(torch.nn.Module):
    """A 2.25 GB embedding table (550,000 x 1024 fp32) and a small head."""

    def __init__(self, rows: int = 550_000, dim: int = 1024) -> None:
        super().__init__()
        self.table = torch.nn.Embedding(rows, dim)
        self.head = torch.nn.Linear(dim, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids).mean(dim=1))
'''


@pytest.mark.slow
def test_a_model_over_2_gb_builds(tmp_path: Path, cache_dir: Path) -> None:
    """A real > 2 GB model: export, simplify (skipped, with a notice), fp16, int8, OpenVINO
    and the parity check over external data. It needs ~10 GB of memory and 10-30 minutes on
    two shared cores: run with MODELBUILD_SLOW=1 (not part of the default suite)."""
    if not os.environ.get("MODELBUILD_SLOW"):
        pytest.skip(
            "slow: builds a 2.25 GB model (~10 GB RAM, minutes); set MODELBUILD_SLOW=1 to run"
        )
    import subprocess
    import sys
    import time

    import yaml

    folder = tmp_path / "big"
    (folder / "models").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "big.py").write_text(BIG)
    recipe = {
        "modelbuild": 1,
        "name": "big",
        "source": {"framework": "pytorch", "model": "models.big:BigEmbedding"},
        "inputs": {"ids": {"shape": [1, 16], "dtype": "int64", "range": [0, 549_999]}},
        "outputs": ["y"],
        "verify": {"samples": 1},
        "targets": EXTERNAL_TARGETS,
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe))
    t0 = time.perf_counter()
    proc = subprocess.run(  # not run_cli: its 600 s limit is less than this build takes
        [sys.executable, "-m", "modelbuild", "build", "--json", "-j", "1"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    print(f"the > 2 GB build took {time.perf_counter() - t0:.0f} s (exit {proc.returncode})")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    assert res["ok"] and all(t["verified"] for t in res["targets"].values()), res["targets"]
    art = folder / "dist" / "onnx" / "model.onnx"
    assert (art / "model.onnx.data").stat().st_size > 2**31
