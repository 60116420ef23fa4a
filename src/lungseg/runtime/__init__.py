"""One API for every model file: ``lungseg.load(path)`` -> an object with ``segment``/``segment_many``.

The backend is chosen from the file: ``.onnx`` runs with ONNX Runtime, ``.engine`` with
TensorRT, a TorchScript archive (``.torchscript``, or ``.pt`` holding one) with torch. A
``.pt``/``.pth`` that holds lungseg weights (a ``torch.save`` dict) gives the eager
:class:`~lungseg.api.Segmenter`. ``.pt`` is told apart by content: a TorchScript archive is
a zip with ``code/`` and ``constants.pkl`` entries, a ``torch.save`` file has neither.
Anything else raises :class:`~lungseg.errors.ModelError`. ``backend="openvino"`` runs an
``.onnx`` file with OpenVINO's CPU plugin instead of ONNX Runtime.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..api import BaseSegmenter, Segmenter
from ..extents import DEFAULT_EXTENT, check_extent
from ..errors import InputError, ModelError
from ..export.formats import FORMATS, get_format

WEIGHTS_SUFFIXES = (".pt", ".pth")

__all__ = ["load", "open_backend", "backend_names", "model_kind", "exported_format", "RuntimeSegmenter"]


def _zip_names(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _is_torchscript(path: Path) -> bool:
    names = _zip_names(path)
    return bool(names) and any("/code/" in n or n.endswith("/constants.pkl") for n in names)


def exported_format(path) -> str | None:
    """The export format ``path`` holds, told by its suffix or (for ``.pt``/``.pth``) its content; else None."""
    path = Path(path)
    suffix = path.suffix.lower()
    by_suffix = [f.name for f in FORMATS if suffix in f.suffixes and suffix not in WEIGHTS_SUFFIXES]
    if by_suffix:
        return by_suffix[0]
    return "torchscript" if _is_torchscript(path) else None


def model_kind(path) -> str:
    """``weights``, or the name of the format in :data:`lungseg.export.FORMATS` that ``path`` holds."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    known = sorted({s for f in FORMATS for s in f.suffixes} | set(WEIGHTS_SUFFIXES))
    if suffix not in known:
        raise ModelError(f"{path}: unknown model file type {suffix or '(no suffix)'!r}; expected {', '.join(known)}")
    if suffix not in (".pt", ".pth", ".torchscript"):
        return next(f.name for f in FORMATS if suffix in f.suffixes)
    if _is_torchscript(path):
        return "torchscript"
    if suffix == ".torchscript":
        raise ModelError(f"{path}: not a TorchScript archive (no code/ or constants.pkl inside)")
    return "weights"  # a torch.save file (zip or legacy pickle); checkpoint.load_weights validates it


def backend_names() -> list[str]:
    """Every backend a ``backend=`` argument may name (each format's own, then the others)."""
    return list(dict.fromkeys([f.backend for f in FORMATS] + [b for f in FORMATS for b in f.other_backends]))


def _backend_for(path, kind: str, backend: str | None) -> str:
    """The backend module for a ``kind`` file: the format's own, or ``backend`` where that format allows it."""
    backend = None if backend is None else str(backend).strip().lower()
    if kind == "weights":
        if backend is not None:
            raise InputError(f"{path}: a weights file runs with torch; backend={backend!r} is for exported models "
                             f"(export it with lungseg export --format onnx)")
        raise ModelError(f"{path}: a weights file, not an exported model; use lungseg.load or Segmenter")
    fmt = get_format(kind)
    allowed = (fmt.backend, *fmt.other_backends)
    if backend is None or backend in allowed:
        return backend or fmt.backend
    if backend not in backend_names():
        raise InputError(f"backend {backend!r}: unknown; choose one of {', '.join(backend_names())}")
    raise InputError(f"{path}: a {kind} model runs with {' or '.join(allowed)}, not backend={backend!r}")


