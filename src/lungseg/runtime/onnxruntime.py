"""Run an ONNX model made by ``lungseg export --format onnx`` with ONNX Runtime (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..export.metadata import INPUT_NAME, METADATA_NAME, OUTPUT_NAMES, check_metadata
from ..extras import require_onnxruntime

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


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
        device = str(device)
        fp32 = {"use_tf32": 0}  # a float32 model computes in float32, not TF32
        if device == "auto":
            providers = [(CUDA, fp32), CPU] if CUDA in available else [CPU]
        elif device.startswith("cuda"):
            if CUDA not in available:
                raise ModelError(f"{self.path}: device {device} asked for, but this onnxruntime has no CUDA "
                                 "provider (pip install onnxruntime-gpu)")
            index = int(device.partition(":")[2] or 0)
            providers = [(CUDA, {"device_id": index, **fp32}), CPU]
        elif device == "cpu":
            providers = [CPU]
        else:
            raise ModelError(f"device {device!r}: ONNX Runtime runs on cpu or cuda")
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
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name for o in self.session.get_outputs()}
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= outputs:
            raise ModelError(f"{self.path}: inputs {inputs} / outputs {sorted(outputs)} are not lungseg's "
                             f"[{INPUT_NAME}] / {list(OUTPUT_NAMES)}")
        self.device = "cuda" if self.session.get_providers()[0] == CUDA else "cpu"
        self.threads = threads

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feed = {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.float32)}
        prob, mask = self.session.run(list(OUTPUT_NAMES), feed)
        return prob, mask
