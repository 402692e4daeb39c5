"""The HTML report in a real headless browser: every target rendered, a real picture.

Chromium (Debian's `chromium` package; scripts/setup.sh installs it when it can) loads
report.html from disk, prints the DOM it built and takes a screenshot. Without a
browser the test is skipped and says so.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import build_json, copy_example, run_cli, write_recipe

TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16-strict": {
        "format": "onnx",
        "precision": "fp16",
        "verify": {"tolerance": {"atol": 1.0e-9, "rtol": 1.0e-9}},
    },
    "torchscript-with-a-rather-long-target-name-for-the-mobile-app": {
        "format": "torchscript",
        "method": "trace",
    },
    "onnx-ort": {"format": "onnx", "precision": "fp32", "optimize": "extended"},  # not built
}
VERDICTS = {
    "onnx": "verified",
    "onnx-fp16-strict": "failed parity",
    "torchscript-with-a-rather-long-target-name-for-the-mobile-app": "verified",
    "onnx-ort": "not built",
}
# The verdict badges' fills (report/render.py CSS): solid, so exact pixels.
GREEN, RED = (0x1E, 0x84, 0x49), (0xC0, 0x39, 0x2B)


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """report.html of a tiny_cnn build with a parity failure and an unbuilt target."""
    if browser() is None:
        pytest.skip(
            "no headless browser: install Debian's chromium (apt-get install chromium; "
            "scripts/setup.sh does it as root or in CI)"
        )
    root = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELBUILD_CACHE", str(root / "cache"))
        folder = copy_example("tiny_cnn", root)
        write_recipe(folder, TARGETS)
        build_json(folder, "--keep-going", *[t for t in TARGETS if t != "onnx-ort"], check=1)
        run_cli(["report", "-o", str(root / "out"), "--runs", "5", "--warmup", "1"], folder)
        yield root / "out" / "report.html"


def chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(browser()),
            "--headless=new",
            "--no-sandbox",  # as root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


class Rows(HTMLParser):
    """The verdict table's rows as the browser built them: target → verdict, cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self.images: list[str] = []
        self._row: str | None = None
        self._cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-target"):
            self._row, self._cells = a["data-target"], []
            self.rows[self._row] = (a.get("data-verdict") or "", self._cells)
        elif tag == "td" and self._row is not None:
            self._cells.append("")
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cells:
            self._cells[-1] += data


def test_the_browser_renders_every_target(page: Path, tmp_path: Path) -> None:
    proc = chromium(page, tmp_path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Rows()
    dom.feed(proc.stdout)
    assert set(dom.rows) == set(VERDICTS), proc.stdout[:2000]
    for name, (verdict, cells) in dom.rows.items():
        assert verdict == VERDICTS[name]
        assert cells[0] == name and cells[3] == VERDICTS[name], cells
    assert dom.rows["onnx-fp16-strict"][1][4] == "atol 1e-09, rtol 1e-09"
    assert len(dom.images) == 3 and all(s.startswith("data:image/svg+xml") for s in dom.images)


def test_the_screenshot_is_a_real_page(page: Path, tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    proc = chromium(page, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert shot.stat().st_size > 50_000
    img = (imread(str(shot))[..., :3] * 255).round().astype(np.uint8)
    assert img.shape[:2] == (2400, 1280)
    assert img.std() > 20  # not a blank page
    colours = {tuple(int(c) for c in px) for px in img.reshape(-1, 3)[::7]}
    # The verdict badges were painted: green for verified, red for the parity failure.
    assert GREEN in colours and RED in colours
    # A copy beside the report, for a person to look at.
    shutil.copy(shot, page.parent / "screenshot.png")
