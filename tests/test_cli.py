"""The command line in daily use: JSON on success and failure, exit codes, validate,
CI mode (--locked, plan --check), completion, init, packaging files, progress lines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, built_example, copy_example, run_cli, write_recipe

TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "ov": {"format": "openvino", "precision": "fp16"},
    "ts": {"format": "torchscript", "method": "trace"},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield from built_example(tmp_path_factory, "cli", TARGETS)


def _env(folder: Path) -> dict[str, str]:
    return {"MODELBUILD_CACHE": str(folder.parent / "cache")}


ERROR_KEYS = {"file", "line", "column", "path", "message", "hint"}


def test_version(tmp_path: Path) -> None:
    import modelbuild

    out = run_cli(["--version"], tmp_path).stdout
    assert out.strip() == f"modelbuild {modelbuild.__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["build", "--json", "-f", "bad.build.yaml"],
        ["plan", "--json", "-f", "bad.build.yaml"],
        ["verify", "--json", "-f", "bad.build.yaml"],
        ["bench", "--json", "-f", "bad.build.yaml"],
        ["validate", "--json", "bad.build.yaml"],
    ],
)
def test_json_errors_on_a_bad_recipe(tmp_path: Path, args: list[str]) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    text = (folder / "model.build.yaml").read_text().replace("precision: fp32", "precision: fp33")
    (folder / "bad.build.yaml").write_text(text)
    proc = run_cli(args, folder, check=2)
    out = json.loads(proc.stdout)
    assert out["ok"] is False
    err = out["errors"][0]
    assert set(err) >= ERROR_KEYS
    assert err["path"] == "targets.onnx.precision"
    assert err["file"].endswith("bad.build.yaml") and err["line"] and err["column"]
    assert "fp32" in err["hint"]


def test_json_usage_errors(tmp_path: Path) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    for args in (["build", "--json", "nosuch"], ["build", "--json", "-j", "x"]):
        proc = run_cli(args, folder, check=2)
        out = json.loads(proc.stdout)
        assert out["ok"] is False and set(out["errors"][0]) >= ERROR_KEYS, args
        assert "Traceback" not in proc.stderr


def test_validate_reports_every_error_in_every_file(tmp_path: Path) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    good = (folder / "model.build.yaml").read_text()
    bad = (
        good.replace("opset: 17", 'opset: "x"')
        .replace("precision: fp32, simplify", "precision: fp33, simplify")
        .replace("samples: 4", "sample: 4")
    )
    (folder / "a.build.yaml").write_text(bad)
    (folder / "b.build.yaml").write_text(good.replace("method: trace", "method: trac"))
    proc = run_cli(
        ["validate", "a.build.yaml", "b.build.yaml", "model.build.yaml"], folder, check=2
    )
    assert "model.build.yaml: ok" in proc.stdout
    for needle in (
        "a.build.yaml:", "opset: expected integer", "targets.onnx.precision: 'fp33'",
        "verify.sample: unknown key", "b.build.yaml:", "targets.torchscript.method",
    ):  # fmt: skip
        assert needle in proc.stderr, needle
    assert "4 error(s) in 2 of 3 file(s)" in proc.stderr
    out = json.loads(run_cli(["validate", "--json", "a.build.yaml"], folder, check=2).stdout)
    paths = sorted(e["path"] for e in out["errors"])
    assert paths == ["opset", "targets.onnx.precision", "verify.sample"]
    assert all(e["line"] for e in out["errors"])


def test_cache_gc_bad_size_is_a_usage_error(tmp_path: Path) -> None:
    env = {"MODELBUILD_CACHE": str(tmp_path / "cache")}
    proc = run_cli(["cache", "gc", "--max-size", "10Q"], tmp_path, env=env, check=2)
    assert "Traceback" not in proc.stderr and "--max-size" in proc.stderr
    out = json.loads(run_cli(["cache", "gc", "--max-age", "x", "--json"], tmp_path, env, 2).stdout)
    assert out["ok"] is False and "--max-age" in out["errors"][0]["message"]


def test_plan_exits_1_when_a_target_cannot_be_built(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU is present: the tensorrt target can be planned here")
    folder = copy_example("tiny_cnn", tmp_path)
    write_recipe(folder, {"onnx": TARGETS["onnx"], "trt": {"format": "tensorrt"}})
    proc = run_cli(["plan"], folder, env=_env(folder), check=1)
    assert "cannot  trt" in proc.stdout
    out = json.loads(run_cli(["plan", "--json"], folder, env=_env(folder), check=1).stdout)
    assert out["ok"] is False and out["errors"][0]["path"].startswith("targets.trt")


def test_graph_dot_honours_output(built: Path, tmp_path: Path) -> None:
    dest = tmp_path / "g.dot"
    proc = run_cli(["graph", "--format", "dot", "-o", str(dest)], built, env=_env(built))
    assert "digraph" not in proc.stdout
    assert dest.read_text().startswith("digraph")


def test_inspect_a_published_openvino_folder(built: Path) -> None:
    out = json.loads(run_cli(["inspect", "dist/ov", "--json"], built).stdout)
    assert out["format"] == "openvino" and out["path"].endswith("model.xml")


def test_plan_check_and_build_locked(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    shutil.copytree(built, folder, ignore=shutil.ignore_patterns("dist"))
    env = {"MODELBUILD_CACHE": str(built.parent / "cache")}
    proc = run_cli(["plan", "--check"], folder, env=env)
    assert "model.build.lock is up to date" in proc.stdout
    run_cli(["build", "--locked"], folder, env=env)
    lock = (folder / "model.build.lock").read_bytes()
    # a changed param: the ONNX key and everything below it would change
    recipe = folder / "model.build.yaml"
    recipe.write_text(recipe.read_text().replace("opset: 17", "opset: 16"))
    proc = run_cli(["plan", "--check"], folder, env=env, check=1)
    assert "onnx: would be rebuilt: onnx_from_torch (opset changed 17→16)" in proc.stderr
    assert "ov:" in proc.stderr and "ts:" not in proc.stderr
    proc = run_cli(["build", "--locked", "--json"], folder, env=env, check=1)
    out = json.loads(proc.stdout)
    assert out["ok"] is False and {d["target"] for d in out["lock"]} == {"onnx", "ov"}
    assert (folder / "model.build.lock").read_bytes() == lock  # left as committed
    # a lock entry edited by hand: the key no longer matches what the cache holds
    recipe.write_text(recipe.read_text().replace("opset: 16", "opset: 17"))
    data = json.loads(lock)
    data["targets"]["ts"]["key"] = "0" * 64
    (folder / "model.build.lock").write_text(json.dumps(data))
    proc = run_cli(["build", "--locked"], folder, env=env, check=1)
    assert "ts: key 000000000000 would be" in proc.stderr
    # a target the lock does not know
    (folder / "model.build.lock").unlink()
    proc = run_cli(["plan", "--check", "ts"], folder, env=env, check=1)
    assert "ts: not in model.build.lock" in proc.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(tmp_path: Path, shell: str) -> None:
    script = run_cli(["completion", shell], tmp_path).stdout
    words = ("build", "-l locked", "gc", "-l max-size", "completion")
    if shell != "fish":
        words = ("build", "--locked", "gc", "--max-size", "completion")
    for word in words:
        assert word in script, word
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed: the script's text is checked, not its syntax")
    path = tmp_path / f"c.{shell}"
    path.write_text(script)
    flag = "--no-execute" if shell == "fish" else "-n"
    subprocess.run([exe, flag, str(path)], check=True)


def test_bash_completion_completes(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = run_cli(["completion", "bash"], tmp_path).stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(["modelbuild", *words])
        prog = (
            f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _modelbuild; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        res = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, check=True)
        return res.stdout.split()

    assert "build" in complete("bu")
    assert "--locked" in complete("build", "--lo")
    assert complete("cache", "g") == ["gc"]
    assert "--max-size" in complete("cache", "gc", "--max")


def test_init_schema_resolves_and_gitignore(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    run_cli(["init", "--name", "demo"], tmp_path)
    first = (tmp_path / "model.build.yaml").read_text().splitlines()[0]
    ref = re.match(r"# yaml-language-server: \$schema=(.+)$", first)
    assert ref, first
    schema = (tmp_path / ref.group(1)).resolve()
    assert schema == ROOT / "modelbuild" / "data" / "model.build.schema.json"
    assert json.loads(schema.read_text())["title"].startswith("model.build.yaml")
    assert (tmp_path / ".gitignore").read_text().splitlines() == ["*.pyc", "cache/", "dist/"]
    # inside a repository with schemas/: the relative path to it
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "schemas").mkdir()
    shutil.copy(ROOT / "schemas" / "model.build.schema.json", repo / "schemas")
    (repo / "m").mkdir()
    run_cli(["init"], repo / "m")
    assert (
        "$schema=../schemas/model.build.schema.json"
        in (repo / "m" / "model.build.yaml").read_text()
    )


def test_packaged_schema_matches_the_committed_one() -> None:
    packaged = ROOT / "modelbuild" / "data" / "model.build.schema.json"
    assert packaged.read_text() == (ROOT / "schemas" / "model.build.schema.json").read_text(), (
        "modelbuild/data/model.build.schema.json is stale: "
        "cp schemas/model.build.schema.json modelbuild/data/"
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/*.json"' in pyproject  # shipped in the wheel


def test_pre_commit_hook_and_license() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "modelbuild-validate")
    assert hook["entry"] == "modelbuild validate" and hook["language"] == "python"
    files = re.compile(hook["files"])
    assert files.search("examples/tiny_cnn/model.build.yaml") and not files.search("a.yaml")
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_progress_lines_when_piped(tmp_path: Path, cache_dir: Path) -> None:
    folder = copy_example("tiny_cnn", tmp_path)
    write_recipe(folder, {"ts": TARGETS["ts"]})
    proc = run_cli(["build"], folder, env={"MODELBUILD_HEARTBEAT": "0.5"})
    lines = proc.stdout.splitlines()
    # one line per start and per finish, with the count, names with brackets intact
    assert any(re.fullmatch(r"\s*start verify\[ts\] \[\d/4\]", line) for line in lines), lines
    done = [line for line in lines if "built verify[ts]" in line]
    assert done and "(verified: max abs" in done[0] and "tolerance atol" in done[0]
    assert done[0].endswith("[4/4]")
    # the reference step runs about a second (torch import): at least one heartbeat
    assert any(re.match(r"running \S+ \d+s \[\d/4\]", line) for line in lines), lines
    summary = next(line for line in lines if line.strip().startswith("ts "))
    assert "(verified: max abs" in summary


def test_progress_on_a_terminal(tmp_path: Path, cache_dir: Path) -> None:
    """FORCE_COLOR makes rich treat the pipe as a terminal: the live display path."""
    folder = copy_example("tiny_cnn", tmp_path)
    write_recipe(folder, {"ts": TARGETS["ts"]})
    proc = run_cli(["build"], folder, env={"FORCE_COLOR": "1", "TERM": "xterm"})
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", proc.stdout)
    assert "building" in plain and "9/9" not in plain and "4/4" in plain
    assert re.search(r"built\s+verify\[ts\] [\d.]+s .*\(verified: max abs", plain), plain
    assert "Traceback" not in proc.stderr


def test_build_locked_on_an_empty_cache(built: Path, tmp_path: Path) -> None:
    """On a fresh CI cache a key below another is known only after a build: `plan --check`
    says so, `build --locked` builds, compares and restores the committed lock."""
    folder = tmp_path / "fresh"
    shutil.copytree(built, folder, ignore=shutil.ignore_patterns("dist"))
    recipe = folder / "model.build.yaml"
    write_recipe(folder, {"onnx": TARGETS["onnx"]})
    assert "opset: 17" in recipe.read_text()
    lock = folder / "model.build.lock"
    data = json.loads(lock.read_text())
    data["targets"] = {"onnx": data["targets"]["onnx"]}
    data["targets"]["onnx"]["key"] = "e" * 64  # what another machine would have locked
    lock.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    committed = lock.read_bytes()
    env = {"MODELBUILD_CACHE": str(tmp_path / "empty-cache")}
    proc = run_cli(["plan", "--check"], folder, env=env)
    assert "onnx: key known only after its upstream actions run" in proc.stdout
    proc = run_cli(["build", "--locked", "--json"], folder, env=env, check=1)
    out = json.loads(proc.stdout)
    assert out["ok"] is False and [d["kind"] for d in out["lock"]] == ["key"]
    assert out["errors"][0]["path"] == "targets.onnx"
    assert "built" in {a["status"] for a in out["actions"]}  # it did build, then compared
    assert lock.read_bytes() == committed
