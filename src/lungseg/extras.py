"""Optional dependencies: import one, or raise :class:`MissingExtraError` naming the extra to install."""

from __future__ import annotations

import importlib

from .errors import MissingExtraError

ONNX_HINT = "pip install lungseg[onnx]"
OPENVINO_HINT = "pip install lungseg[openvino]"
TRT_HINT = ("pip install lungseg[trt]; TensorRT also needs an NVIDIA GPU with its CUDA driver, "
            "and a CUDA build of torch")


def _import(module: str, what: str, hint: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:  # also raised when a module is present but its shared libraries are not
        raise MissingExtraError(f"{what} needs the '{module}' package, which cannot be imported ({e}); {hint}") from e


def require_onnx_export():
    """``onnx`` (with ``onnxscript``, which torch's ONNX exporter needs)."""
    _import("onnxscript", "ONNX export", ONNX_HINT)
    return _import("onnx", "ONNX export", ONNX_HINT)


def require_onnxruntime():
    return _import("onnxruntime", "Running .onnx models", ONNX_HINT)


def require_openvino():
    return _import("openvino", "Running .onnx models with OpenVINO", OPENVINO_HINT)


def require_tensorrt(what: str = "TensorRT"):
    """``tensorrt``, checked together with a usable CUDA device."""
    trt = _import("tensorrt", what, TRT_HINT)
    import torch

    if not torch.cuda.is_available():
        raise MissingExtraError(f"{what} needs an NVIDIA GPU, and torch sees no CUDA device; {TRT_HINT}")
    return trt
