"""``quantize_onnx``: an int8 copy of an exported lungseg ONNX graph (ONNX Runtime static quantization).

Only the network is quantized. The graph made by :mod:`lungseg.export.onnx` is
preprocessing (the antialiased resize as matrix products, the standardisation), the
network, and postprocessing (bilinear upsample to the input's size, sigmoid, threshold).
The network is found from the graph's structure, not from node names: it runs from the
input of the first ``Conv`` (the standardised image) to the output of the last ``Conv``
(the logits). Every node outside it is passed to ``nodes_to_exclude``, and constants the
exporter shares between the network and the rest are duplicated first, so the resize
matmuls, the standardisation and the full-size upsample/sigmoid/threshold stay exactly
float32 and the graph still takes raw pixels of any size.

Calibration runs the float graph on raw pixel arrays exactly as a user would feed them
(no resizing on the host: the graph's own preprocessing brings every image to the
network's size). The result keeps lungseg's metadata with ``precision`` set to ``int8``
and a ``quantization`` entry recording the settings, so :func:`lungseg.load` runs it.

Defaults (chosen on an AMD Zen3 CPU with AVX2, no VNNI, 2 threads): QDQ format, uint8
activations, int8 per-channel weights with ``reduce_range`` (7-bit weights: without it the
u8*s8 pair sums of AVX2's ``vpmaddubsw`` saturate, which cost up to 0.18 Dice on single
test images), MinMax calibration, the op types of :data:`DEFAULT_OP_TYPES`, the head Conv
kept float. int8 activations and uint8 weights were both slower on that CPU.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from ..extras import require_onnx_export, require_onnxruntime
from ..io import write_bytes_atomic
from .metadata import INPUT_NAME, METADATA_NAME, check_metadata
from .onnx import set_metadata

# Op types quantized by default: the convolutions plus the ops between them, so that runs of
# QLinear ops stay in int8 (a lone quantized Conv pays a Quantize/Dequantize on every edge).
DEFAULT_OP_TYPES = ("Conv", "Relu", "Add", "MaxPool", "Concat", "Resize", "Mul")
# Groups of network nodes that can be left in float32 (``exclude=``). The head (the last Conv,
# 16 -> 1 channels) stays float by default: the logits, and so the probability output, are then
# not rounded to the int8 grid (a step of ~0.13 in logit), at a cost of about 1 ms.
EXCLUDABLE = ("stem", "head", "attention")
DEFAULT_EXCLUDE = ("head",)


class PixelReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over raw pixel arrays, one image per batch.

    Each array is 2-D ``[H, W]``, ``[1, H, W]`` or ``[N, 1, H, W]`` in its own units (uint8,
    uint16 or float); it is fed as float32 ``[N, 1, H, W]``, as the graph's input asks.
    """

    def __init__(self, pixels):
        self._arrays = [self._as_batch(p) for p in pixels]
        self._next = 0

    @staticmethod
    def _as_batch(p) -> np.ndarray:
        a = np.asarray(p)
        if a.ndim == 2:
            a = a[None, None]
        elif a.ndim == 3 and a.shape[0] == 1:
            a = a[None]
        if a.ndim != 4 or a.shape[1] != 1 or min(a.shape) < 1:
            raise InputError(f"calibration array of shape {np.shape(p)}: expected [H, W], [1, H, W] or [N, 1, H, W]")
        return np.ascontiguousarray(a, dtype=np.float32)

    def get_next(self):
        if self._next >= len(self._arrays):
            return None
        self._next += 1
        return {INPUT_NAME: self._arrays[self._next - 1]}

    def rewind(self):
        self._next = 0

    def __len__(self):
        return len(self._arrays)


