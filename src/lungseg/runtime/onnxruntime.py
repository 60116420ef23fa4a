"""Run an ONNX model made by ``lungseg export --format onnx`` with ONNX Runtime (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..api import resolve_device
from ..errors import InputError, ModelError
from ..export.metadata import INPUT_NAME, METADATA_NAME, OUTPUT_NAMES, check_metadata
from ..extras import require_onnxruntime
from .contract import check_graph, check_outputs, check_pixels

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


class Backend:
    """``backend(pixels float32 [N, 1, H, W]) -> (probability float32, mask uint8)``, numpy in and out.

    ``device``: ``auto`` (CUDA where onnxruntime-gpu has it, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    ``threads``: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    name = "onnxruntime"

    def __init__(self, path, device: str = "auto", threads: int | None = None):
        ort = require_onnxruntime()
        self.path = Path(path)
        available = ort.get_available_providers()
        fp32 = {"use_tf32": 0}  # a float32 model computes in float32, not TF32
        want = resolve_device(device, cuda_available=CUDA in available,
                              no_cuda="this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        if want.type == "cuda":
            providers = [(CUDA, {"device_id": want.index or 0, **fp32}), CPU]
        elif want.type == "cpu":
            providers = [CPU]
        else:
            raise InputError(f"device {device!r}: ONNX Runtime runs on cpu or cuda")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = check_metadata(meta.get(METADATA_NAME), self.path)
        check_graph(self.path, [(i.name, _NUMPY_TYPES.get(i.type, i.type)) for i in self.session.get_inputs()],
                    [(o.name, _NUMPY_TYPES.get(o.type, o.type)) for o in self.session.get_outputs()])
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.threads = threads
        self._checked = False  # outputs' values are checked on the first call

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        check_pixels(self.path, pixels)
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        out = check_outputs(self.path, pixels, outputs, values=not self._checked)
        self._checked = True
        return out
