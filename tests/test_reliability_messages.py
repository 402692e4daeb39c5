"""Messages that say what is wrong: a text file given as .npz, an empty checkpoint, a
checkpoint symlink loop (issue 11, items 9 and 13), and `clean` that cleans what it may."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_json, run_cli, write_recipe

TS = {"torchscript": {"format": "torchscript"}}


def first_error(text: str) -> str:
    assert "Traceback" not in text, text[-3000:]
    return "\n".join(line for line in text.splitlines() if not line.startswith("  start"))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"images,0.5\n", "bad.npz is not an .npz (zip) file: it starts with b'images,0'"),
        (b"", "bad.npz is an empty file"),
        (b"PK\x03\x04garbage", "bad.npz is not a readable .npz file"),
    ],
    ids=["text", "empty", "broken-zip"],
)
def test_a_data_file_that_is_not_npz_says_what_it_is(
    tiny_cnn: Path, content: bytes, says: str
) -> None:
    (tiny_cnn / "data" / "bad.npz").write_bytes(content)
    write_recipe(tiny_cnn, TS, verify={"data": "data/bad.npz"})
    r = run_cli(["build"], tiny_cnn, check=2)
    text = first_error(r.stdout + r.stderr)
    assert says in text, text
    assert "pickled data" not in text


def test_an_empty_checkpoint_gives_a_reason(tiny_cnn: Path) -> None:
    (tiny_cnn / "weights" / "empty.pt").write_bytes(b"")
    path = write_recipe(tiny_cnn, TS)
    path.write_text(path.read_text().replace("weights/tiny_cnn.safetensors", "weights/empty.pt"))
    r = run_cli(["build"], tiny_cnn, check=2)
    assert "checkpoint empty.pt is an empty file (0 bytes)" in first_error(r.stdout + r.stderr)


def test_a_checkpoint_symlink_loop_is_a_recipe_error(tiny_cnn: Path) -> None:
    w = tiny_cnn / "weights"
    (w / "a.pt").symlink_to("b.pt")
    (w / "b.pt").symlink_to("a.pt")
    path = write_recipe(tiny_cnn, TS)
    path.write_text(path.read_text().replace("weights/tiny_cnn.safetensors", "weights/a.pt"))
    for cmd in (["validate"], ["build"]):
        r = run_cli(cmd, tiny_cnn, check=2)
        assert "'a.pt' is a symlink loop" in first_error(r.stdout + r.stderr)


def test_clean_removes_what_it_published_and_names_what_it_did_not(tiny_cnn: Path) -> None:
    write_recipe(tiny_cnn, {"onnx": {"format": "onnx"}, **TS})
    build_json(tiny_cnn)
    dist = tiny_cnn / "dist"
    markers = [p for p in (dist / "onnx").iterdir() if p.name.startswith(".modelbuild")]
    assert markers
    for m in markers:  # dist/onnx is now a folder modelbuild did not write
        m.unlink()
    r = run_cli(["clean"], tiny_cnn, check=2)
    assert "removed 1 published target(s)" in r.stdout
    assert "onnx" in r.stderr and "Traceback" not in r.stderr
    assert (dist / "onnx").is_dir() and not (dist / "torchscript").exists()


@pytest.mark.parametrize(
    ("array", "says"),
    [
        ((2, 3, 32), "3 axes; the recipe declares 4"),
        ((2, 3, 16, 16), "axis 2 is fixed at 32"),
        ((2, 3, 32, 32, "text"), "does not convert to float32"),
    ],
    ids=["rank", "fixed-axis", "strings"],
)
def test_a_data_file_of_the_wrong_shape_is_bad_input(
    tiny_cnn: Path, array: tuple[Any, ...], says: str
) -> None:
    import numpy as np

    text = array[-1] == "text"
    shape = array[:-1] if text else array
    values = np.full(shape, "x") if text else np.zeros(shape, np.float32)
    np.savez(tiny_cnn / "data" / "wrong.npz", images=values)
    write_recipe(tiny_cnn, TS, verify={"data": "data/wrong.npz"})
    r = run_cli(["build"], tiny_cnn, check=2)
    assert says in first_error(r.stdout + r.stderr)


OOM_MODEL = """
import torch


class Greedy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.empty(10**13).sum()  # 40 TB: the allocator refuses
"""

OOM_RECIPE = """modelbuild: 1
name: greedy
source: {framework: pytorch, model: "greedy:Greedy", code: [greedy.py]}
inputs: {x: {shape: [1, 4]}}
outputs: [y]
targets:
  torchscript: {format: torchscript}
"""


def test_out_of_memory_in_forward_says_so(tmp_path: Path, cache_dir: Path) -> None:
    """Issue 11 item 13: an allocation failure read 'the model rejected the declared inputs'."""
    (tmp_path / "greedy.py").write_text(OOM_MODEL)
    (tmp_path / "model.build.yaml").write_text(OOM_RECIPE)
    proc = run_cli(["build"], tmp_path, check=None)
    out = first_error(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "ran out of memory in forward() at the declared inputs (x: [1, 4] float32)" in out
    assert "rejected the declared inputs" not in out
    assert "smaller `inputs`" in out
    assert not (tmp_path / "dist").exists()
