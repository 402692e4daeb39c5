"""Team-scale figures, measured here, printed side by side (issue 12):

  1. a second checkout's build from the remote cache vs a local build from scratch
     (moto's real S3 server on loopback, tiny_cnn onnx + torchscript)
  2. the same recipe through Ray (a local Ray started for the build, 2 CPUs) vs the
     local pool (-j 2), both from an empty cache
  3. the cost of an environment switch: the fp16 step (and its check) in the base
     environment vs in a pinned layered environment, and building that environment

    .venv/bin/python bench/team.py [--repeat N] [--only remote,ray,env]

Every build is `python -m modelbuild build` in a fresh process, timed from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"onnx": {"format": "onnx", "precision": "fp32"}, "torchscript": {"format": "torchscript"}}
WIDE = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "torchscript": {"format": "torchscript"},
}


def checkout(where: Path, targets: dict[str, Any], repo: bool = False) -> Path:
    """A copy of examples/tiny_cnn with these targets (inside a repository if ``repo``)."""
    import yaml

    base = where / "repo" if repo else where
    if repo:
        (base / ".git").mkdir(parents=True)
    dst = base / "tiny_cnn"
    shutil.copytree(
        ROOT / "examples" / "tiny_cnn", dst, ignore=shutil.ignore_patterns("dist", "*.lock")
    )
    data = yaml.safe_load((dst / "model.build.yaml").read_text())
    data.pop("extends", None)
    data["targets"] = targets
    (dst / "model.build.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


def build(folder: Path, cache: Path, *args: str, env: dict[str, str] | None = None) -> float:
    full = dict(os.environ, MODELBUILD_CACHE=str(cache), RAY_USAGE_STATS_ENABLED="0")
    full.update(env or {})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "modelbuild", "build", "--json", "-j", "2", *args],
        cwd=folder,
        env=full,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - t0
    out = json.loads(proc.stdout)
    if proc.returncode != 0 or not out.get("ok"):
        raise SystemExit(f"build failed in {folder}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds


def fmt(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:6.2f} s"
    return f"{statistics.median(xs):6.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def remote_figure(tmp: Path, repeat: int) -> list[tuple[str, str]]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    import boto3

    c = boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    first, second, local = [], [], []
    try:
        for i in range(repeat):
            c.create_bucket(Bucket=f"team-{i}")
            env = dict(s3, MODELBUILD_REMOTE=f"s3://team-{i}")
            run = tmp / f"remote-{i}"
            a, b, c0 = (checkout(run / n, SMALL) for n in ("a", "b", "local"))
            first.append(build(a, run / "cache-a", env=env))
            # the second checkout has what the first committed: its model.build.lock (the
            # keys of actions that load the model include what its code imported, from it)
            shutil.copy(a / "model.build.lock", b / "model.build.lock")
            second.append(build(b, run / "cache-b", env=env))
            local.append(build(c0, run / "cache-local"))
    finally:
        server.stop()
    return [
        ("local build from scratch (no remote)", fmt(local)),
        ("first checkout: build + push to S3", fmt(first)),
        ("second checkout, empty cache: from S3", fmt(second)),
    ]


def ray_figure(tmp: Path, repeat: int) -> list[tuple[str, str]]:
    pool, ray_ = [], []
    for i in range(repeat):
        run = tmp / f"ray-{i}"
        pool.append(build(checkout(run / "pool", WIDE), run / "cache-pool"))
        node = {"MODELBUILD_RAY_WORKER_ROOT": str(run / "node")}
        ray_.append(
            build(checkout(run / "ray", WIDE), run / "cache-ray", "--executor", "ray", env=node)
        )
    return [
        ("local pool -j 2, empty cache (4 targets)", fmt(pool)),
        ("--executor ray (local Ray, 2 CPUs, started and stopped)", fmt(ray_)),
    ]


def env_figure(tmp: Path, repeat: int) -> list[tuple[str, str]]:
    base, pinned, make = [], [], []
    for i in range(repeat):
        run = tmp / f"env-{i}"
        folder = checkout(run, {"onnx": WIDE["onnx"], "onnx-fp16": WIDE["onnx-fp16"]}, repo=True)
        repo = folder.parent
        (repo / "toolchains").mkdir()
        (repo / "toolchains" / "fp16.in").write_text("# modelbuild: layered\nprotobuf==4.25.4\n")
        cache = run / "cache"
        build(folder, cache, "onnx")  # the export, shared by both below
        base.append(build(folder, cache, "onnx-fp16"))  # fp16 + check in this environment
        (repo / "modelbuild.toml").write_text('[toolchains]\nonnx_fp16 = "fp16"\n')
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "modelbuild", "toolchain", "sync", "fp16"],
            cwd=folder,
            env=dict(os.environ, MODELBUILD_CACHE=str(cache)),
            check=True,
            capture_output=True,
        )
        make.append(time.perf_counter() - t0)
        pinned.append(build(folder, cache, "onnx-fp16"))  # the same step, another key
    return [
        ("onnx-fp16 (fp16 step + check) in the base environment", fmt(base)),
        ("the same in a pinned layered environment (built)", fmt(pinned)),
        ("building that environment (uv lock + venv + sync, warm uv cache)", fmt(make)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", default="remote,ray,env")
    args = ap.parse_args()
    figures = {"remote": remote_figure, "ray": ray_figure, "env": env_figure}
    with tempfile.TemporaryDirectory(prefix="mb-team-") as d:
        for name in args.only.split(","):
            rows = figures[name](Path(d), args.repeat)
            print(f"\n{name}")
            for label, value in rows:
                print(f"  {label:<62} {value}")


if __name__ == "__main__":
    main()
