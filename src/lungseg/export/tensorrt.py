"""``onnx2engine``: build a TensorRT 10 engine from lungseg's ONNX graph (Python API).

The engine has one optimization profile for ``pixels`` (min/opt/max ``[N, 1, H, W]``);
inputs outside it are refused at run time. With ``fp16`` the network runs in half
precision except the preprocessing (the antialiased resize and the standardisation), which
is pinned to float32: raw 16-bit pixel values up to 65535 do not fit in float16 (max
65504). The metadata goes into the JSON sidecar ``<engine>.json``, never into the engine
file. ``tensorrt`` is imported only when an engine is built or run.

Written against TensorRT 10's documented Python API; not run on these machines (no TensorRT).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ..errors import InputError, ModelError
from ..extras import require_tensorrt
from ..io import write_bytes_atomic
from .metadata import INPUT_NAME, METADATA_NAME, check_metadata, dumps
from .onnx import torch2onnx_model
from .trt_ops import tensorrt_problems

DEFAULT_MIN_SHAPE = (1, 1, 64, 64)
DEFAULT_OPT_SHAPE = (1, 1, 2048, 2048)
DEFAULT_MAX_SHAPE = (4, 1, 5000, 5000)


def sidecar_path(engine_path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def _preprocess_node_names(model) -> set[str]:
    """Names of the ONNX nodes that belong to the Preprocess module."""
    names = set()
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        if "'preprocess'" in scopes or node.name.startswith("/preprocess/"):
            names.add(node.name)
    return names


def _pin_fp32(trt, network, node_names: set[str]) -> int:
    """Keep the layers made from ``node_names`` in float32: float outputs stay float32, and layers
    whose inputs are all floats also compute in float32. Returns how many layers were touched."""
    floats = (trt.float32, trt.float16)
    touched = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        meta = getattr(layer, "metadata", "") or ""
        if layer.name not in node_names and not any(f"[ONNX Layer: {n}]" in meta for n in node_names):
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(t.dtype not in floats for t in outputs):
            continue  # integer shape arithmetic: nothing to pin
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        inputs = [layer.get_input(k) for k in range(layer.num_inputs)]
        if all(t is None or t.dtype in floats for t in inputs):
            layer.precision = trt.float32
        touched += 1
    return touched


def check_profile(min_shape, opt_shape, max_shape) -> list[tuple[int, ...]]:
    """The optimization profile as three ``[N, 1, H, W]`` tuples with min <= opt <= max on every axis."""
    shapes = [tuple(int(v) for v in s) for s in (min_shape, opt_shape, max_shape)]
    valid = all(len(s) == 4 and s[1] == 1 and min(s) >= 1 for s in shapes)
    if not valid or not all(a <= b <= c for a, b, c in zip(*shapes)):
        raise InputError(f"optimization profile {shapes}: need [N, 1, H, W] shapes with min <= opt <= max per axis")
    return shapes


def onnx2engine(onnx_path, engine_path, *, fp16: bool = False, min_shape=DEFAULT_MIN_SHAPE,
                opt_shape=DEFAULT_OPT_SHAPE, max_shape=DEFAULT_MAX_SHAPE, workspace_gib: float | None = None) -> dict:
    """Build ``engine_path`` (and its JSON sidecar) from a lungseg ONNX file; returns the metadata."""
    import onnx

    trt = require_tensorrt("Building a TensorRT engine")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in model.metadata_props}
    metadata = check_metadata(props.get(METADATA_NAME), onnx_path)
    problems = tensorrt_problems(model)
    if problems:
        raise ModelError(f"{onnx_path}: TensorRT cannot take this graph: " + "; ".join(problems))
    shapes = check_profile(min_shape, opt_shape, max_shape)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *shapes)
    config.add_optimization_profile(profile)
    if not fp16:
        config.clear_flag(trt.BuilderFlag.TF32)  # TensorRT allows TF32 by default; fp32 means fp32
    else:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        if _pin_fp32(trt, network, _preprocess_node_names(model)) == 0:
            raise ModelError("could not find the preprocessing layers to keep in float32 for --fp16")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path} (see TensorRT's log above)")
    metadata = {**metadata, "format": "trt", "precision": "fp16" if fp16 else "fp32",
                "tensorrt_version": trt.__version__, "gpu": torch.cuda.get_device_name(),
                "profile": {"min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])}}
    write_bytes_atomic(engine_path, bytes(serialized))
    write_bytes_atomic(sidecar_path(engine_path), dumps(metadata).encode())
    return metadata


def torch2engine(pipeline, path, metadata: dict, options) -> dict:
    """Export ``pipeline`` to ONNX in a temporary folder, then build the engine at ``path``."""
    require_tensorrt("Building a TensorRT engine")
    model, _ = torch2onnx_model(pipeline, metadata, options.opset)
    with tempfile.TemporaryDirectory(prefix="lungseg-trt-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(model.SerializeToString())
        return onnx2engine(onnx_path, path, fp16=options.fp16, min_shape=options.min_shape,
                           opt_shape=options.opt_shape, max_shape=options.max_shape,
                           workspace_gib=options.workspace_gib)

