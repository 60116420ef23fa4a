"""``torch2onnx``: the deploy module as an ONNX graph with dynamic N, H and W.

Uses torch's ``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``), whose
lowest native opset is 18: it cannot convert this graph down to 17 (it would silently keep
18), so opsets below 18 are refused rather than mislabelled. The graph is checked with
``onnx.checker`` (full check, with shape inference) and against the operators TensorRT's
parser accepts (:mod:`lungseg.export.trt_ops`); the metadata goes into ``metadata_props``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings

import torch

from ..errors import InputError, ModelError
from ..extras import require_onnx_export
from ..io import write_bytes_atomic
from .metadata import INPUT_NAME, INPUTS, METADATA_NAME, OUTPUT_NAMES, OUTPUTS, dumps
from .trt_ops import tensorrt_problems

MIN_OPSET = 18
DEFAULT_OPSET = 18
MAX_BATCH = 1024
MAX_SIDE = 65536

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_exporter():
    """Keep torch's exporter from logging and warning about things that do not concern the user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _name_dims(value_info) -> None:
    """Set the declared shape of a graph input/output to the contract's (``[N, 1, H, W]``, ``[N, 4]``)."""
    dims = value_info.type.tensor_type.shape.dim
    shape = {INPUT_NAME: INPUTS[INPUT_NAME], **OUTPUTS}[value_info.name]["shape"]
    for d, value in zip(dims, shape):
        d.Clear()
        if isinstance(value, int):
            d.dim_value = value
        else:
            d.dim_param = value


def set_metadata(model, metadata: dict) -> None:
    """Store ``metadata`` as ``lungseg.json`` plus one string entry per top-level key."""
    entries = {METADATA_NAME: dumps(metadata)}
    entries.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in entries.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v


def torch2onnx_model(pipeline, metadata: dict, opset: int = DEFAULT_OPSET):
    """Export ``pipeline`` (on the CPU) to a checked ``onnx.ModelProto`` carrying ``metadata``."""
    onnx = require_onnx_export()
    if int(opset) < MIN_OPSET:
        raise InputError(f"opset {opset}: torch's ONNX exporter needs opset {MIN_OPSET} or newer for this graph")
    pipeline = pipeline.to("cpu").eval()
    example = torch.full((2, 1, 96, 80), 128.0)
    example[..., 20:60, 10:40] = 40.0
    dims = {0: torch.export.Dim("N", min=1, max=MAX_BATCH), 2: torch.export.Dim("H", min=2, max=MAX_SIDE),
            3: torch.export.Dim("W", min=2, max=MAX_SIDE)}
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(pipeline, (example,), None, dynamo=True, verbose=False,
                                        input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                        opset_version=int(opset), dynamic_shapes={INPUT_NAME: dims})
    except Exception as e:  # torch raises many types here; name the step that failed
        raise ModelError(f"ONNX export failed: {type(e).__name__}: {e}") from e
    model = program.model_proto
    got = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if got != int(opset):
        raise ModelError(f"ONNX export produced opset {got}, not the requested {opset}")
    for vi in (*model.graph.input, *model.graph.output):
        _name_dims(vi)
    metadata = {**metadata, "opset": int(opset), "precision": "fp32"}
    set_metadata(model, metadata)
    model.doc_string = "lungseg lung segmentation: raw pixels [N,1,H,W] -> probability and uint8 mask"
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"exported ONNX graph fails onnx.checker: {e}") from e
    for problem in tensorrt_problems(model):
        log.warning("TensorRT may not parse this graph: %s", problem)
    return model, metadata


def torch2onnx(pipeline, path, metadata: dict, options) -> dict:
    """Write ``pipeline`` as an ONNX file at ``path``; returns the metadata stored in it."""
    model, metadata = torch2onnx_model(pipeline, metadata, options.opset)
    write_bytes_atomic(path, model.SerializeToString())
    return metadata
