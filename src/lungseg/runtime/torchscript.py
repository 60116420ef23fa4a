"""Run a TorchScript archive made by ``lungseg export --format torchscript`` with torch."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..api import resolve_device
from ..checkpoint import check_tensors, check_zip_integrity
from ..errors import ModelError
from ..export.metadata import METADATA_NAME, check_metadata
from ..export.torchscript import quiet_torchscript
from .contract import check_outputs


def read_extra_file(path, name: str = METADATA_NAME) -> str | None:
    """The extra file ``name`` of a TorchScript archive (a zip), without loading the module."""
    try:
        with zipfile.ZipFile(path) as z:
            entry = next((n for n in z.namelist() if n.endswith(f"/extra/{name}")), None)
            return z.read(entry).decode() if entry else None
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelError(f"{path}: not a TorchScript archive ({e})") from e


class Backend:
    """``backend(pixels float32 [N, 1, H, W]) -> (probability float32, mask uint8)``, numpy in and out.

    The archive runs on the device it was traced on (``device`` in its metadata): the
    traced resize creates its weights there.
    """

    name = "torchscript"

    def __init__(self, path, device: str = "auto", threads: int | None = None):
        self.path = Path(path)
        self.metadata = check_metadata(read_extra_file(self.path), self.path)
        traced = self.metadata.get("device", "cpu")
        asked = traced if device == "auto" else str(device)
        kind = asked.partition(":")[0].strip().lower()
        if kind in ("cpu", "cuda") and kind != traced:
            raise ModelError(f"{self.path}: this TorchScript archive was traced on {traced} and runs only there; "
                             f"export it again with --device {kind}")
        want = resolve_device(asked)
        check_zip_integrity(self.path)
        try:
            with quiet_torchscript():
                self.module = torch.jit.load(str(self.path), map_location=want).eval()
        except Exception as e:  # torch raises RuntimeError/ValueError/... for damaged archives
            raise ModelError(f"{self.path}: not a loadable TorchScript archive ({type(e).__name__}: {e})") from e
        check_tensors(self.module.state_dict(), self.path)
        self.device = want
        self._checked = False  # outputs' values are checked on the first call
        if threads:
            torch.set_num_threads(int(threads))  # torch's thread pool is per process
        self.threads = torch.get_num_threads()

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        with _fp32_convolutions(self.device):
            outputs = self.module(torch.from_numpy(pixels).to(self.device))
        if isinstance(outputs, (tuple, list)):
            outputs = [self._numpy(o) for o in outputs]
        out = check_outputs(self.path, pixels, outputs, values=not self._checked)
        self._checked = True
        return out

    def _numpy(self, out):
        """A tensor as a numpy array of its own dtype (anything else is left for the contract check)."""
        if not isinstance(out, torch.Tensor):
            return out
        try:
            return out.detach().cpu().numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16, ...)
            raise ModelError(f"{self.path}: an output of dtype {out.dtype}, not lungseg's contract") from None


def _fp32_convolutions(device: torch.device):
    """cuDNN convolutions in true float32 (torch lets them use TF32 by default) for this block only."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    c = torch.backends.cudnn
    return c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic, allow_tf32=False)
