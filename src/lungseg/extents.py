"""The two lung-mask conventions ("extents") and how a data folder declares its own.

* ``visible``: the visible lung field (the heart shadow left out), as in Montgomery/JSRT.
* ``full``: the full lung extent, including the lung behind the heart and down to the
  diaphragm, as in the COVID-19 sets.

The network has one output channel per extent (``EXTENTS`` order). A training sample is
labelled in one convention only; :func:`extent_targets` turns its mask into targets and
per-pixel weights for both channels using ``visible`` ⊆ ``full``: a visible-field mask says
its lung pixels are full-extent lung too (the full channel learns those pixels only), and a
full-extent mask says its background is not visible lung either (the visible channel
learns that background only). Pixels of an ``ignore`` mask weigh nothing in either channel.

A data folder declares its extent (first match wins): an ``extent`` column in
``index.csv`` (per image), ``"extent"`` in ``lungseg.json`` in the folder, the built-in
table :data:`KNOWN_FOLDERS` (the sets of ``../shared/data``), else ``visible``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .errors import InputError

EXTENTS = ("visible", "full")
DEFAULT_EXTENT = "visible"
KNOWN_FOLDERS = {"montgomery": "visible", "shenzhen": "visible", "covid_gb": "full", "covid_v7": "full"}
METADATA_FILE = "lungseg.json"


def check_extent(extent: str, where: str = "extent") -> str:
    """``extent`` if it is one of :data:`EXTENTS`, else a clear ``InputError``."""
    if extent not in EXTENTS:
        raise InputError(f"{where}: unknown extent {extent!r}; choose one of {', '.join(EXTENTS)}")
    return extent


def folder_extent(root) -> str:
    """The extent a data folder declares for all its images (``index.csv`` rows may override)."""
    root = Path(root)
    meta = root / METADATA_FILE
    if meta.is_file():
        try:
            value = json.loads(meta.read_text()).get("extent")
        except (ValueError, AttributeError) as e:
            raise InputError(f"{meta}: not a JSON object ({e})") from e
        if value is not None:
            return check_extent(value, str(meta))
    return KNOWN_FOLDERS.get(root.resolve().name, DEFAULT_EXTENT)


def channel_of(extents, extent: str) -> int:
    """Index of ``extent`` among a model's output ``extents``; ModelError-free InputError if absent."""
    check_extent(extent)
    extents = list(extents)
    if extent not in extents:
        raise InputError(f"this model has no {extent!r} output (it has {', '.join(extents)})")
    return extents.index(extent)


def extent_targets(mask: torch.Tensor, valid: torch.Tensor, extent: str,
                   model_extents=EXTENTS) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(targets, weights, primary channel) for one sample; ``[C, H, W]``, C = len(model_extents).

    ``mask``: soft 0..1 lung target ``[1, H, W]`` in the sample's own convention ``extent``;
    ``valid``: 1 where the pixel counts (0 on ``ignore`` pixels), ``[1, H, W]``. A model
    without a channel for ``extent`` learns the mask as its first channel (the naive merge
    of conventions, kept only as a baseline).
    """
    check_extent(extent)
    model_extents = list(model_extents)
    if extent not in model_extents:
        return mask, valid, 0
    weights = []
    for e in model_extents:
        if e == extent:
            weights.append(valid)
        elif extent == "visible":  # e == "full": full ⊇ visible, so visible lung is full lung
            weights.append(valid * mask)
        else:  # e == "visible", sample is full: outside the full extent nothing is visible lung
            weights.append(valid * (1 - mask))
    return mask.expand(len(model_extents), -1, -1).clone(), torch.cat(weights), model_extents.index(extent)
