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
