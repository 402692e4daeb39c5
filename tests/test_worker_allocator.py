"""Workers start with large buffers on transparent huge pages (engine/procs.allocator_env):
what the variables are in each case, and that a real spawned worker has them while the
build process's own environment is left as it was."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from modelbuild.engine import procs
from modelbuild.engine.pool import Pool

THP = "[never]" not in (procs.THP_ENABLED.read_text() if procs.THP_ENABLED.exists() else "[never]")
linux_thp = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and THP),
    reason="needs Linux with transparent huge pages not [never]: the variables are not set",
)


@linux_thp
def test_the_variables_added_and_a_users_tunables_kept() -> None:
    assert procs.allocator_env({}) == {
        "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
        "THP_MEM_ALLOC_ENABLE": "1",
    }
    other = procs.allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert other["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    mine = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", "THP_MEM_ALLOC_ENABLE": "0"}
    assert procs.allocator_env(mine) == {}
    assert procs.allocator_env({"MODELBUILD_HUGEPAGES": "0"}) == {}


def test_nothing_where_the_kernel_has_thp_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = tmp_path / "enabled"
    off.write_text("always madvise [never]\n")
    monkeypatch.setattr(procs, "THP_ENABLED", off)
    assert procs.allocator_env({}) == {}
    monkeypatch.setattr(procs, "THP_ENABLED", tmp_path / "absent")
    assert procs.allocator_env({}) == {}


PROBE = """import json, os, pathlib
keys = ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE")
out = pathlib.Path(__file__).with_suffix(".json")
out.write_text(json.dumps({k: os.environ[k] for k in keys if k in os.environ}))
"""


def _environ_of(pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables as a spawned worker sees them, reported by the worker itself: it
    imports a probe module (the pool's own warm-up message). /proc/PID/environ reads empty
    until the child has exec'd, which start() does not wait for."""
    (tmp_path / "mb_env_probe.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawn hands sys.path to the child
    w = pool._spawn()
    w.conn.send(("warm", ["mb_env_probe"], str(tmp_path / "warm.log")))
    assert w.conn.poll(60), "the worker did not answer the warm-up"
    w.conn.recv()
    out: dict[str, str] = json.loads((tmp_path / "mb_env_probe.json").read_text())
    return out


@linux_thp
@pytest.mark.parametrize("off", [False, True])
def test_a_spawned_worker_has_them_and_the_build_does_not(
    off: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    if off:
        monkeypatch.setenv("MODELBUILD_HUGEPAGES", "0")
    before = dict(os.environ)
    pool = Pool(1, {})
    try:
        env = _environ_of(pool, tmp_path, monkeypatch)
        if off:
            assert env == {}
        else:
            assert env == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "THP_MEM_ALLOC_ENABLE": "1"}
    finally:
        pool.close()
    assert dict(os.environ) == before