def open_backend(path, device: str = "auto", threads: int | None = None, backend: str | None = None):
    """The runtime backend for an exported model: ``backend(pixels [N,1,H,W] float32) -> (prob, mask, quality)``.

    ``threads``: CPU threads of ONNX Runtime's session or OpenVINO's model, or of torch's (per-process) pool.
    ``backend``: None (the format's own: onnxruntime for ``.onnx``), or ``openvino`` for an ``.onnx`` file.
    """
    name = _backend_for(path, model_kind(path), backend)
    module = importlib.import_module(f"{__name__}.{name}")
    return module.Backend(path, device=device, threads=threads)


class RuntimeSegmenter(BaseSegmenter):
    """An exported model (TorchScript, ONNX, TensorRT) with :class:`~lungseg.api.Segmenter`'s API.

    ``threshold`` None keeps the threshold baked into the graph (``metadata["threshold"]``);
    another value re-thresholds the graph's probability on the host. An artifact holds one
    extent (``metadata["extent"]``, chosen at export); asking for the other is an InputError.
    """

    def __init__(self, backend, threshold: float | None = None, postprocess: bool = True,
                 extent: str | None = None):
        self.backend = backend
        self.path = backend.path
        self.metadata = backend.metadata
        self.extent = self.metadata.get("extent", DEFAULT_EXTENT)
        self.extents = [self.extent]
        if extent is not None:
            self._check_extent(extent)
        self.device = backend.device
        self.config = {**self.metadata.get("model", {}), "image_size": self.metadata["image_size"]}
        self._graph_threshold = float(self.metadata["threshold"])
        self.threshold = self._graph_threshold if threshold is None else float(threshold)
        self.postprocess = postprocess

    def _check_extent(self, extent: str) -> None:
        if check_extent(extent) != self.extent:
            raise InputError(f"{self.path}: exported for the {self.extent!r} extent, not {extent!r}; "
                             f"export it again with --extent {extent}")

    def _run(self, batch: np.ndarray, extent: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_extent(extent)
        pixels = np.ascontiguousarray(batch, dtype=np.float32)[:, None]
        step = getattr(self.backend, "max_batch", None) or len(pixels)  # a TensorRT profile caps N
        parts = [self.backend(pixels[k:k + step]) for k in range(0, len(pixels), step)]
        prob = np.concatenate([p[0] for p in parts])[:, 0]
        mask = np.concatenate([p[1] for p in parts])[:, 0]
        quality = np.concatenate([p[2] for p in parts]).astype(np.float32)
        if self.threshold != self._graph_threshold:
            mask = (prob > self.threshold).astype(np.uint8)
        return prob, mask, quality

    def __repr__(self) -> str:
        return f"RuntimeSegmenter({str(self.path)!r}, backend={self.backend.name}, device={self.device})"


def load(path, device: str = "auto", threshold: float | None = None, postprocess: bool = True,
         threads: int | None = None, extent: str | None = None, backend: str | None = None):
    """Load any lungseg model file: weights (eager torch), TorchScript, ONNX or a TensorRT engine.

    ``threads``: CPU threads for ONNX Runtime or OpenVINO (per model) or torch (per process); None: the default.
    ``extent``: the default mask convention (None: ``visible`` for weights, the artifact's own
    for exported models, which hold the one extent they were exported with).
    ``backend``: None (the file's own runtime), or ``openvino`` to run an ``.onnx`` file on
    OpenVINO's CPU plugin (``pip install lungseg[openvino]``); one that does not fit the file is an InputError.
    """
    if model_kind(path) == "weights" and backend is None:
        if threads:
            torch.set_num_threads(int(threads))
        return Segmenter(path, device=device, threshold=0.5 if threshold is None else threshold,
                         postprocess=postprocess, extent=extent or DEFAULT_EXTENT)
    return RuntimeSegmenter(open_backend(path, device, threads, backend), threshold=threshold,
                            postprocess=postprocess, extent=extent)
