"""A TorchScript artifact is the same whatever its worker traced before.

TorchScript mangles a type's name when the process already compiled one of that class
(``___torch_mangle_N``); with the model built once per worker, a second trace of the same
model in one worker wrote other code files, so a target's digest depended on scheduling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build_json, copy_example, write_recipe

TARGETS = {
    "ts-trace": {"format": "torchscript", "method": "trace"},
    "ts-frozen": {"format": "torchscript", "method": "trace", "freeze": True},
    "ts-script": {"format": "torchscript", "method": "script"},
}


def _digests(folder: Path) -> dict[str, str]:
    lock = json.loads((folder / "model.build.lock").read_text())
    return {name: entry["digest"] for name, entry in lock["targets"].items()}


def test_each_target_alone_equals_all_in_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    together = copy_example("tiny_cnn", tmp_path / "together")
    write_recipe(together, TARGETS)
    monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / "cache-together"))
    build_json(together, "-j", "1")  # one worker traces the same model three times
    digests = _digests(together)
    assert set(digests) == set(TARGETS)
    for name in TARGETS:
        alone = copy_example("tiny_cnn", tmp_path / name)
        write_recipe(alone, {name: TARGETS[name]})
        monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / f"cache-{name}"))
        build_json(alone, "-j", "1")
        assert _digests(alone) == {name: digests[name]}, name
