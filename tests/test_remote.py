"""The shared remote cache against a real S3 API (moto's server on loopback), never a mock
of fsspec: two checkouts with empty local caches, corruption, a killed push, read-only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import copy_example, write_recipe

pytest.importorskip("s3fs", reason="the remote extra (s3fs) is not installed")
moto_server = pytest.importorskip("moto.server", reason="moto[server] (dev extra) is missing")

TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "torchscript": {"format": "torchscript"},
}
BUCKET = "mb-remote"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A real S3 API server on 127.0.0.1 and the environment that points clients at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        yield env
    finally:
        server.stop()


def client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def bucket(s3: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh bucket per test; returns the environment naming it as the remote."""
    name = f"{BUCKET}-{abs(hash(request.node.name)) % 10**8}"
    client(s3).create_bucket(Bucket=name)
    return dict(s3, MODELBUILD_REMOTE=f"s3://{name}", MB_BUCKET=name)


def listing(env: dict[str, str]) -> dict[str, str]:
    """Every key in the bucket with its ETag."""
    c = client(env)
    out: dict[str, str] = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=env["MB_BUCKET"]):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["ETag"]
    return out


def checkout(tmp_path: Path, label: str) -> Path:
    folder = copy_example("tiny_cnn", tmp_path / label)
    write_recipe(folder, TARGETS)
    return folder


def cli(
    folder: Path, env: dict[str, str], *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **env, MODELBUILD_CACHE=str(folder / ".mbcache"))
    full.pop("MB_BUCKET", None)
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", *args],
        cwd=folder,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stderr[-3000:])
    return proc


def committed(src: Path, dst: Path) -> None:
    """``dst`` is a checkout of what ``src`` committed: its model.build.lock comes along (the
    keys of the actions that load the model include what its code imported, from the lock)."""
    shutil.copy(src / "model.build.lock", dst / "model.build.lock")


