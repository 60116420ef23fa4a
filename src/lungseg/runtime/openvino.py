"""Run the ONNX model made by ``lungseg export --format onnx`` with OpenVINO's CPU plugin.

The same ``.onnx`` file as the ONNX Runtime backend (``lungseg.load(path, backend="openvino")``):
the lungseg metadata comes from the file's ``metadata_props`` (OpenVINO keeps them under
``rt_info["framework"]``), and the graph and its outputs are checked against the same contract.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..api import resolve_device
from ..errors import ModelError
from ..export.metadata import INPUT_NAME, METADATA_NAME, OUTPUT_NAMES, check_metadata
from ..extras import require_openvino
from .contract import check_graph, check_outputs, check_pixels


def _dtype(element_type) -> str:
    try:
        return element_type.to_dtype().name
    except Exception:  # noqa: BLE001 - a type numpy has no name for: shown as OpenVINO's
        return str(element_type)


def _name(port, wanted) -> str:
    """The port's lungseg name when it carries one (OpenVINO may add others), else any of its names."""
    names = port.get_names()
    return next((n for n in wanted if n in names), port.get_any_name())


class Backend:
    """``backend(pixels float32 [N, 1, H, W]) -> (probability float32, mask uint8, quality float32)``, numpy.

    ``device``: ``auto`` or ``cpu`` (OpenVINO's CPU plugin; ``cuda`` is an InputError).
    ``threads``: inference threads (None: OpenVINO's default, one per core). A float32 model
    computes in float32 (``INFERENCE_PRECISION_HINT`` f32, not the bf16/f16 some CPUs default to).
    """

    name = "openvino"

    def __init__(self, path, device: str = "auto", threads: int | None = None):
        ov = require_openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.path = Path(path)
        resolve_device(device, cuda_available=False, no_cuda="the openvino backend runs on the CPU only")
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError for files it cannot read
            raise ModelError(f"{self.path}: not a loadable ONNX model (OpenVINO: {str(e).strip()[:500]})") from e
        key = ["framework", METADATA_NAME]
        self.metadata = check_metadata(model.get_rt_info(key).astype(str) if model.has_rt_info(key) else None,
                                       self.path)
        check_graph(self.path, [(_name(i, [INPUT_NAME]), _dtype(i.get_element_type())) for i in model.inputs],
                    [(_name(o, OUTPUT_NAMES), _dtype(o.get_element_type())) for o in model.outputs])
        config = {hints.inference_precision: ov.Type.f32}
        if threads:
            config[props.inference_num_threads] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:  # noqa: BLE001 - an op or shape the CPU plugin cannot compile
            raise ModelError(f"{self.path}: OpenVINO cannot compile this model for the CPU ({e})") from e
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        self._outputs = [self.compiled.output(n) for n in OUTPUT_NAMES]
        self.device = "cpu"
        self.threads = threads
        self._checked = False  # outputs' values are checked on the first call

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        check_pixels(self.path, pixels)
        if not len(pixels):  # ONNX Runtime gives empty outputs; OpenVINO's CPU plugin fails on an empty batch
            empty = np.zeros((0, *pixels.shape[1:]), np.float32)
            return empty, empty.astype(np.uint8), np.zeros((0, 4), np.float32)
        with self._lock:
            result = self._request.infer({INPUT_NAME: pixels})
            outputs = [np.array(result[port]) for port in self._outputs]  # copies: the next call reuses the buffers
        out = check_outputs(self.path, pixels, outputs, values=not self._checked)
        self._checked = True
        return out
