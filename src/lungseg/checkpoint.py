"""Saving and loading weights files and training checkpoints, safely and atomically.

A *weights file* is ``{"format": "lungseg-weights", "version": 1, "config": {...},
"state_dict": {...}}`` written with ``torch.save``; it is read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects. ``config``
holds the model's constructor arguments and the network input ``image_size``, validated
against :mod:`lungseg.model_schema` on load; every tensor must be finite, and a zip-format
file must pass its entries' CRC checks (torch itself does not check them).
"""

from __future__ import annotations

import hashlib
import io as _io
import zipfile
from pathlib import Path

import torch

from .errors import ModelError
from .io import write_bytes_atomic
from .model_schema import MODEL_ARGS, check_model_config
from .models import create_model

WEIGHTS_FORMAT = "lungseg-weights"
WEIGHTS_VERSION = 1


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_atomic(obj, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    buf = _io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def check_zip_integrity(path) -> None:
    """ModelError when a zip-format file (torch.save, TorchScript) has an entry failing its CRC check.

    torch reads such files without checking the CRCs, so a flipped byte would load silently.
    Files that are not zips are left to their reader.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except zipfile.BadZipFile:
        return
    except Exception as e:  # noqa: BLE001 - a damaged entry can raise from zlib, struct, EOF...
        raise ModelError(f"{path}: damaged file (its zip entries cannot be read: {type(e).__name__})") from None
    if bad is not None:
        raise ModelError(f"{path}: damaged file: entry {bad} fails its CRC check (changed after it was written)")


def safe_load(path):
    """``torch.load`` restricted to tensors and plain containers; bad files raise ModelError.

    An exported model (ONNX, TensorRT, TorchScript) is refused with a pointer to
    ``lungseg.load``. torch's own error text is not passed on: it advises unsafe loading.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    from .runtime import exported_format

    kind = exported_format(path)
    if kind is not None:
        raise ModelError(f"{path}: an exported {kind} model, not a weights file or training checkpoint; "
                         "load it with lungseg.load(path)")
    check_zip_integrity(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated, foreign or unsafe pickle
        raise ModelError(f"{path}: not a loadable lungseg weights file ({type(e).__name__}): not written by "
                         "torch.save, damaged or truncated, or holding Python objects other than tensors, "
                         "which lungseg never loads") from None


def check_tensors(state_dict, path) -> None:
    """ModelError unless ``state_dict`` maps names to tensors whose values are all finite."""
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise ModelError(f"{path}: weight {name!r} is a {type(t).__name__}, not a tensor")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{path}: weight {name!r} holds {bad} non-finite value(s) (NaN or inf); "
                             "the file is damaged")


def save_weights(path, model, image_size: int, half: bool = False) -> None:
    """Write a model's weights file (``half`` stores floating tensors as fp16)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in model.state_dict().items()}
    save_atomic({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
                 "config": {**model.config, "image_size": int(image_size)}, "state_dict": sd}, path)


def state_from_file(obj, path) -> tuple[dict, dict]:
    """(model config, state_dict) from a weights file or a training checkpoint, both validated."""
    if not isinstance(obj, dict) or "state_dict" not in obj and "model" not in obj:
        raise ModelError(f"{path}: not a lungseg weights file or checkpoint")
    if obj.get("format") == WEIGHTS_FORMAT:
        version = obj.get("version")
        if isinstance(version, bool) or version != WEIGHTS_VERSION:
            raise ModelError(f"{path}: weights format version {version!r} is not the supported {WEIGHTS_VERSION}")
        sd = obj.get("state_dict")
    else:
        sd = obj.get("model")
    if "config" not in obj:
        raise ModelError(f"{path}: no model config in the file")
    config = check_model_config(obj["config"], path)
    if not isinstance(sd, dict) or not sd:
        raise ModelError(f"{path}: no weights (state_dict) in the file")
    check_tensors(sd, path)
    return config, sd


def widen_to_extents(state_dict: dict, model) -> dict:
    """A one-extent model's state_dict fitted to ``model``'s output channels.

    The output convolutions (``head``, the SGA coarse head) of a one-channel file are
    repeated once per extent of ``model``, so every extent starts from the old model's
    lung map; all other tensors are kept. Tensors that already fit are left alone.
    """
    own = model.state_dict()
    out = dict(state_dict)
    for k, v in state_dict.items():
        if k in own and v.shape != own[k].shape and v.ndim >= 1 and v.shape[0] == 1 and v.shape[1:] == own[k].shape[1:]:
            out[k] = v.expand(own[k].shape[0], *v.shape[1:]).clone()
    return out


def as_float32(state_dict: dict) -> dict:
    """A state_dict with its floating tensors (fp16 in shipped files) as float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def load_weights(path, expected_sha256: str | None = None):
    """Build the model described by a weights file (or checkpoint) and load its weights.

    Returns ``(model in eval mode, float32, config)``. With ``expected_sha256`` the file's
    checksum is verified first.
    """
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelError(f"{path}: sha256 {actual} does not match the recorded {expected_sha256}")
    config, sd = state_from_file(safe_load(path), path)
    model_args = {k: v for k, v in config.items() if k in MODEL_ARGS}
    try:
        model = create_model(**model_args)
        model.load_state_dict(as_float32(sd))
    except (RuntimeError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: weights do not fit the model they describe ({e})") from e
    return model.eval(), config
