"""Scale scenario (issue 15): a big checkpoint, then many recipes, side by side in one run.

    python bench/scale.py [--width 8192 --layers 4] [--recipes 100] [--jobs 2] [--out F.json]

The workload is an MLP of ``layers`` square Linear layers of ``width`` (8192 x 4 = 268M
parameters, a 1.07 GB safetensors checkpoint) built to ONNX fp32 (simplified), ONNX fp16
and TorchScript, each checked against the source model. Rows, in one run:

- full build: wall time and peak memory (RSS summed over the process tree, sampled every
  0.1 s) of ``modelbuild build -j N`` and of the plain script doing the same conversions
  and parity checks in one process (``python bench/scale.py plain``); and the script once
  more under the allocator settings modelbuild starts its workers with (large buffers on
  transparent huge pages, ``engine/procs.allocator_env``), to show how much of the
  difference those settings are;
- bytes on disk: cache, dist/ and both together (each inode once) against the artifacts'
  own size plus the intermediates (cache objects no target publishes);
- no-op and touch (same bytes, new mtime) times, and the time to hash the checkpoint once;
- a no-op over ``--recipes`` recipes (``modelbuild build ./...``).

Everything is written under a temporary folder that is removed at the end (``--keep`` to
keep it). Goals (issue 15, not asserted): build <= 0.8x plain, cache+dist <= 1.1x
(artifacts + intermediates), no-op <= 0.1 s, touch <= 1.2x one hash, many-recipe no-op
<= 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable

MODEL = '''
import torch


class Big(torch.nn.Module):
    """``layers`` square Linear layers of ``width``: parameters scale as width**2 * layers."""

    def __init__(self, width: int = 8192, layers: int = 4) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(width, width, bias=False) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
'''


def make_workload(folder: Path, width: int, layers: int) -> Path:
    """models/big.py, weights/big.safetensors, model.build.yaml; returns the checkpoint."""
    import torch
    import yaml
    from safetensors.torch import save_file

    (folder / "models").mkdir(parents=True)
    (folder / "weights").mkdir()
    (folder / ".git").mkdir()
    (folder / "models" / "__init__.py").write_text("")
    (folder / "models" / "big.py").write_text(MODEL)
    sys.path.insert(0, str(folder))
    from models.big import Big  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = Big(width, layers)
    ckpt = folder / "weights" / "big.safetensors"
    save_file(model.state_dict(), str(ckpt))
    del model
    sys.path.remove(str(folder))
    sys.modules.pop("models.big", None)
    sys.modules.pop("models", None)
    recipe = {
        "modelbuild": 1,
        "name": "big",
        "source": {
            "framework": "pytorch",
            "model": "models.big:Big",
            "args": {"width": width, "layers": layers},
            "checkpoint": "weights/big.safetensors",
            "code": ["models/"],
        },
        "inputs": {"x": {"shape": [1, width], "dtype": "float32", "range": [-1.0, 1.0]}},
        "outputs": ["y"],
        "opset": 17,
        "verify": {"samples": 1},
        "targets": {
            "onnx": {"format": "onnx", "precision": "fp32", "simplify": True},
            "onnx-fp16": {"format": "onnx", "precision": "fp16"},
            "torchscript": {"format": "torchscript", "method": "trace"},
        },
    }
    (folder / "model.build.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return ckpt


# -- the plain script: the same conversions and checks, one process, no build system ----
def plain(folder: Path, out: Path) -> None:
    import warnings

    import numpy as np
    import onnx
    import onnxruntime as ort
    import onnxsim
    import torch
    import yaml
    from onnxconverter_common import float16
    from safetensors.torch import load_file

    spec = yaml.safe_load((folder / "model.build.yaml").read_text())
    args = spec["source"]["args"]
    sys.path.insert(0, str(folder))
    from models.big import Big

    model = Big(**args)
    model.load_state_dict(load_file(str(folder / "weights" / "big.safetensors")))
    model.eval()
    x = np.random.default_rng(0).uniform(-1, 1, (1, args["width"])).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    out.mkdir(parents=True, exist_ok=True)
    raw, fp32, fp16 = out / "raw.onnx", out / "model.onnx", out / "model-fp16.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(x),),
            str(raw),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
        )
    simplified, ok = onnxsim.simplify(onnx.load(str(raw)))
    assert ok
    onnx.save(simplified, str(fp32))
    del simplified
    raw.unlink()
    onnx.save(float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(fp16))
    for path, atol in ((fp32, 1e-4), (fp16, 1e-2)):
        got = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, atol=atol, rtol=1e-2)
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.from_numpy(x),), check_trace=False)
    torch.jit.save(traced, str(out / "model.pt"))
    got = torch.jit.load(str(out / "model.pt"))(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


# -- measuring -------------------------------------------------------------------------
def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the process tree in bytes, output); raises on failure."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                peak = max(peak, total)
            except psutil.Error:
                pass
            done.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    output, _ = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-3000:]}")
    return wall, peak, output


def timed(cmd: list[str], cwd: Path, env: dict[str, str], n: int = 3) -> float:
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def cpu_timed(cmd: list[str], cwd: Path, env: dict[str, str], n: int = 3) -> float:
    """The least CPU time (user + sys of the command and its children) of ``n`` runs: on a
    shared machine the wall time of a 0.1 s command is mostly waiting for a core."""
    import resource

    cpus = []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(cpus)


def many_recipes(root: Path, n: int, env: dict[str, str], jobs: int) -> dict[str, Any]:
    """``n`` recipes of one tiny model (variants: each its own file and output folder)."""
    import yaml

    src = ROOT / "examples" / "tiny_cnn"
    folder = root / "many" / "models" / "tiny"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("dist", "*.lock", "__pycache__"))
    (root / "many" / ".git").mkdir()
    base = yaml.safe_load((folder / "model.build.yaml").read_text())
    base.pop("extends", None)
    (folder / "model.build.yaml").unlink()
    base["targets"] = {"ts": {"format": "torchscript", "method": "trace"}}
    for i in range(n):
        base["output_dir"] = f"dist/v{i:03d}"
        (folder / f"v{i:03d}.build.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    cmd = [PYTHON, "-m", "modelbuild", "build", "./...", "-j", str(jobs)]
    first = measure(cmd, root / "many", env)[0]
    subprocess.run(cmd, cwd=root / "many", env=env, check=True, capture_output=True)
    noop = timed(cmd, root / "many", env)
    return {"recipes": n, "first_build_s": round(first, 2), "noop_s": round(noop, 3)}


def disk(cache: Path, dist: Path) -> dict[str, int]:
    sys.path.insert(0, str(ROOT))
    from modelbuild.store.du import usage

    u = usage(cache, [("dist", dist)])
    areas = {a.name: a for a in u.areas}
    published: set[str] = set()
    artifacts = 0
    for dirpath, _dirs, files in os.walk(dist):
        for f in files:
            if f.startswith("."):
                continue
            p = Path(dirpath) / f
            artifacts += p.stat().st_size
            published.add(f"{p.stat().st_dev}:{p.stat().st_ino}")
    intermediates = 0
    for p in (cache / "objects").rglob("*"):
        st = p.stat()
        if p.is_file() and f"{st.st_dev}:{st.st_ino}" not in published and st.st_size > 1 << 20:
            intermediates += st.st_size
    cache_phys = sum(a.physical for a in u.areas if a.name != "dist")
    return {
        "cache_physical": cache_phys,
        "dist_logical": areas["dist"].logical,
        "dist_physical": areas["dist"].physical,
        "total_physical": u.physical,
        "artifacts": artifacts,
        "intermediates": intermediates,
    }


def run(a: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))  # modelbuild's own helpers, without installing it
    tmp = Path(tempfile.mkdtemp(prefix="mb-scale-", dir=a.tmp))
    try:
        work = tmp / "big"
        ckpt = make_workload(work, a.width, a.layers)
        env = dict(os.environ, MODELBUILD_CACHE=str(tmp / "cache"), PYTHONWARNINGS="ignore")
        res: dict[str, Any] = {
            "width": a.width,
            "layers": a.layers,
            "params": a.width * a.width * a.layers,
            "checkpoint_bytes": ckpt.stat().st_size,
            "jobs": a.jobs,
        }
        me = Path(__file__).resolve()
        pw, pm, _ = measure([PYTHON, str(me), "plain", str(work), str(tmp / "plain")], tmp, env)
        shutil.rmtree(tmp / "plain")
        res["plain"] = {"wall_s": round(pw, 2), "peak_rss": pm}
        # the same script under the allocator settings modelbuild's workers start with
        # (engine/procs.allocator_env): how much of the difference they are
        from modelbuild.engine.procs import allocator_env

        tuned = allocator_env(env)
        res["allocator_env"] = tuned
        if tuned:
            tw, tm, _ = measure(
                [PYTHON, str(me), "plain", str(work), str(tmp / "plain")], tmp, {**env, **tuned}
            )
            shutil.rmtree(tmp / "plain")
            res["plain_tuned"] = {"wall_s": round(tw, 2), "peak_rss": tm}
        mw, mm, out = measure([PYTHON, "-m", "modelbuild", "build", "-j", str(a.jobs)], work, env)
        res["modelbuild"] = {
            "wall_s": round(mw, 2),
            "peak_rss": mm,
            # each action's own time, as the build printed it: where the wall time went
            "actions": [ln.strip() for ln in out.splitlines() if ln.strip().startswith("built ")],
        }
        res["disk"] = disk(tmp / "cache", work / "dist")
        build = [PYTHON, "-m", "modelbuild", "build"]
        subprocess.run(build, cwd=work, env=env, check=True, capture_output=True)
        res["noop_s"] = round(timed(build, work, env), 3)
        res["noop_cpu_s"] = round(cpu_timed(build, work, env), 3)
        res["python_cpu_s"] = round(cpu_timed([PYTHON, "-c", "pass"], work, env), 3)
        from modelbuild.store.hashing import sha256_file

        t0 = time.perf_counter()
        sha256_file(ckpt)
        res["hash_once_s"] = round(time.perf_counter() - t0, 3)
        touches = []
        for _ in range(3):
            st = ckpt.stat()
            os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
            t0 = time.perf_counter()
            proc = subprocess.run(build, cwd=work, env=env, check=True, capture_output=True)
            touches.append(time.perf_counter() - t0)
            assert b"nothing to do" in proc.stdout, proc.stdout
        res["touch_s"] = round(statistics.median(touches), 3)
        res["touch_then_noop_s"] = round(timed(build, work, env, 1), 3)
        if a.recipes:
            res["many"] = many_recipes(tmp, a.recipes, env, a.jobs)
        return res
    finally:
        if a.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def table(r: dict[str, Any]) -> str:
    gb = 1e9
    p, m, d = r["plain"], r["modelbuild"], r["disk"]
    rows = [
        (
            f"workload: {r['params'] / 1e6:.0f}M params, "
            f"checkpoint {r['checkpoint_bytes'] / gb:.2f} GB, -j {r['jobs']}",
            "",
            "",
            "",
        ),
        (
            "full build: wall s",
            f"{m['wall_s']:.1f}",
            f"{p['wall_s']:.1f}",
            f"{m['wall_s'] / p['wall_s']:.2f}x (goal <= 0.8x)",
        ),
        (
            "full build: peak RSS GB",
            f"{m['peak_rss'] / gb:.2f}",
            f"{p['peak_rss'] / gb:.2f}",
            f"{m['peak_rss'] / max(p['peak_rss'], 1):.2f}x (goal <= 1.5x)",
        ),
        ("disk: cache (physical) GB", f"{d['cache_physical'] / gb:.2f}", "", ""),
        (
            "disk: dist logical / physical GB",
            f"{d['dist_logical'] / gb:.2f} / {d['dist_physical'] / gb:.3f}",
            "",
            "",
        ),
        ("disk: cache+dist physical GB", f"{d['total_physical'] / gb:.2f}", "", ""),
        (
            "artifacts + intermediates GB",
            f"{d['artifacts'] / gb:.2f} + {d['intermediates'] / gb:.2f}",
            "",
            f"{d['total_physical'] / max(d['artifacts'] + d['intermediates'], 1):.2f}x"
            " (goal <= 1.1x)",
        ),
        ("no-op s", f"{r['noop_s']:.3f}", "", "(goal <= 0.1 s)"),
        (
            "no-op CPU s (python -c pass)",
            f"{r.get('noop_cpu_s', 0):.3f} ({r.get('python_cpu_s', 0):.3f})",
            "",
            "",
        ),
        (
            "touch (same bytes) s / hash once s",
            f"{r['touch_s']:.3f} / {r['hash_once_s']:.3f}",
            "",
            f"{r['touch_s'] / max(r['hash_once_s'], 1e-9):.2f}x (goal <= 1.2x)",
        ),
        ("no-op after the touch s", f"{r['touch_then_noop_s']:.3f}", "", ""),
    ]
    if "many" in r:
        mr = r["many"]
        rows.append(
            (
                f"{mr['recipes']}-recipe no-op s (first build {mr['first_build_s']:.0f} s)",
                f"{mr['noop_s']:.3f}",
                "",
                "(goal <= 0.5 s)",
            )
        )
    if "plain_tuned" in r:
        t = r["plain_tuned"]
        rows.insert(
            3,
            (
                "  the script with the workers' allocator settings: wall s",
                f"{m['wall_s']:.1f}",
                f"{t['wall_s']:.1f}",
                f"{m['wall_s'] / t['wall_s']:.2f}x",
            ),
        )
    head = ("", "modelbuild", "plain script", "ratio")
    w = [max(len(str(x[i])) for x in [head, *rows]) for i in range(4)]
    lines = [" | ".join(str(c).ljust(w[i]) for i, c in enumerate(x)) for x in [head, *rows]]
    lines.insert(1, "-+-".join("-" * n for n in w))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plain"]:
        plain(Path(argv[1]), Path(argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=8192, help="Linear width (default 8192)")
    ap.add_argument("--layers", type=int, default=4, help="Linear layers (default 4: 268M)")
    ap.add_argument("--recipes", type=int, default=100, help="many-recipe no-op (0: skip)")
    ap.add_argument("--jobs", type=int, default=2, help="modelbuild -j (default 2)")
    ap.add_argument("--tmp", default=None, help="where the temporary folder goes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    a = ap.parse_args(argv)
    r = run(a)
    if a.out:
        a.out.write_text(json.dumps(r, indent=1) + "\n")
    print(table(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
