"""One lockfile and one output folder per recipe (issue 9 pt 5), and artifacts that do not
depend on the checkout (pt 6): no absolute path inside any artifact, the same digests from
two folders, and the committed example lockfiles equal to what the commit builds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from modelbuild.bench.machine import kernel_cpu
from tests.conftest import EXAMPLES, copy_example, run_cli
from tests.test_sound_keys import make_model

TS = """\
modelbuild: 1
name: {name}
source: {{framework: pytorch, model: "models.net:Net"}}
inputs: {{x: {{shape: [1, 4]}}}}
outputs: [y]
targets:
  {target}: {{format: torchscript}}
"""


def test_two_recipes_in_one_folder_keep_their_own_lockfiles_and_outputs(
    tmp_path: Path, cache_dir: Path
) -> None:
    from modelbuild.store.admin import lock_references

    folder = make_model(tmp_path / "repo")  # model.build.yaml: target ts
    (folder / "a.build.yaml").write_text(TS.format(name="a", target="ts"))
    (folder / "b.build.yaml").write_text(TS.format(name="b", target="ts"))
    run_cli(["build", "-f", "a.build.yaml"], folder)
    a_lock = (folder / "a.build.lock").read_bytes()
    assert (folder / "dist" / "a" / "ts" / "model.pt").is_file()
    run_cli(["build", "-f", "b.build.yaml"], folder)
    run_cli(["build"], folder)  # model.build.yaml keeps model.build.lock and dist/<target>
    assert (folder / "a.build.lock").read_bytes() == a_lock  # untouched by the others
    assert json.loads(a_lock)["recipe"] == "a"
    assert json.loads((folder / "b.build.lock").read_text())["recipe"] == "b"
    assert json.loads((folder / "model.build.lock").read_text())["recipe"] == "sound"
    for published in ("dist/a/ts/model.pt", "dist/b/ts/model.pt", "dist/ts/model.pt"):
        assert (folder / published).is_file(), published
    keys, _ = lock_references(folder)  # cache gc keeps what every *.build.lock names
    for lock in ("a.build.lock", "b.build.lock", "model.build.lock"):
        assert json.loads((folder / lock).read_text())["targets"]["ts"]["key"] in keys
    out = run_cli(["clean", "-f", "a.build.yaml"], folder).stdout
    assert "from dist/a/" in out
    assert not (folder / "dist" / "a" / "ts").exists()
    assert (folder / "dist" / "b" / "ts" / "model.pt").is_file()


def test_a_target_folder_that_is_another_recipes_output_is_refused(
    tmp_path: Path, cache_dir: Path
) -> None:
    """model.build.yaml's target `a` would publish to dist/a, a.build.yaml's output folder:
    both recipes refuse at load time (exit 2), naming the other, and nothing is written."""
    folder = make_model(tmp_path / "repo")
    (folder / "model.build.yaml").write_text(TS.format(name="m", target="a"))
    (folder / "a.build.yaml").write_text(TS.format(name="a", target="ts"))
    for recipe, other in (
        ("model.build.yaml", "a.build.yaml"),
        ("a.build.yaml", "model.build.yaml"),
    ):
        proc = run_cli(["build", "-f", recipe], folder, check=2)
        assert other in proc.stderr and "output_dir" in proc.stderr, proc.stderr
    assert not (folder / "dist").exists()
    (folder / "a.build.yaml").write_text(TS.format(name="a", target="ts") + "output_dir: out-a\n")
    run_cli(["build", "-f", "a.build.yaml"], folder)  # elsewhere: no overlap
    assert (folder / "out-a" / "ts" / "model.pt").is_file()


def test_scripted_torchscript_is_the_same_from_two_checkouts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`method: script` embedded the source file's absolute path (debug records) and wrote
    a module's constants in a per-process set order."""
    digests = []
    for i, seed in enumerate(("1", "2")):
        where = tmp_path_factory.mktemp(f"checkout{i}")
        folder = copy_example("text_classifier", where)
        env = {"PYTHONHASHSEED": seed, "MODELBUILD_CACHE": str(where / "cache")}
        run_cli(["build", "torchscript"], folder, env=env)
        lock = json.loads((folder / "model.build.lock").read_text())
        with zipfile.ZipFile(folder / "dist" / "torchscript" / "model.pt") as z:
            for name in z.namelist():
                assert str(where).encode() not in z.read(name), name
                assert not name.endswith(".debug_pkl"), name
        digests.append(lock["targets"]["torchscript"]["digest"])
    assert digests[0] == digests[1]