def build(folder: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = cli(folder, env, "build", "--json", *args)
    out: dict[str, Any] = json.loads(proc.stdout)
    out["stderr"] = proc.stderr
    return out


def digests(res: dict[str, Any]) -> dict[str, str]:
    return {k: t["digest"] for k, t in res["targets"].items()}


def consistent(env: dict[str, str]) -> tuple[int, list[str]]:
    """(entries, objects named by an entry that are missing from the bucket)."""
    keys = listing(env)
    missing = []
    entries = [k for k in keys if "/actions/" in k]
    c = client(env)
    for k in entries:
        e = json.loads(c.get_object(Bucket=env["MB_BUCKET"], Key=k)["Body"].read())
        out = e["output"]
        ds = [out["digest"]] if out["kind"] == "file" else list(out["manifest"].values())
        missing += [d for d in ds if f"default/objects/{d[:2]}/{d}" not in keys]
    return len(entries), missing


def test_second_checkout_builds_nothing(tmp_path: Path, bucket: dict[str, str]) -> None:
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    first = build(a, bucket)
    assert first["ok"] and {x["status"] for x in first["actions"]} == {"built"}
    n, missing = consistent(bucket)
    assert n == len(first["actions"]) and missing == []
    committed(a, b)
    second = build(b, bucket)
    assert second["ok"]
    assert {x["id"]: x["status"] for x in second["actions"]} == {
        x["id"]: "cached" for x in first["actions"]
    }
    assert digests(second) == digests(first)
    assert (b / "dist" / "onnx").is_dir() and (b / "dist" / "torchscript").is_dir()


def test_corrupt_remote_object_is_detected_and_rebuilt(
    tmp_path: Path, bucket: dict[str, str]
) -> None:
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    first = build(a, bucket)
    onnx_key = next(x["key"] for x in first["actions"] if x["id"] == "onnx_from_torch")
    c = client(bucket)
    entry = json.loads(
        c.get_object(
            Bucket=bucket["MB_BUCKET"], Key=f"default/actions/{onnx_key[:2]}/{onnx_key}.json"
        )["Body"].read()
    )
    d = entry["output"]["digest"]
    c.put_object(Bucket=bucket["MB_BUCKET"], Key=f"default/objects/{d[:2]}/{d}", Body=b"evil")
    committed(a, b)
    second = build(b, bucket)
    assert second["ok"]
    st = {x["id"]: x["status"] for x in second["actions"]}
    assert st["onnx_from_torch"] == "built", st
    assert f"object {d[:12]} was corrupt on the remote" in second["stderr"]
    assert digests(second) == digests(first)
    # the verified local bytes repaired the remote object
    body = c.get_object(Bucket=bucket["MB_BUCKET"], Key=f"default/objects/{d[:2]}/{d}")["Body"]
    import hashlib

    assert hashlib.sha256(body.read()).hexdigest() == d


@pytest.mark.parametrize("point", ["remote-object", "remote-entry"])
def test_killed_push_leaves_the_remote_consistent(
    tmp_path: Path, bucket: dict[str, str], point: str
) -> None:
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    proc = cli(a, dict(bucket, MODELBUILD_FAULT=point), "build", check=None)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    keys = listing(bucket)
    assert any("/objects/" in k for k in keys)  # the push had started
    n, missing = consistent(bucket)
    assert n == 0 and missing == []  # killed before its first entry: no entry at all
    # finishing the push (the local build completed) makes everything visible
    out = json.loads(cli(a, bucket, "cache", "push", "--json").stdout)
    assert out["pushed"] >= 1
    n, missing = consistent(bucket)
    assert n >= 1 and missing == []
    second = build(b, bucket)
    assert second["ok"]


def test_read_only_never_writes(tmp_path: Path, bucket: dict[str, str]) -> None:
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    res = build(a, bucket, "--remote-read-only")
    assert res["ok"] and listing(bucket) == {}
    first = build(b, bucket)  # a trusted job fills the remote
    before = listing(bucket)
    assert before
    c = checkout(tmp_path, "c")
    write_recipe(c, dict(TARGETS, **{"onnx-fp16": {"format": "onnx", "precision": "fp16"}}))
    committed(b, c)
    ro_env = dict(bucket, MODELBUILD_REMOTE_READ_ONLY="1")
    ro = build(c, ro_env)
    assert ro["ok"]
    st = {x["id"]: x["status"] for x in ro["actions"]}
    assert st["onnx_from_torch"] == "cached", st
    assert "built" in st.values(), st  # it pulled and built...
    assert listing(bucket) == before  # ...and wrote nothing
    assert digests(ro)["onnx"] == digests(first)["onnx"]
    assert cli(c, ro_env, "cache", "push", check=None).returncode == 2
    assert listing(bucket) == before


def test_namespace_disowns_results(tmp_path: Path, bucket: dict[str, str]) -> None:
    a, b = checkout(tmp_path, "a"), checkout(tmp_path, "b")
    build(a, bucket)
    other = build(b, dict(bucket, MODELBUILD_REMOTE_NAMESPACE="team-2027"))
    assert {x["status"] for x in other["actions"]} == {"built"}
    assert any(k.startswith("team-2027/actions/") for k in listing(bucket))
    stats = json.loads(cli(b, bucket, "cache", "stats", "--json").stdout)
    assert stats["namespace"] == "default" and stats["actions"] == len(other["actions"])


def test_s3_without_s3fs_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from modelbuild.commands.main import main\n"
        "sys.exit(main(['cache', 'stats', '--remote', 's3://some-bucket']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, MODELBUILD_CACHE=str(tmp_path / "c")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'modelbuild[remote]'" in proc.stderr


def test_file_remote_is_write_once(tmp_path: Path) -> None:
    from modelbuild.store.cache import Cache
    from modelbuild.store.remote import RemoteCache

    src = Cache(tmp_path / "src")
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    rec = src.put_output(f)
    src.put_action("k" * 64, {"output": rec.to_json(), "meta": {"n": 1}})
    remote = RemoteCache(f"file://{tmp_path / 'remote'}")
    assert remote.publish(["k" * 64], src) == 1
    src.put_action("k" * 64, {"output": rec.to_json(), "meta": {"n": 2}})
    assert remote.publish(["k" * 64], src) == 0  # an existing key is never overwritten
    dst = Cache(tmp_path / "dst")
    assert remote.fetch("k" * 64, dst)
    entry = dst.get_action("k" * 64)
    assert entry is not None and entry["meta"] == {"n": 1}
    assert dst.check_object(rec.digest).read_bytes() == b"hello"
    assert not remote.fetch("0" * 64, dst)
    assert remote.summary()["actions"] == 1 and remote.summary()["objects"] == 1
