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
    and the parity check over external data. It needs ~10 GB of memory and minutes on two
    cores: run with MODELBUILD_SLOW=1 (not part of the default suite)."""
    if not os.environ.get("MODELBUILD_SLOW"):
        pytest.skip(
            "slow: builds a 2.25 GB model (~10 GB RAM, minutes); set MODELBUILD_SLOW=1 to run"
        )
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
    res = build_json(folder, "-j", "1")
    assert res["ok"] and all(t["verified"] for t in res["targets"].values()), res["targets"]
    art = folder / "dist" / "onnx" / "model.onnx"
    assert (art / "model.onnx.data").stat().st_size > 2**31
