"""`modelbuild report`: can each target ship, the recipe, the benchmark; the DAG drawing.

The module's example has a target held to a tolerance it cannot meet (it fails its
parity check), one with a long name, one never built.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import build_json, copy_example, run_cli, write_recipe

LONG = "onnx-int8-dynamic-quantized-for-the-edge-fleet-deployment"
TARGETS = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16-strict": {
        "format": "onnx",
        "precision": "fp16",
        "verify": {"tolerance": {"atol": 1.0e-9, "rtol": 1.0e-9}},
    },
    "torchscript": {"format": "torchscript", "method": "trace"},
    LONG: {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "onnx-ort": {"format": "onnx", "precision": "fp32", "optimize": "extended"},
}
BUILT = ["onnx", "onnx-fp16-strict", "torchscript", LONG]  # onnx-ort is left unbuilt
FAST = ["--runs", "5", "--warmup", "1"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELBUILD_CACHE", str(root / "cache"))
        folder = copy_example("tiny_cnn", root)
        write_recipe(folder, TARGETS)
        result = build_json(folder, "--keep-going", *BUILT, check=1)
        assert result["targets"]["onnx-fp16-strict"]["verified"] is False
        assert result["targets"]["onnx"]["verified"] is True
        yield folder


@pytest.fixture(scope="module")
def report(built: Path) -> Path:
    out = built / "out"
    proc = run_cli(["report", "-o", str(out), *FAST], built)
    assert "report.html" in proc.stdout
    return out


def test_report_says_per_target_whether_it_can_ship(report: Path) -> None:
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    assert "Not every target can ship: 3 verified, 1 failed parity, 1 not built." in md
    ship = md.split("## Can I ship this?", 1)[1].split("## Recipe", 1)[0]
    rows = {line.split(" | ")[0][2:]: line for line in ship.splitlines() if line.startswith("| ")}
    # verdict, the tolerance it was held to, the figures
    assert "| verified | atol 0.0001, rtol 0.001 |" in rows["onnx"] and rows["onnx"].endswith(
        "| 4 | yes |"
    )
    strict = rows["onnx-fp16-strict"]
    assert "| failed parity | atol 1e-09, rtol 1e-09 |" in strict and "not built" not in strict
    assert re.search(r"\| \d\.\de-0\d \|", strict)  # its max abs diff: why it failed
    assert "| verified | cosine ≥ 0.99 |" in rows[LONG]
    assert "| not built | - |" in rows["onnx-ort"]
    assert "failed its parity check, so it was not published" in md
    for name in TARGETS:
        assert f"<tr data-target='{name}'" in html
    assert "data-verdict='failed parity'" in html and "class='badge v-failed-parity'" in html


def test_report_summarises_the_recipe_and_tools(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert "- **model**: models.tiny_cnn:TinyCNN" in md
    assert "- **checkpoint**: weights/tiny_cnn.safetensors" in md
    assert "| images | 1×3×32×32 | float32 | axis 0: batch | [0, 1] |" in md
    assert "- **check data**: 4 generated sets from the declared ranges (seed 0)" in md
    assert f"- **calibration of {LONG}**: dynamic quantization: no calibration data" in md
    tools = md.split("## Tool versions", 1)[1]
    assert re.search(r"\| onnx \| .*onnxruntime \d", tools)
    assert re.search(r"\| torchscript \| torch \d", tools)


def test_benchmark_shows_the_spread_and_a_legend(report: Path, built: Path) -> None:
    md = (report / "report.md").read_text()
    assert "| p10 ms | median ms | p90 ms |" in md
    bench = json.loads(run_cli(["bench", "--json", *FAST], built).stdout)
    rows = {r["name"]: r for r in bench["rows"]}
    for name in ("onnx", "torchscript", LONG):
        r = rows[name]
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], r
    assert rows["onnx-fp16-strict"]["status"] == "failed parity"
    assert rows["onnx-fp16-strict"]["runtime"] == "onnxruntime"
    assert rows["onnx-fp16-strict"]["median_ms"] is None  # a failed artifact is not timed
    assert rows["onnx-fp16-strict"]["verdict"] == "failed parity"
    assert rows["onnx-fp16-strict"]["parity"]["tolerance"] == {"atol": 1e-9, "rtol": 1e-9}
    assert rows["onnx-ort"]["status"] == "not built"
    assert "Colours: onnx `#1f77b4`, torchscript `#e4572e`, PyTorch baseline `#95a5a6`" in md
    html = (report / "report.html").read_text()
    assert "<span class='sw' style='background:#1f77b4'></span>onnx" in html
    # Self-contained: every chart is embedded as SVG, none is linked.
    images = re.findall(r"<img [^>]*src='([^']*)'", html)
    assert len(images) == 3
    for src in images:
        assert src.startswith("data:image/svg+xml;base64,")
        assert b"<svg" in base64.b64decode(src.split(",", 1)[1])[:2000]
    for name in ("latency.svg", "size.svg", "graph.svg"):
        svg = (report / name).read_bytes()
        assert b"<svg" in svg[:2000] and b"<dc:date>" not in svg
    # The fixed colour table: ONNX bars are ONNX blue, TorchScript bars its red.
    latency = (report / "latency.svg").read_text()
    assert "fill: #1f77b4" in latency and "fill: #e4572e" in latency


def test_two_renders_are_byte_identical(built: Path, report: Path, tmp_path: Path) -> None:
    """Same build, same cached measurements: the same bytes, charts and pages alike."""
    for out in ("a", "b"):
        run_cli(["report", "--no-bench", *FAST, "-o", str(tmp_path / out)], built)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["graph.svg", "latency.svg", "report.html", "report.md", "size.svg"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_colours_are_fixed_by_format_not_by_order() -> None:
    from modelbuild.bench.model import BenchRow
    from modelbuild.report.charts import FORMAT_COLORS, color_of, legend_entries

    rows = [
        BenchRow("ov", "target", "openvino", "fp16", "openvino"),
        BenchRow("a", "target", "onnx", "fp32", "onnxruntime"),
        BenchRow("eager", "baseline", "pytorch", "fp32", "torch-eager"),
        BenchRow("plugin", "target", "myformat", "fp32", "x"),
    ]
    assert legend_entries(rows) == legend_entries(rows[::-1])
    assert legend_entries(rows) == [
        ("onnx", FORMAT_COLORS["onnx"]),
        ("openvino", FORMAT_COLORS["openvino"]),
        ("myformat", color_of("myformat")),
        ("PyTorch baseline", color_of("pytorch", "baseline")),
    ]
    assert len(set(FORMAT_COLORS.values()) - {color_of("x", "baseline")}) == len(FORMAT_COLORS) - 1


def test_long_labels_stay_inside_the_chart(built: Path, report: Path) -> None:
    """Every axis label, bar label and the legend lie within the figure."""
    from modelbuild.bench.run import Settings, run_bench
    from modelbuild.recipe.load import load_recipe
    from modelbuild.report.charts import MAX_LABEL, latency_figure, short_label

    recipe = load_recipe(built / "model.build.yaml")
    cache = built.parent / "cache"
    bench = run_bench(recipe, cache, list(TARGETS), Settings(runs=5, warmup=1), measure=False)
    fig = latency_figure(bench)
    assert fig is not None
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lay out, as savefig does
    renderer = canvas.get_renderer()
    box = fig.bbox
    (ax,) = fig.axes
    texts = [*ax.get_yticklabels(), *ax.texts, ax.get_legend()]
    assert any(t.get_text() == short_label(LONG) for t in ax.get_yticklabels())
    assert len(short_label(LONG)) == MAX_LABEL
    for t in texts:
        ext = t.get_window_extent(renderer)
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, t
        assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, t


def test_no_bench_writes_a_report_without_measuring(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELBUILD_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "r"
    out.mkdir()
    (out / "latency.svg").write_text("<svg/>")  # from an older report: must not survive
    (out / "latency.png").write_bytes(b"\x89PNG")  # from before charts were SVG
    run_cli(["report", "--no-bench", "-o", str(out)], built)
    md = (out / "report.md").read_text()
    assert "not measured" in md and "run `modelbuild bench`" in md
    assert not (out / "latency.svg").exists() and not (out / "latency.png").exists()
    assert (out / "size.svg").is_file()  # sizes come from the lockfile
    assert not (tmp_path / "empty-cache" / "bench").exists()
    # Without the build's record (another cache) the lock still says what passed.
    assert "| onnx | onnx | fp32 | verified |" in md


def _plan(folder: Path):  # type: ignore[no-untyped-def]
    from modelbuild.engine.plan import make_plan
    from modelbuild.recipe.load import load_recipe

    return make_plan(load_recipe(folder / "model.build.yaml"))


def test_graph_layout_reads_left_to_right_without_overlaps(built: Path) -> None:
    from modelbuild.report.plot_graph import layout

    plan = _plan(built)
    pos = layout(plan)
    assert set(pos) == set(plan.actions)
    for uid, a in plan.actions.items():
        for d in a.deps:
            assert pos[d][0] < pos[uid][0], (plan.actions[d].id, a.id)
    boxes = list(pos.values())
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            apart_x = abs(x1 - x2) >= (w1 + w2) / 2
            apart_y = abs(y1 - y2) >= (h1 + h2) / 2
            assert apart_x or apart_y


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_graph_draw_writes_png_and_svg(built: Path, tmp_path: Path, fmt: str) -> None:
    from modelbuild.report.plot_graph import draw

    path = draw(_plan(built), fmt, tmp_path / f"g.{fmt}")
    data = path.read_bytes()
    if fmt == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert b"<svg" in data[:2000]
        again = draw(_plan(built), fmt, tmp_path / f"again.{fmt}").read_bytes()
        assert again == data  # byte-reproducible
    with pytest.raises(ValueError):
        draw(_plan(built), "jpg", tmp_path / "g.jpg")


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_graph_command_draws_pictures(built: Path, fmt: str) -> None:
    run_cli(["graph", "--format", fmt, "-o", f"dag.{fmt}"], built)
    assert (built / f"dag.{fmt}").stat().st_size > 0