def _name_nodes(model) -> None:
    """Give every unnamed node a unique name (the quantizer selects and excludes nodes by name)."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"lungseg_{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)


PROBABILITY = "probability"  # the graph output the network's logits feed


def network_nodes(model) -> tuple[set[str], dict[str, list[str]]]:
    """Names of the network's nodes, and the named groups of :data:`EXCLUDABLE`.

    The network is every node downstream of the first Conv's input and upstream of (or
    equal to) the last Conv, of the Convs the ``probability`` output depends on: the nodes
    that compute the logits from the standardised image (the quality head's Convs, which
    only the ``quality`` output needs, stay outside and in float32).
    """
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    feeds, stack = set(), [PROBABILITY]  # nodes the probability output depends on
    while stack:
        n = producer.get(stack.pop())
        if n is not None and n.name not in feeds:
            feeds.add(n.name)
            stack.extend(n.input)
    convs = [n for n in nodes if n.op_type == "Conv" and n.name in feeds]
    if not convs:
        raise ModelError("no Conv node in this graph: not a lungseg network")
    net_in, net_out = convs[0].input[0], convs[-1].output[0]
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    down, stack = set(), [net_in]  # nodes fed (transitively) by the network input
    while stack:
        for n in consumers.get(stack.pop(), []):
            if n.name not in down:
                down.add(n.name)
                stack.extend(n.output)
    up, stack = set(), [net_out]  # nodes feeding (transitively) the logits
    while stack:
        n = producer.get(stack.pop())
        if n is not None and n.name not in up:
            up.add(n.name)
            stack.extend(n.input)
    network = down & up

    # attention: the MatMuls inside the network (bottleneck self-attention) and the Convs that
    # reach them through reshapes only (query, key, value); the bottleneck itself is not included.
    through = {"Reshape", "Transpose", "Flatten", "Softmax", "Sub", "ReduceMax", "MatMul"}
    attention, stack = set(), [n for n in nodes if n.name in network and n.op_type == "MatMul"]
    while stack:
        n = stack.pop()
        if n.name in attention or n.name not in network or n.op_type not in through | {"Conv"}:
            continue
        attention.add(n.name)
        if n.op_type in through:
            stack.extend(producer[i] for i in n.input if i in producer)
    groups = {"stem": [convs[0].name], "head": [convs[-1].name], "attention": sorted(attention)}
    return network, groups


def _unshare_constants(model, network: set[str]) -> int:
    """Give the network its own copy of every constant it shares with the pre/postprocessing.

    The exporter reuses one initializer for equal constants (the 1.0 of the resize weights is
    also the 1 of the skip gates). The quantizer would quantize such a constant for the
    network node and rewire every consumer to the dequantized value, which is not exactly
    equal (127 * (1/127) != 1 in float32) and would leak into the preprocessing.
    """
    from onnx import helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    users: dict[str, set[bool]] = {}
    for n in graph.node:
        for i in n.input:
            if i in inits or i in consts:
                users.setdefault(i, set()).add(n.name in network)
    shared = [name for name, kinds in users.items() if kinds == {True, False}]
    taken = {o for n in graph.node for o in n.output} | set(inits)
    for name in shared:
        copy = f"{name}__network"
        while copy in taken:
            copy += "_"
        taken.add(copy)
        if name in inits:
            dup = graph.initializer.add()
            dup.CopyFrom(inits[name])
            dup.name = copy
        else:
            node = consts[name]
            dup = helper.make_node("Constant", [], [copy], name=f"{node.name}__network")
            dup.attribute.extend(node.attribute)
            graph.node.insert(list(graph.node).index(node) + 1, dup)
        for n in graph.node:
            if n.name in network:
                for k, i in enumerate(n.input):
                    if i == name:
                        n.input[k] = copy
    return len(shared)


def _quant_types(ort_q, activation_type: str, weight_type: str):
    names = {"uint8": ort_q.QuantType.QUInt8, "int8": ort_q.QuantType.QInt8}
    try:
        return names[activation_type], names[weight_type]
    except KeyError as e:
        raise InputError(f"quantization type {e.args[0]!r}: choose uint8 or int8") from e


def quantize_onnx(src, dst, calibration_pixels, *, activation_type: str = "uint8", weight_type: str = "int8",
                  per_channel: bool = True, reduce_range: bool = True, calibrate_method: str = "minmax",
                  op_types=DEFAULT_OP_TYPES, exclude=DEFAULT_EXCLUDE, quant_format: str = "qdq",
                  pre_process: bool = False, extra_options: dict | None = None) -> Path:
    """Write an int8 copy of the lungseg ONNX graph ``src`` to ``dst``; returns ``dst``.

    ``calibration_pixels``: raw images (2-D arrays, or ``[N, 1, H, W]``), fed unchanged to
    the float graph to calibrate the activation ranges; a few dozen representative X-rays
    are enough. ``activation_type``/``weight_type``: ``uint8`` or ``int8``.
    ``calibrate_method``: ``minmax``, ``entropy`` or ``percentile``. ``op_types``: the op
    types quantized inside the network. ``exclude``: groups of network nodes
    (:data:`EXCLUDABLE`) or node names kept in float32. ``quant_format``: ``qdq`` or
    ``qoperator``. ``pre_process``: run ``quant_pre_process`` (shape inference and basic
    optimisation) before quantizing.
    """
    onnx = require_onnx_export()
    require_onnxruntime()
    from onnxruntime import __version__ as ort_version
    from onnxruntime import quantization as ort_q

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".onnx":
        raise InputError(f"{dst}: an ONNX model file ends in .onnx")
    if src.resolve() == dst.resolve():
        raise InputError(f"{dst}: write the int8 model to another file than its source")
    reader = PixelReader(calibration_pixels)
    if not len(reader):
        raise InputError("no calibration images given")
    model = onnx.load(str(src))
    metadata = check_metadata({p.key: p.value for p in model.metadata_props}.get(METADATA_NAME), src)
    if metadata.get("format") != "onnx" or metadata.get("precision") != "fp32":
        raise InputError(f"{src}: a float32 ONNX model is needed (this one is {metadata.get('format')}, "
                         f"{metadata.get('precision')})")
    methods = {"minmax": ort_q.CalibrationMethod.MinMax, "entropy": ort_q.CalibrationMethod.Entropy,
               "percentile": ort_q.CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise InputError(f"calibration method {calibrate_method!r}: choose one of {', '.join(methods)}")
    formats = {"qdq": ort_q.QuantFormat.QDQ, "qoperator": ort_q.QuantFormat.QOperator}
    if quant_format not in formats:
        raise InputError(f"quantization format {quant_format!r}: choose qdq or qoperator")
    act, wt = _quant_types(ort_q, activation_type, weight_type)

    with tempfile.TemporaryDirectory(prefix="lungseg-quant-") as tmp:
        tmp = Path(tmp)
        _name_nodes(model)
        model_in = tmp / "float.onnx"
        onnx.save(model, str(model_in))
        if pre_process:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = tmp / "pre.onnx"
            # symbolic shape inference fails on the dynamic-size resize weights; ONNX shape inference and
            # ORT basic optimisation (constant folding, BN folding) still run
            quant_pre_process(str(model_in), str(pre), skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            _name_nodes(model)
            model_in = tmp / "pre-named.onnx"
            onnx.save(model, str(model_in))

        network, groups = network_nodes(model)
        if _unshare_constants(model, network):
            model_in = tmp / "unshared.onnx"
            onnx.save(model, str(model_in))
        excluded = {n.name for n in model.graph.node if n.name not in network}
        for item in exclude:
            if item in groups:
                excluded.update(groups[item])
            elif item in network:
                excluded.add(item)
            else:
                raise InputError(f"exclude {item!r}: neither one of {', '.join(EXCLUDABLE)} nor a network node")
        options = dict(extra_options or {})
        if calibrate_method == "percentile":
            options.setdefault("CalibPercentile", 99.999)
        out = tmp / "int8.onnx"
        ort_q.quantize_static(str(model_in), str(out), reader, quant_format=formats[quant_format],
                              op_types_to_quantize=list(op_types), per_channel=per_channel,
                              reduce_range=reduce_range, activation_type=act, weight_type=wt,
                              nodes_to_exclude=sorted(excluded), calibrate_method=methods[calibrate_method],
                              extra_options=options)
        qmodel = onnx.load(str(out))

    opset = next(o.version for o in qmodel.opset_import if o.domain in ("", "ai.onnx"))
    metadata = {**metadata, "precision": "int8", "opset": int(opset), "quantization": {
        "tool": "onnxruntime.quantization.quantize_static",
        "onnxruntime": ort_version,
        "format": quant_format, "activations": activation_type, "weights": weight_type,
        "per_channel": bool(per_channel), "reduce_range": bool(reduce_range),
        "calibration": calibrate_method, "calibration_images": len(reader),
        "op_types": list(op_types), "excluded_groups": [e for e in exclude if e in groups],
    }}
    set_metadata(qmodel, metadata)
    qmodel.doc_string = "lungseg lung segmentation (int8 network): raw pixels [N,1,H,W] -> probability and uint8 mask"
    write_bytes_atomic(dst, qmodel.SerializeToString())
    return dst


def calibration_images(folders, count: int = 16, split: str = "train", seed: int = 0) -> list[np.ndarray]:
    """``count`` images from each data folder's ``split``, drawn at random (fixed ``seed``), in their own units."""
    from ..data.datasets import find_samples
    from ..io import read_image

    out = []
    for folder in folders:
        samples = find_samples(folder, split)
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(samples), size=min(count, len(samples)), replace=False)
        out.extend(read_image(samples[i].image) for i in sorted(picks))
    return out


