"""One benchmark row: a model (lungseg's weights or a peer replica) in one format on one device.

:func:`open_runner` exports the artifact the row needs (once, into the work folder) and
returns a :class:`Runner` whose ``segment(pixels)`` is the end-to-end call a user makes:
pixel buffer in, cleaned-up mask out. A row that cannot run here raises :class:`Skip`
with the reason; any other exception is the row's failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

LUNGSEG = "lungseg"            # the default model (or --model's weights)
LUNGSEG_FAST = "lungseg_fast"  # the shipped fast model
OWN_MODELS = (LUNGSEG, LUNGSEG_FAST)
FORMATS = ("eager", "torchscript", "onnx", "onnx-int8", "openvino", "trt-fp32", "trt-fp16", "cpp-onnxruntime",
           "cpp-libtorch")  # openvino: the onnx row's artifact on OpenVINO's CPU plugin
DEVICES = ("cpu", "cuda")
ARTIFACT_SUFFIX = {"torchscript": ".torchscript", "onnx": ".onnx", "onnx-int8": ".onnx",
                   "trt-fp32": ".engine", "trt-fp16": ".engine"}


class Skip(Exception):
    """This row cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Target:
    model: str   # one of OWN_MODELS or a name in peers.PEERS
    format: str  # one of FORMATS
    device: str  # "cpu" or "cuda"

    @property
    def key(self) -> str:
        return f"{self.model}/{self.format}/{self.device}"


@dataclass
class Context:
    """What every row shares: where artifacts go, the weights, CPU threads, int8 calibration images."""

    workdir: Path
    weights: str | None = None
    threads: int | None = None
    calibration: list = field(default_factory=list)  # raw pixel arrays for int8 calibration
    extent: str = "visible"  # the mask convention lungseg's rows output (peers have one)


@dataclass
class Runner:
    segment: Callable[[np.ndarray], np.ndarray]           # pixels [H, W] -> cleaned-up mask (what users get)
    graph: Callable[[np.ndarray], np.ndarray]             # pixels [H, W] -> the graph's mask, no clean-up
    run_batch: Callable[[np.ndarray], object] | None      # pixels [N, H, W] -> masks; None: one image per call
    artifact: list[Path]
    threads: int | None
    sync: Callable[[], None] | None = None
    pipeline: object = None                               # the eager deploy module (stage timing), if any


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("no CUDA device visible to torch")


def _lungseg_pipeline(ctx: Context, model: str):
    from ..api import FAST_WEIGHTS, open_weights
    from ..pipeline import SegmentationPipeline

    if model == LUNGSEG_FAST and not FAST_WEIGHTS.is_file():
        raise Skip(f"the fast model is not installed ({FAST_WEIGHTS})")
    network, config, sha = open_weights(ctx.weights if model == LUNGSEG else "fast")
    return SegmentationPipeline(network, config.get("image_size", 256), 0.5, ctx.extent).eval(), config, sha


def build_pipeline(model: str, ctx: Context):
    """(deploy module on the CPU, config with image_size, weights sha256 or 'random') for a row's model."""
    if model in OWN_MODELS:
        return _lungseg_pipeline(ctx, model)
    from .peers import build_pipeline as build_peer

    peer = comparison_models()[model]
    return build_peer(peer), {"peer": model, "image_size": peer.size}, "random"


def comparison_models() -> dict:
    """Every random-weight model a row may name: the peer replicas and lungseg's architecture variants."""
    from .peers import LUNGSEG as VARIANTS, PEERS

    return {**PEERS, **VARIANTS}


