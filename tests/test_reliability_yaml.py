"""Hostile and mistaken recipes: each is one positioned line and exit 2, in `validate` and
`build` alike, never a traceback, a hang or exit 1 (issue 11, items 9, 10, 13)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelbuild.recipe.yamlread import MAX_DEPTH, MAX_VALUES
from tests.conftest import run_cli

RANGE = "range: [0.0, 1.0]"

LAUGHS = "modelbuild: 1\nlol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)

# (id, old text, new text, what the one line says, the line it points at: the first
# line of the new text plus this many, or None)
CASES = [
    ("nan-range", RANGE, "range: [.nan, 1.0]", "'.nan' is not a finite number", 0),
    ("inf-range", RANGE, "range: [0.0, .inf]", "'.inf' is not a finite number", 0),
    ("date-range", RANGE, "range: [2020-01-01, 1.0]", "a YAML date", 0),
    ("binary-range", RANGE, "range: [!!binary aGVsbG8=, 1.0]", "binary data (!!binary)", 0),
    ("nan-args", "num_classes: 10", "num_classes: 10, scale: .nan", "not a finite number", 0),
    ("date-args", "num_classes: 10", "num_classes: 2020-01-01", "a YAML date", 0),
    ("binary-args", "num_classes: 10", "num_classes: !!binary aGVsbG8=", "binary data", 0),
    ("nan-tolerance", "verify:\n", "verify:\n  tolerance: {fp32: {atol: .nan}}\n", "finite", 1),
    (
        "date-tolerance",
        "verify:\n",
        "verify:\n  tolerance: {fp32: {rtol: 2001-02-03}}\n",
        "date",
        1,
    ),
    ("python-tag", "num_classes: 10", "num_classes: !!python/object:os.system x", "python", 0),
    (
        "self-alias",
        "args: {num_classes: 10}",
        "args: &a {num_classes: 10, x: [*a]}",
        "the value that contains it",
        0,
    ),
    ("deep-lists", "num_classes: 10", "x: " + "[" * 3000 + "]" * 3000, f"{MAX_DEPTH} levels", 0),
    ("billion-laughs", "modelbuild: 1\n", LAUGHS, f"{MAX_VALUES:,} values", None),
    ("seed-negative", "verify:\n", "verify:\n  seed: -1\n", "seed -1 is negative", 1),
    ("long-target", "  onnx:  ", "  " + "t" * 300 + ":  ", "300 characters long", 0),
    (
        "huge-shape",
        "[1, 3, 32, 32]",
        "[1, 3, 100000, 100000]",
        "GiB; at most 2 GiB",  # refused before anything allocates 224 GiB
        0,
    ),
    ("axis-sizes", "{0: batch}", "{0: batch, 1: batch}", "axes of one name always have", 0),
    ("scalar-axes", "shape: [1, 3, 32, 32]", "shape: []", "does not exist in shape []", 0),
]


def _recipe(folder: Path, old: str, new: str) -> int:
    """Edit the recipe; returns the line the new text starts on."""
    path = folder / "model.build.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def _assert_one_clear_line(err: str, says: str, line: int | None) -> None:
    assert "Traceback" not in err, err[-3000:]
    first = err.strip().splitlines()[0]
    assert says in first, first
    assert len(err) < 3000, f"{len(err)} characters of message"
    if line is not None:
        assert first.startswith(f"error: model.build.yaml:{line}:"), first


@pytest.mark.parametrize(
    ("old", "new", "says", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_values_are_one_positioned_line_and_exit_2(
    tiny_cnn: Path, old: str, new: str, says: str, line: int | None
) -> None:
    start = _recipe(tiny_cnn, old, new)
    line = None if line is None else start + line
    t0 = time.monotonic()
    v = run_cli(["validate"], tiny_cnn, check=2)
    assert time.monotonic() - t0 < 30
    _assert_one_clear_line(v.stderr, says, line)
    b = run_cli(["build"], tiny_cnn, check=2)
    _assert_one_clear_line(b.stderr, says, line)
    assert not (tiny_cnn / "dist").exists()


def test_a_file_that_is_not_utf8_points_at_line_and_column(tiny_cnn: Path) -> None:
    path = tiny_cnn / "model.build.yaml"
    path.write_bytes(path.read_bytes().replace(b"name: tiny-cnn", b"name: tiny-cnn # caf\xe9"))
    v = run_cli(["validate"], tiny_cnn, check=2)
    _assert_one_clear_line(v.stderr, "not UTF-8 text: byte 0xe9", 3)
    assert "model.build.yaml:3:21:" in v.stderr and "position" not in v.stderr


def test_a_huge_file_is_refused_unread(tiny_cnn: Path) -> None:
    path = tiny_cnn / "model.build.yaml"
    path.write_text(path.read_text() + "#" * (2 << 20) + "\n")
    v = run_cli(["validate"], tiny_cnn, check=2)
    _assert_one_clear_line(v.stderr, "a recipe is at most", None)