def main(argv=None) -> None:
    """``python -m lungseg.export.quantize SRC DST --data FOLDER [FOLDER ...]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m lungseg.export.quantize", description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--data", nargs="+", required=True, help="data folders to calibrate on (their train split)")
    p.add_argument("--count", type=int, default=16, help="images per folder")
    p.add_argument("--activations", default="uint8", choices=("uint8", "int8"))
    p.add_argument("--weights", default="int8", choices=("uint8", "int8"))
    p.add_argument("--no-reduce-range", action="store_true")
    p.add_argument("--per-tensor", action="store_true")
    p.add_argument("--calibration", default="minmax", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--op-types", default=",".join(DEFAULT_OP_TYPES))
    p.add_argument("--exclude", default=",".join(DEFAULT_EXCLUDE),
                   help=f"comma-separated groups ({', '.join(EXCLUDABLE)}) or node names kept float")
    p.add_argument("--format", default="qdq", choices=("qdq", "qoperator"))
    p.add_argument("--pre-process", action="store_true")
    a = p.parse_args(argv)
    pixels = calibration_images(a.data, a.count)
    path = quantize_onnx(a.src, a.dst, pixels, activation_type=a.activations, weight_type=a.weights,
                         per_channel=not a.per_tensor, reduce_range=not a.no_reduce_range,
                         calibrate_method=a.calibration, op_types=[t for t in a.op_types.split(",") if t],
                         exclude=[e for e in a.exclude.split(",") if e], quant_format=a.format,
                         pre_process=a.pre_process)
    print(json.dumps({"wrote": str(path), "calibration_images": len(pixels)}))


if __name__ == "__main__":
    main()
