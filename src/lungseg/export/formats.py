"""The table of deployment formats. One row per format drives export, loading, the CLI and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .onnx import torch2onnx
from .tensorrt import torch2engine
from .torchscript import torch2torchscript


@dataclass(frozen=True)
class Format:
    """One deployment format.

    ``exporter(pipeline, path, metadata, options) -> metadata`` writes the artifact;
    ``backend`` names the module of :mod:`lungseg.runtime` that runs it (``other_backends``:
    modules that also can, chosen with ``lungseg.load(..., backend=)``); ``extra`` is the
    pip extra its runtime needs (None: none); ``needs_gpu``: it only builds and runs on an
    NVIDIA GPU.
    """

    name: str
    suffixes: tuple[str, ...]
    exporter: Callable
    backend: str
    extra: str | None
    needs_gpu: bool
    aliases: tuple[str, ...] = ()
    description: str = ""
    other_backends: tuple[str, ...] = ()


FORMATS: tuple[Format, ...] = (
    Format("torchscript", (".torchscript", ".pt"), torch2torchscript, "torchscript", None, False,
           description="TorchScript archive, runs with torch/libtorch on the device it was traced on"),
    Format("onnx", (".onnx",), torch2onnx, "onnxruntime", "onnx", False,
           description="ONNX graph (opset >= 18), runs with ONNX Runtime on CPU or CUDA (or OpenVINO on CPU)",
           other_backends=("openvino",)),
    Format("trt", (".engine",), torch2engine, "tensorrt", "trt", True, aliases=("tensorrt", "engine"),
           description="TensorRT 10 engine with a JSON sidecar, for the GPU it was built on"),
)


def names() -> list[str]:
    return [f.name for f in FORMATS]


def get_format(name: str) -> Format:
    """The format called ``name`` or one of its aliases; anything else is an InputError."""
    key = str(name).strip().lower()
    for f in FORMATS:
        if key == f.name or key in f.aliases:
            return f
    aliases = ", ".join(f"{a} = {f.name}" for f in FORMATS for a in f.aliases)
    raise InputError(f"unknown export format {name!r}; choose one of {', '.join(names())} ({aliases})")


def formats_for_suffix(path) -> list[Format]:
    """Formats whose artifacts may carry ``path``'s suffix (``.pt`` is also a weights file)."""
    suffix = Path(path).suffix.lower()
    return [f for f in FORMATS if suffix in f.suffixes]
