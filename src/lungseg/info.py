"""What ``lungseg info`` reports: versions, device, backends, extras and the default weights."""

from __future__ import annotations

import platform
from importlib import metadata

from . import __version__

BACKENDS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "openvino": ("openvino",),
            "tensorrt": ("tensorrt", "tensorrt-cu12")}
EXTRAS = {
    "dicom": ("pydicom",),
    "dicom decoders": ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                       "python-gdcm", "pyjpegls"),
    "onnx export": ("onnx", "onnxscript"),
    "PIL images": ("pillow",),
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _installed(dists) -> list[str]:
    return [f"{d} {v}" for d in dists if (v := _version(d)) is not None]


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}; {torch.cuda.device_count()} device(s))"
    return f"cpu ({torch.get_num_threads()} threads)"


def _onnxruntime_providers() -> str:
    try:
        import onnxruntime
    except ImportError:
        return ""
    return " [" + ", ".join(onnxruntime.get_available_providers()) + "]"


def _weights() -> dict:
    from .api import DEFAULT_WEIGHTS, default_weights
    from .checkpoint import sha256_file
    from .errors import ModelError

    try:
        path, recorded = default_weights()
    except (ModelError, KeyError, ValueError) as e:
        return {"path": str(DEFAULT_WEIGHTS), "status": f"not installed ({e})"}
    actual = sha256_file(path)
    status = "verified" if actual == recorded else f"CHECKSUM MISMATCH: file has {actual}"
    return {"path": str(path), "sha256": recorded, "status": status}


def collect() -> dict:
    """A dict of facts about this installation (JSON-serialisable)."""
    import torch

    backends = {"torch": torch.__version__}
    for name, dists in BACKENDS.items():
        found = _installed(dists)
        extra = _onnxruntime_providers() if name == "onnxruntime" and found else ""
        backends[name] = (", ".join(found) + extra) if found else "not installed"
    extras = {name: ", ".join(_installed(dists)) or "not installed" for name, dists in EXTRAS.items()}
    return {"lungseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "device": _device(), "backends": backends, "extras": extras, "default weights": _weights()}


def format_info(facts: dict) -> str:
    """Facts as aligned ``key: value`` lines, nested dicts indented."""
    lines = []
    for key, value in facts.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k:<16} {v}" for k, v in value.items()]
        else:
            lines.append(f"{key:<18} {value}")
    return "\n".join(lines)
