"""The habits the test command enforces: strict mypy, ruff lint and ruff format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["modelbuild", "tests", "bench", "scripts", "examples", "zoo"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install 'modelbuild[dev]'")
    proc = _run("mypy", "--no-error-summary")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_lint_is_clean() -> None:
    pytest.importorskip("ruff", reason="ruff is in the dev extra: pip install 'modelbuild[dev]'")
    proc = _run("ruff", "check", *[p for p in LINTED if (ROOT / p).exists()])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    pytest.importorskip("ruff", reason="ruff is in the dev extra: pip install 'modelbuild[dev]'")
    proc = _run("ruff", "format", "--check", *[p for p in LINTED if (ROOT / p).exists()])
    assert proc.returncode == 0, proc.stdout + proc.stderr
