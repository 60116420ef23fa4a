"""The metadata every exported lungseg model carries, and the graph's input/output contract.

Every artifact takes one input and gives three outputs, N, H and W dynamic:

* ``pixels`` float32: raw pixel values (0..255 or 0..65535). float32 because TensorRT has
  no uint16 input and float32 holds every uint16 value exactly.
* ``probability`` float32: the lung probability at the input's own size.
* ``mask`` uint8: 1 where ``probability > threshold``, else 0.
* ``quality`` float32 ``[N, 4]``: :data:`lungseg.quality.QUALITY_FIELDS` (quality, Dice
  estimate, frontal and inverted view probabilities; NaN from a network without a head).
  Added in schema_version 2.

All outputs follow one mask convention, ``metadata["extent"]`` (``visible``: the lung
field; ``full``: the full lung extent), chosen at export from the network's outputs.

The metadata is one JSON document: the TorchScript extra file ``lungseg.json``, the ONNX
``metadata_props`` key ``lungseg.json`` (plus each top-level key as its own string entry,
so that C++ can read ``image_size`` without a JSON parser) and the sidecar
``<engine file>.json`` next to a TensorRT engine. :func:`build_metadata` writes it,
:func:`check_metadata` validates it when loading.
"""

from __future__ import annotations

import json

from .. import __version__
from ..errors import ModelError
from ..extents import DEFAULT_EXTENT, check_extent
from ..model_schema import check_artifact_metadata
from ..preprocess import CLIP, EPS

METADATA_NAME = "lungseg.json"
PRODUCER = "lungseg"
SCHEMA_VERSION = 2

INPUT_NAME = "pixels"
OUTPUT_NAMES = ("probability", "mask", "quality")
SHAPE = ["N", 1, "H", "W"]
INPUTS = {INPUT_NAME: {"dtype": "float32", "shape": SHAPE}}
OUTPUTS = {"probability": {"dtype": "float32", "shape": SHAPE}, "mask": {"dtype": "uint8", "shape": SHAPE},
           "quality": {"dtype": "float32", "shape": ["N", 4]}}


def build_metadata(fmt: str, config: dict, weights_sha256: str, threshold: float, extent: str = DEFAULT_EXTENT,
                   **extra) -> dict:
    """The metadata of one artifact: ``extra`` adds format-specific keys (opset, precision, ...).

    ``extent``: the mask convention the graph's outputs follow (``visible`` or ``full``).
    """
    size = int(config.get("image_size", 256))
    model = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k != "image_size"}
    return {
        "producer": PRODUCER,
        "schema_version": SCHEMA_VERSION,
        "lungseg_version": __version__,
        "format": fmt,
        "weights_sha256": weights_sha256,
        "image_size": size,
        "threshold": float(threshold),
        "extent": check_extent(extent),
        "preprocessing": {
            "resize": "antialiased linear (triangle filter), half-pixel centres, to image_size x image_size",
            "standardize": "per image: x / max|x|, then (x - mean) / sqrt(var + eps), clipped to +-clip",
            "eps": EPS,
            "clip": CLIP,
        },
        "model": model,
        "inputs": INPUTS,
        "outputs": OUTPUTS,
        "opset": None,
        "precision": "fp32",
        **extra,
    }


def dumps(meta: dict) -> str:
    return json.dumps(meta, indent=2, sort_keys=True)


def check_metadata(text, path) -> dict:
    """Parse the metadata found in ``path`` and validate it against :mod:`lungseg.model_schema`.

    ModelError when it is missing, unreadable, not lungseg's or off the schema (naming the field).
    """
    if text is None or text == "" or text == b"":
        raise ModelError(f"{path}: no lungseg metadata ({METADATA_NAME}); not a model exported by lungseg")
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: unreadable lungseg metadata ({e})") from e
    return check_artifact_metadata(meta, path)
