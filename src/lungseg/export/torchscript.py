"""``torch2torchscript``: trace the deploy module into a TorchScript archive.

Tracing records the shape arithmetic of :mod:`lungseg.preprocess` as graph operations, so
the archive accepts any N, H and W. It also records the device that the resize weights are
created on, so an archive runs on the device it was traced on (``device`` in its metadata);
trace on ``cuda`` for a GPU archive.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch

from ..errors import ModelError
from ..io import write_bytes_atomic
from .metadata import METADATA_NAME, dumps


@contextlib.contextmanager
def quiet_torchscript():
    """Hide TorchScript's deprecation warnings inside this block (TorchScript is used on purpose)."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, message=".*(torch\\.jit|TorchScript).*")
        yield


def torch2torchscript(pipeline, path, metadata: dict, options) -> dict:
    """Trace ``pipeline`` on ``options.device`` and write it with its metadata to ``path``."""
    device = torch.device(options.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("a CUDA TorchScript archive needs an NVIDIA GPU; export with --device cpu")
    metadata = {**metadata, "device": device.type, "precision": "fp32", "opset": None}
    example = torch.full((2, 1, 96, 80), 128.0, device=device)
    example[..., 20:60, 10:40] = 40.0
    pipeline = pipeline.to(device).eval()
    buf = io.BytesIO()
    with quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(pipeline, example, check_trace=False)
        torch.jit.save(traced, buf, _extra_files={METADATA_NAME: dumps(metadata)})
    write_bytes_atomic(path, buf.getvalue())
    return metadata