def _export(target: Target, ctx: Context) -> list[Path]:
    """The row's artifact files, exported into ``ctx.workdir`` unless already there."""
    from ..export import ExportOptions
    from ..export.formats import get_format
    from ..export.metadata import build_metadata
    from ..export.tensorrt import sidecar_path

    base = target.format.removesuffix("-int8")
    fmt = get_format("trt" if base.startswith("trt") else base)
    tag = f"-{target.device}" if base == "torchscript" or fmt.name == "trt" else ""
    extent = ctx.extent if target.model in OWN_MODELS else "visible"
    name = target.model if extent == "visible" else f"{target.model}-{extent}"
    path = Path(ctx.workdir) / f"{name}-{target.format}{tag}{ARTIFACT_SUFFIX[target.format]}"
    files = [path, sidecar_path(path)] if fmt.name == "trt" else [path]
    if all(p.is_file() for p in files):
        return files
    if target.format == "onnx-int8":
        from ..export.quantize import quantize_onnx

        if not ctx.calibration:
            raise Skip("int8 needs calibration images: give a DATA_DIR with a train split")
        src = _export(Target(target.model, "onnx", "cpu"), ctx)[0]
        quantize_onnx(src, path, ctx.calibration)
        return files
    pipeline, config, sha = build_pipeline(target.model, ctx)
    opts = ExportOptions(fp16=target.format == "trt-fp16", device=target.device if base == "torchscript" else "cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.exporter(pipeline, path, build_metadata(fmt.name, config, sha, 0.5, extent), opts)
    return files


def _python_runner(segmenter, artifact: list[Path], threads, device: str, pipeline=None) -> Runner:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else None
    return Runner(
        segment=segmenter.segment,
        graph=lambda p: segmenter.segment(p, postprocess=False),
        run_batch=lambda b: segmenter.segment_many(list(b), batch_size=len(b)),
        artifact=artifact, threads=threads, sync=sync, pipeline=pipeline)


def _requirements(target: Target) -> None:
    """Raise Skip when a library or device the row needs is absent."""
    from ..extras import require_onnx_export, require_onnxruntime, require_openvino

    fmt, device = target.format, target.device
    if fmt == "openvino":
        if device != "cpu":
            raise Skip("the openvino row runs OpenVINO's CPU plugin only")
        try:
            require_openvino()
            require_onnx_export()  # the artifact is the onnx row's, exported here when not there yet
        except Exception as e:  # noqa: BLE001 - MissingExtraError: a skip, with its message
            raise Skip(str(e)) from None
    if fmt.startswith("trt"):
        if device != "cuda":
            raise Skip("TensorRT runs on CUDA devices only")
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise Skip("tensorrt is not installed (pip install lungseg[trt] on a CUDA machine)") from None
    if fmt == "onnx-int8" and device != "cpu":
        raise Skip("the int8 model is made for ONNX Runtime's CPU kernels")
    if fmt.startswith("onnx"):
        try:
            ort = require_onnxruntime()
        except Exception as e:  # noqa: BLE001 - MissingDependency: a skip, with its message
            raise Skip(str(e)) from None
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise Skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    if fmt.startswith("cpp"):
        from .cabi import find_library

        if find_library() is None:
            raise Skip("the C++ runtime is not built (bash scripts/test_cpp.sh, or set LUNGSEG_CPP_LIB)")
    if target.model not in OWN_MODELS and fmt == "onnx-int8":
        raise Skip("int8 calibration is for lungseg's own weights")
    _check_device(device)


def open_runner(target: Target, ctx: Context) -> Runner:
    """Export what ``target`` needs and load it; :class:`Skip` when it cannot run here."""
    import torch

    from ..api import Segmenter
    from ..runtime import load

    _requirements(target)
    if ctx.threads and target.device == "cpu":
        torch.set_num_threads(int(ctx.threads))
    if target.format == "eager":
        pipeline, config, _ = build_pipeline(target.model, ctx)
        seg = Segmenter.from_pipeline(pipeline, config, device=target.device)
        return _python_runner(seg, [], torch.get_num_threads(), target.device, pipeline=seg.pipeline)
    if target.format.startswith("cpp"):
        from .cabi import UNSUPPORTED, CabiError, CppSegmenter

        backend = target.format.removeprefix("cpp-")
        src = Target(target.model, "onnx" if backend == "onnxruntime" else "torchscript", target.device)
        files = _export(src, ctx)
        try:
            seg = CppSegmenter(files[0], backend, target.device, threads=ctx.threads or 0)
        except CabiError as e:
            if e.status == UNSUPPORTED:
                raise Skip(str(e)) from None
            raise
        except FileNotFoundError as e:
            raise Skip(str(e)) from None
        return Runner(segment=seg.segment, graph=lambda p: seg.segment(p, raw=True), run_batch=None,
                      artifact=files, threads=ctx.threads)
    openvino = target.format == "openvino"  # the onnx row's artifact, run by OpenVINO
    files = _export(Target(target.model, "onnx", "cpu") if openvino else target, ctx)
    seg = load(files[0], device=target.device, threads=ctx.threads if target.device == "cpu" else None,
               backend="openvino" if openvino else None)
    threads = getattr(seg.backend, "threads", None) or (ctx.threads if target.device == "cpu" else None)
    return _python_runner(seg, files, threads, target.device)


def plan(models, formats, devices) -> list[Target]:
    """Every (model, format, device) row, in a stable order."""
    bad = sorted(set(formats) - set(FORMATS))
    if bad:
        raise ValueError(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    bad = sorted(set(devices) - set(DEVICES))
    if bad:
        raise ValueError(f"unknown device(s) {', '.join(bad)}; choose from {', '.join(DEVICES)}")
    return [Target(m, f, d) for d in devices for m in models for f in formats]