def _lock_without_figures(lock: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A lock's content that must not depend on the machine: keys, digests, tools, imports
    (parity figures are float results of the machine's kernels)."""
    targets = {
        name: {k: v for k, v in t.items() if k != "parity"}
        for name, t in lock["targets"].items()
        if t["format"] not in skip
    }
    return {**lock, "targets": targets}


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two locks differ, as key paths (a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d
            for k in sorted(set(a) | set(b))
            for d in _differences(a.get(k), b.get(k), f"{path}.{k}")
        ]
    return [] if a == b else [f"{path}: {a!r:.200} != {b!r:.200}"]


def _fresh_lock(name: str, tmp_path: Path) -> dict[str, Any]:
    folder = copy_example(name, tmp_path)
    run_cli(["build"], folder, env={"MODELBUILD_CACHE": str(tmp_path / "cache")})
    return dict(json.loads((folder / "model.build.lock").read_text()))


def _same_kernels_or_skip(fresh: dict[str, Any], committed: dict[str, Any]) -> None:
    """On a CPU of another kind than the one the committed locks were written on
    (examples/locks-cpu.json), only what does not depend on float results is compared
    (targets, formats, tools, imports); then the keys and digests are skipped, saying so."""
    written = json.loads((EXAMPLES / "locks-cpu.json").read_text())
    here = kernel_cpu()
    if written == here:
        return
    shape = {"format", "tools"}
    for name in set(fresh["targets"]) | set(committed["targets"]):
        got, want = fresh["targets"].get(name, {}), committed["targets"].get(name, {})
        assert {k: got.get(k) for k in shape} == {k: want.get(k) for k in shape}, name
    assert fresh.get("imports") == committed.get("imports")
    pytest.skip(
        f"keys and digests not compared: the committed locks were written on {written}, this "
        f"CPU is {here}; float kernels differ between the two, so reference outputs and folded "
        "constants differ in their last bits (targets, formats, tools and imports agree). "
        "scripts/relock_examples.sh on this kind of machine rewrites them"
    )


def test_the_committed_text_classifier_lock_is_what_a_fresh_build_writes(tmp_path: Path) -> None:
    committed = json.loads((EXAMPLES / "text_classifier" / "model.build.lock").read_text())
    fresh = _fresh_lock("text_classifier", tmp_path)
    _same_kernels_or_skip(fresh, committed)
    assert _differences(_lock_without_figures(fresh), _lock_without_figures(committed)) == []


def test_the_committed_tiny_cnn_lock_is_what_a_fresh_build_writes(tmp_path: Path) -> None:
    # onnx2tf's SavedModel and TFLite bytes differ on every run (README, TOOLCHAIN.md), and
    # so do the keys below them: those targets are compared on format and tools only.
    committed = json.loads((EXAMPLES / "tiny_cnn" / "model.build.lock").read_text())
    fresh = _fresh_lock("tiny_cnn", tmp_path)
    _same_kernels_or_skip(fresh, committed)
    unstable = ("savedmodel", "tflite")
    got, want = _lock_without_figures(fresh, unstable), _lock_without_figures(committed, unstable)
    assert _differences(got, want) == []
    for name, t in committed["targets"].items():
        if t["format"] in unstable:
            assert fresh["targets"][name]["tools"] == t["tools"], name
