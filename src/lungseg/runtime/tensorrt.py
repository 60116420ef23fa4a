"""Run a TensorRT engine made by ``lungseg export --format trt`` (TensorRT 10 Python API, CUDA only).

Buffers are torch CUDA tensors and the engine runs on torch's current CUDA stream, so no
other CUDA binding is needed. The metadata is read from the JSON sidecar ``<engine>.json``.
Written against TensorRT 10's documented API; not run on these machines (no TensorRT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..api import resolve_device
from ..errors import InputError, ModelError
from ..export.metadata import INPUT_NAME, OUTPUT_NAMES, check_metadata
from ..export.tensorrt import sidecar_path
from ..extras import require_tensorrt
from .contract import check_outputs


class Backend:
    """``backend(pixels float32 [N, 1, H, W]) -> (probability float32, mask uint8)``, numpy in and out."""

    name = "tensorrt"

    def __init__(self, path, device: str = "auto", threads: int | None = None):  # noqa: ARG002 - GPU
        self.path = Path(path)
        trt = require_tensorrt("Running a TensorRT engine")
        self.device = resolve_device("cuda" if device == "auto" else device)
        if self.device.type != "cuda":
            raise ModelError(f"{self.path}: TensorRT engines run on CUDA devices only, not {device}")
        sidecar = sidecar_path(self.path)
        self.metadata = check_metadata(sidecar.read_text() if sidecar.is_file() else None, sidecar)
        built = self.metadata.get("tensorrt_version")
        if built and built.split(".")[:2] != trt.__version__.split(".")[:2]:
            raise ModelError(f"{self.path}: engine built with TensorRT {built}, this is TensorRT {trt.__version__}; "
                             "build it again with lungseg export --format trt")
        self._trt = trt
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ModelError(f"{self.path}: TensorRT cannot load this engine (damaged, or built for another "
                                 "TensorRT version or GPU)")
            self.context = self.engine.create_execution_context()
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {INPUT_NAME, *OUTPUT_NAMES}:
            raise ModelError(f"{self.path}: engine tensors {sorted(names)} are not lungseg's")
        self.profile = [tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0)]
        self.max_batch = self.profile[2][0]
        self._dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.uint8: torch.uint8,
                        trt.int32: torch.int32, trt.bool: torch.bool}
        self._checked = False  # outputs' values are checked on the first call

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shape = tuple(pixels.shape)
        low, _, high = self.profile
        if len(shape) != 4 or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            raise InputError(f"input of shape {list(shape)} is outside the engine's optimization profile "
                             f"{list(low)}..{list(high)} ({self.path}); build the engine with a larger --max-size")
        with torch.cuda.device(self.device):
            x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
            self.context.set_input_shape(INPUT_NAME, shape)
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            out = {}
            for name in OUTPUT_NAMES:
                dtype = self._dtypes[self.engine.get_tensor_dtype(name)]
                out[name] = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device=self.device)
                self.context.set_tensor_address(name, out[name].data_ptr())
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise ModelError(f"{self.path}: TensorRT execution failed")
            stream.synchronize()
        outputs = [out["probability"].float().cpu().numpy(), out["mask"].cpu().numpy(),
                   out["quality"].float().cpu().numpy()]
        result = check_outputs(self.path, pixels, outputs, values=not self._checked)
        self._checked = True
        return result
