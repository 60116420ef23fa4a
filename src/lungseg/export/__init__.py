"""Export the deploy module (preprocessing + network + graph postprocessing) to TorchScript, ONNX or TensorRT.

``lungseg.export(format="onnx", output="lung.onnx")`` writes one self-contained artifact:
raw pixels ``[N, 1, H, W]`` in, probability and uint8 mask at the input's size out, with
its metadata inside (see :mod:`lungseg.export.metadata`). It then runs the artifact with
:mod:`lungseg.runtime` and compares it with the eager model (:mod:`lungseg.export.parity`);
an artifact that fails that check is deleted and the export raises :class:`ModelError`.

One module per format (``torchscript``, ``onnx``, ``tensorrt``), one table of formats
(:data:`FORMATS`). This package can be called: ``lungseg.export(...)`` is :func:`export`.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, ModelError
from .formats import FORMATS, Format, get_format
from .onnx import DEFAULT_OPSET
from .tensorrt import DEFAULT_MAX_SHAPE, DEFAULT_MIN_SHAPE, DEFAULT_OPT_SHAPE, check_profile, sidecar_path

__all__ = ["export", "ExportOptions", "ExportResult", "FORMATS", "Format", "get_format"]


@dataclass
class ExportOptions:
    """Options of the exporters; each format reads the ones it uses."""

    opset: int = DEFAULT_OPSET                  # onnx, trt
    fp16: bool = False                          # trt
    device: str = "cpu"                         # torchscript: the device it is traced on (and runs on)
    min_shape: tuple = DEFAULT_MIN_SHAPE        # trt optimization profile, [N, 1, H, W]
    opt_shape: tuple = DEFAULT_OPT_SHAPE
    max_shape: tuple = DEFAULT_MAX_SHAPE
    workspace_gib: float | None = None          # trt builder workspace limit
    int8: bool = False                          # onnx: quantize the network to int8 (export.quantize)
    calibration: tuple = ()                     # int8: data folders whose train split calibrates it


@dataclass
class ExportResult:
    path: Path
    format: str
    metadata: dict
    parity: list[dict] | None = field(default=None)


def check_output_path(fmt: Format, output) -> Path:
    """The output path, refused early (before any work) when it cannot hold this format."""
    path = Path(output)
    if path.suffix.lower() not in fmt.suffixes:
        raise InputError(f"{path}: {fmt.name} files end in {' or '.join(fmt.suffixes)}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise InputError(f"{path}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {existing} is not writable")
    return path


def _artifact_files(fmt: Format, path: Path) -> list[Path]:
    return [path, sidecar_path(path)] if fmt.name == "trt" else [path]


def export(model=None, format: str = "onnx", output=None, *, threshold: float = 0.5, check: bool = True,
           parity_images=None, parity_sizes=None, extent: str = "visible", progress=None,
           **options) -> ExportResult:
    """Export a lungseg model and check it against the eager model.

    ``model``: a shipped model's name ("default" or None, "fast") or a weights file. ``format``: torchscript,
    onnx or trt (aliases tensorrt, engine). ``output``: the artifact's path, whose suffix
    must fit the format. ``extent``: which of the model's mask conventions the graph
    outputs (``visible`` or ``full``; recorded in the metadata). ``options``: :class:`ExportOptions` fields (opset, fp16, device,
    min_shape/opt_shape/max_shape, workspace_gib). ``check``: run the parity check on
    ``parity_images`` (2-D arrays; None: synthetic X-rays) at ``parity_sizes`` (WxH tuples).
    ``progress``: called with a one-line message as each stage starts (trace and export,
    quantization, each parity size), e.g. ``print`` to stderr; nothing is printed otherwise.
    """
    from ..api import open_weights
    from ..pipeline import SegmentationPipeline
    from ..runtime import open_backend
    from .metadata import build_metadata
    from .parity import PARITY_SIZES, check_parity

    fmt = get_format(format)
    if output is None:
        raise InputError("no output file given")
    path = check_output_path(fmt, output)
    unknown = set(options) - set(ExportOptions.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown export option(s): {', '.join(sorted(unknown))}")
    opts = ExportOptions(**options)
    if opts.fp16 and fmt.name != "trt":
        raise InputError("fp16 is offered for the trt format only")
    if opts.int8 and fmt.name != "onnx":
        raise InputError("int8 is offered for the onnx format only")
    if opts.int8 and not opts.calibration:
        raise InputError("int8 needs calibration data: give data folders whose train split holds X-rays")
    if fmt.name == "trt":
        from ..extras import require_tensorrt

        check_profile(opts.min_shape, opts.opt_shape, opts.max_shape)
        require_tensorrt("TensorRT export")
    elif fmt.name == "onnx":
        from ..extras import require_onnx_export, require_onnxruntime

        require_onnx_export()
        require_onnxruntime()

    network, config, sha = open_weights(model)
    pipeline = SegmentationPipeline(network, config.get("image_size", 256), threshold, extent).eval()
    metadata = build_metadata(fmt.name, config, sha, threshold, extent)
    report = progress or (lambda message: None)
    report(_EXPORT_STAGE.get(fmt.name, "exporting").format(path=path))
    metadata = fmt.exporter(pipeline, path, metadata, opts)
    if opts.int8:
        report(f"quantizing {path} to int8 with calibration images from {', '.join(map(str, opts.calibration))}")
        metadata = _quantize_in_place(path, metadata, opts.calibration)

    parity = None
    if check:
        pipeline.to("cpu")
        try:
            backend = open_backend(path, device=opts.device if fmt.name == "torchscript" else "auto")
            parity = check_parity(pipeline, backend, metadata["precision"], parity_images,
                                  parity_sizes or PARITY_SIZES, progress=progress)
            failed = [row for row in parity if not row["ok"]]
            if failed:
                raise ModelError(f"{path}: differs from the eager model, so it was deleted: {failed}")
        except BaseException:  # an artifact that was not shown to match is not left behind
            for p in _artifact_files(fmt, path):
                p.unlink(missing_ok=True)
            raise
    return ExportResult(path, fmt.name, metadata, parity)


_EXPORT_STAGE = {  # what the user waits for, per format
    "torchscript": "tracing the model with torch.jit.trace and writing {path}",
    "onnx": "tracing the model with torch.export and exporting the ONNX graph to {path} (minutes on a CPU)",
    "trt": "exporting to ONNX, then building the TensorRT engine {path} (minutes)",
}


def _quantize_in_place(path: Path, metadata: dict, folders) -> dict:
    """Replace the float32 ONNX file at ``path`` by its int8 version (see :mod:`.quantize`)."""
    from .quantize import calibration_images, quantize_onnx

    images = calibration_images(folders)
    if not images:
        path.unlink(missing_ok=True)
        raise InputError(f"no train-split images found in {', '.join(map(str, folders))} to calibrate int8")
    fp32 = path.with_name(path.stem + ".fp32-tmp.onnx")
    os.replace(path, fp32)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantizer warns through the root logger
    try:
        quantize_onnx(fp32, path, images)
    finally:
        root.setLevel(level)
        fp32.unlink(missing_ok=True)
    return {**metadata, "precision": "int8"}


class _CallablePackage(types.ModuleType):
    """Lets ``lungseg.export(...)`` call :func:`export` while ``lungseg.export.<module>`` stays a package."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
