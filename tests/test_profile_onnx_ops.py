"""benchmarks/profile_onnx_ops.py: it reads ONNX Runtime's profile and reports every node it ran."""

import subprocess
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_onnx_ops.py"


def _tiny_graph(path: Path) -> None:
    """pixels [N, 1, H, W] -> Sigmoid(pixels) > 0.5 as uint8: named nodes of three operator types."""
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("mask", TensorProto.UINT8, ["n", 1, "h", "w"])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [helper.make_node("Sigmoid", ["pixels"], ["p"], name="squash"),
             helper.make_node("Greater", ["p", "half"], ["b"], name="cut"),
             helper.make_node("Cast", ["b"], ["mask"], to=TensorProto.UINT8, name="as_u8")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=[half])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_profile_reports_each_operator_of_the_graph(tmp_path):
    model = tmp_path / "tiny.onnx"
    _tiny_graph(model)
    out = subprocess.run([sys.executable, str(SCRIPT), str(model), "--width", "64", "--height", "48",
                          "--repeat", "3", "--threads", "1", "--top", "3"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "tiny.onnx: 64x48 float32 pixels, 1 threads, median of 3 runs" in out
    slowest = out.split("slowest nodes:")[1]
    for node in ("squash", "cut", "as_u8"):
        assert node in slowest


def test_node_times_keeps_one_entry_per_run():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from profile_onnx_ops import node_times
    finally:
        sys.path.remove(str(SCRIPT.parent))
    events = [{"cat": "Session", "name": "model_run", "dur": 900},
              {"cat": "Node", "name": "cut_kernel_time", "dur": 7, "args": {"op_name": "Greater"}},
              {"cat": "Node", "name": "cut_fence_before", "dur": 1, "args": {"op_name": "Greater"}},
              {"cat": "Node", "name": "cut_kernel_time", "dur": 9, "args": {"op_name": "Greater"}}]
    assert node_times(events) == {("Greater", "cut"): [7.0, 9.0]}
