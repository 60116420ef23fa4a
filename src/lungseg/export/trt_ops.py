"""What TensorRT 10's ONNX parser accepts, checked on an exported graph before an engine is built.

:func:`tensorrt_problems` lists every node of a graph that is outside what was checked, so a
change to the model or to :mod:`lungseg.preprocess` that TensorRT cannot parse is caught by
the tests on any machine, without TensorRT. What was checked, and where (onnx-tensorrt is
TensorRT's ONNX parser; ``onnxOpCheckers.cpp`` and ``onnxOpImporters.cpp`` are the TensorRT
10 sources, ``docs/operators.md`` its support matrix; the TensorRT 10.6 operator reference
for ``Cast``):

* Resize (the UNet's nearest x2 upsampling, its bilinear skip gates and the graph's bilinear
  resize of the logits back to H x W): TensorRT accepts ``mode`` nearest/linear (cubic also
  passes the checker; not used), ``coordinate_transformation_mode`` half_pixel,
  pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn (the last only with
  ``nearest_mode`` round_prefer_floor), ``nearest_mode`` floor/ceil/round_prefer_*,
  ``antialias`` 0 only and ``keep_aspect_ratio_policy`` stretch only. Our graph uses
  linear+half_pixel and nearest+asymmetric+floor, antialias 0, stretch, with output
  ``sizes`` computed from the input's shape. The antialiased downscale of the input is NOT
  a Resize (TensorRT has no antialias): :mod:`lungseg.preprocess` gathers each group of
  outputs' band of input rows (Gather on the image) and contracts it with a batched MatMul.
* The shape arithmetic of that banded resize: Shape (with start/end), Gather, Squeeze,
  Unsqueeze (constant axes), Cast int64 <-> float, integer Div, Mul, Sub, Abs, Clip
  (constant bounds), Greater/Equal/Where on integers, ReduceSum, Range. Range with float32 start/limit/delta is supported by the
  TensorRT 10 importer (int32/int64/float32, all three of one type; a dynamic ``limit`` is
  allowed; TensorRT 8.4 had required float inputs to be initializers, 8.5 dropped that).
* Cast bool -> uint8 for the ``mask`` output: TensorRT 10's ICastLayer converts between
  bool, uint8, int8, int32, int64, float16, bfloat16 and float32 ("all conversions between
  supported data types are allowed"); uint8 is a valid network output type.
* The rest (Conv, Relu, MaxPool with dilation 1, MatMul on floats, Softmax, ReduceMean,
  ReduceMax, Pow, Sqrt, Sigmoid, Greater, Concat, Reshape, Transpose, Add) are plain
  supported layers.

Not verified here: building and running an engine (no TensorRT on these machines).
"""

from __future__ import annotations

from .metadata import INPUT_NAME

# ONNX TensorProto element types
FLOAT, UINT8, INT8, INT32, INT64, BOOL, FLOAT16, BFLOAT16 = 1, 2, 3, 6, 7, 9, 10, 16
TRT_TYPES = {FLOAT, UINT8, INT8, INT32, INT64, BOOL, FLOAT16, BFLOAT16}
MAX_OPSET = 22  # onnx-tensorrt documents opsets 9..22

CHECKED_OPS = {
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv", "Div", "Equal", "Exp",
    "Expand", "Gather", "Gemm", "Greater", "Identity", "Log", "MatMul", "MaxPool", "Mul", "Pow", "Range", "ReduceMax",
    "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax",
    "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where",
}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"}
NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def _element_types(model) -> dict:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {i.name: i.data_type for i in g.initializer}
    for vi in (*g.input, *g.value_info, *g.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


def tensorrt_problems(model) -> list[str]:
    """Reasons why TensorRT 10's ONNX parser may reject ``model`` (an empty list when none)."""
    g = model.graph
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > MAX_OPSET:
        problems.append(f"opset {opset}: onnx-tensorrt supports opsets 9..{MAX_OPSET}")
    types = _element_types(model)
    constant = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for vi in (*g.input, *g.output):
        if types.get(vi.name) not in TRT_TYPES:
            problems.append(f"graph input/output {vi.name}: element type {types.get(vi.name)} is not a TensorRT type")
    if [i.name for i in g.input] != [INPUT_NAME]:
        problems.append(f"graph inputs {[i.name for i in g.input]}; expected [{INPUT_NAME!r}]")
    for node in g.node:
        where = f"{node.op_type} node {node.name or node.output[0]}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} (would need a TensorRT plugin)")
            continue
        if node.op_type not in CHECKED_OPS:
            problems.append(f"{where}: operator not on the list checked against TensorRT's ONNX parser")
            continue
        a = _attrs(node)
        if node.op_type == "Resize":
            mode = _text(a.get("mode", "nearest"))
            coord = _text(a.get("coordinate_transformation_mode", "half_pixel"))
            nearest = _text(a.get("nearest_mode", "round_prefer_floor"))
            if mode not in RESIZE_MODES:
                problems.append(f"{where}: mode {mode!r} (checked: {sorted(RESIZE_MODES)})")
            if coord not in RESIZE_COORDINATES:
                problems.append(f"{where}: coordinate_transformation_mode {coord!r} is not supported")
            if mode == "nearest" and nearest not in NEAREST_MODES:
                problems.append(f"{where}: nearest_mode {nearest!r} is not supported")
            if coord == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
                problems.append(f"{where}: tf_half_pixel_for_nn needs nearest_mode round_prefer_floor")
            if a.get("antialias", 0):
                problems.append(f"{where}: antialias=1 is not supported by TensorRT")
            if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
                problems.append(f"{where}: keep_aspect_ratio_policy must be 'stretch'")
        elif node.op_type == "Cast" and a.get("to") not in TRT_TYPES:
            problems.append(f"{where}: cast to element type {a.get('to')}, not a TensorRT type")
        elif node.op_type == "Range":
            kinds = {types.get(i) for i in node.input}
            if len(kinds) != 1 or not kinds <= {FLOAT, INT32, INT64}:
                problems.append(f"{where}: start/limit/delta types {kinds}; TensorRT needs one of float32/int32/int64")
        elif node.op_type == "Clip" and any(i and i not in constant for i in node.input[1:]):
            problems.append(f"{where}: min/max are computed, not constants")
        elif node.op_type in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1] not in constant:
            problems.append(f"{where}: axes are computed, not constants")
        elif node.op_type == "MaxPool" and (any(d != 1 for d in a.get("dilations", [])) or len(node.output) > 1):
            problems.append(f"{where}: dilations other than 1 or an Indices output")
        elif node.op_type == "MatMul" and not {types.get(i) for i in node.input} <= {FLOAT, FLOAT16, BFLOAT16}:
            problems.append(f"{where}: MatMul on non-float inputs")
        elif node.op_type == "BatchNormalization" and a.get("training_mode", 0):
            problems.append(f"{where}: training_mode=1")
    return problems
