"""Saving and loading weights files and training checkpoints, safely and atomically.

A *weights file* is ``{"format": "lungseg-weights", "version": 1, "config": {...},
"state_dict": {...}}`` written with ``torch.save``; it is read with
``torch.load(weights_only=True)``, which never unpickles arbitrary objects. ``config``
holds the model's constructor arguments and the network input ``image_size``.
"""

from __future__ import annotations

import hashlib
import io as _io
from pathlib import Path

import torch

from .errors import ModelError
from .io import write_bytes_atomic
from .models import create_model

WEIGHTS_FORMAT = "lungseg-weights"


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


def safe_load(path):
    """``torch.load`` restricted to tensors and plain containers; bad files raise ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, foreign or unsafe pickle
        raise ModelError(f"{path}: not a loadable lungseg weights file ({type(e).__name__}: {e})") from e


def save_weights(path, model, image_size: int, half: bool = False) -> None:
    """Write a model's weights file (``half`` stores floating tensors as fp16)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
          for k, v in model.state_dict().items()}
    save_atomic({"format": WEIGHTS_FORMAT, "version": 1,
                 "config": {**model.config, "image_size": int(image_size)}, "state_dict": sd}, path)


def state_from_file(obj, path) -> tuple[dict, dict]:
    """(model config, state_dict) from a weights file or a training checkpoint."""
    if not isinstance(obj, dict) or "state_dict" not in obj and "model" not in obj:
        raise ModelError(f"{path}: not a lungseg weights file or checkpoint")
    if obj.get("format") == WEIGHTS_FORMAT:
        return obj["config"], obj["state_dict"]
    return obj["config"], obj["model"]


MODEL_ARGS = ("encoder", "attention", "decoder_channels", "in_channels", "extents")


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
