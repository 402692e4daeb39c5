"""onnx_simplify on graphs onnxsim leaves invalid: a Pad fused into a Conv that kept
``auto_pad=VALID`` (torch's ``padding="valid"``, as in Hugging Face EfficientNet)."""

from __future__ import annotations

from pathlib import Path

from conftest import build_json, statuses

MODEL = """
import torch


class PadValid(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pad = torch.nn.ZeroPad2d((0, 1, 0, 1))
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding="valid")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(images))
"""

RECIPE = """modelbuild: 1
name: pad-valid
source: {framework: pytorch, model: "padvalid:PadValid", code: [padvalid.py]}
inputs:
  images: {shape: [1, 3, 8, 8], dtype: float32, dynamic: {0: batch}}
outputs: [out]
targets:
  onnx: {format: onnx, precision: fp32, simplify: true}
"""


def test_a_pad_fused_into_a_valid_conv_builds_and_verifies(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "padvalid.py").write_text(MODEL)
    (tmp_path / "model.build.yaml").write_text(RECIPE)
    result = build_json(tmp_path)
    assert statuses(result)["verify[onnx]"] in {"built", "cached"}, result
    import onnx

    graph = onnx.load(str(tmp_path / "dist" / "onnx" / "model.onnx")).graph
    (conv,) = [n for n in graph.node if n.op_type == "Conv"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert "auto_pad" not in attrs
    assert attrs["pads"] == [0, 0, 1, 1]  # the fused Pad, now applied


def test_fix_fused_pads_leaves_same_upper_alone() -> None:
    import onnx
    from onnx import helper

    from modelbuild.formats.onnx.onnx_simplify import fix_fused_pads

    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", name="c")
    fused = helper.make_node("Conv", ["x", "w"], ["z"], auto_pad="VALID", pads=[0, 0, 1, 1])
    model = helper.make_model(helper.make_graph([node, fused], "g", [], []))
    assert fix_fused_pads(model) == ["Conv"]
    assert [a.name for a in model.graph.node[0].attribute] == ["auto_pad"]
    assert [a.name for a in model.graph.node[1].attribute] == ["pads"]
    onnx.checker.check_node(model.graph.node[1])


POOL_MODEL = '''
import torch


class WholePool(torch.nn.Module):
    """Hugging Face EfficientNet's head: AvgPool2d with a kernel over the whole input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torch.nn.AvgPool2d(8, ceil_mode=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(images)).flatten(1)
'''


def test_a_ceil_mode_pool_over_the_whole_input_builds_and_verifies(
    tmp_path: Path, cache_dir: Path
) -> None:
    """onnxruntime divided by the whole 8x8 window where torch averages the 4x4 input:
    the ONNX file was 4x too small and failed the gate (EfficientNet in the zoo)."""
    (tmp_path / "wholepool.py").write_text(POOL_MODEL)
    recipe = (
        RECIPE.replace("padvalid:PadValid", "wholepool:WholePool")
        .replace("padvalid.py", "wholepool.py")
        .replace("[1, 3, 8, 8]", "[2, 3, 4, 4]")
    )
    (tmp_path / "model.build.yaml").write_text(recipe)
    result = build_json(tmp_path)
    assert statuses(result)["verify[onnx]"] in {"built", "cached"}, result
    import onnx

    graph = onnx.load(str(tmp_path / "dist" / "onnx" / "model.onnx")).graph
    assert [n.op_type for n in graph.node if "Pool" in n.op_type] == ["GlobalAveragePool"]
    notices = result["targets"]["onnx"].get("notices") or []
    lock = (tmp_path / "model.build.lock").read_text()
    assert "GlobalAveragePool" in lock or any("GlobalAveragePool" in n for n in notices)
