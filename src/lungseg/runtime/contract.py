"""The checks that an exported model keeps lungseg's graph contract, shared by the backends.

Metadata can be copied into any graph, so the backends check what the graph actually
returns: three outputs (``probability`` float32 and ``mask`` uint8, each ``[N, 1, H, W]`` of
the input, and ``quality`` float32 ``[N, 4]``). Every call checks count, dtypes and shapes
(a few comparisons); the first call also checks the values (probability finite in [0, 1],
mask 0/1, quality in [0, 1] or NaN), which catches NaN weights. :func:`check_graph` checks
the declared inputs and outputs at load, :func:`check_pixels` the input of each call.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ModelError
from ..export.metadata import INPUTS, OUTPUT_NAMES, OUTPUTS


def check_graph(path, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> None:
    """A graph's declared ``(name, dtype)`` inputs (in order) and outputs (any order) are lungseg's, else ModelError.

    dtypes are numpy names (``float32``, ``uint8``); a runtime's own type names are kept as they are.
    """
    want_in = [(n, s["dtype"]) for n, s in INPUTS.items()]
    want_out = sorted((n, s["dtype"]) for n, s in OUTPUTS.items())
    if list(inputs) != want_in or sorted(outputs) != want_out:
        raise ModelError(f"{path}: graph inputs {list(inputs)} / outputs {sorted(outputs)} are not lungseg's "
                         f"{want_in} / {want_out}")


def check_pixels(path, pixels: np.ndarray) -> None:
    """The input is ``[N, 1, H, W]`` with H, W >= 1, else InputError (before a runtime's own error)."""
    if pixels.ndim != 4 or pixels.shape[1] != 1 or min(pixels.shape[2:]) < 1:
        raise InputError(f"{path}: input pixels of shape {list(pixels.shape)}; lungseg's graphs take "
                         f"[N, 1, H, W] with H, W >= 1")


def check_outputs(path, pixels: np.ndarray, outputs, values: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probability, mask, quality)`` from a graph's ``outputs`` (a sequence in contract order), else ModelError."""
    if not isinstance(outputs, (tuple, list)):
        raise ModelError(f"{path}: the graph returns one {type(outputs).__name__}, not lungseg's "
                         f"{len(OUTPUT_NAMES)} outputs ({', '.join(OUTPUT_NAMES)}); not a model exported by lungseg")
    if len(outputs) != len(OUTPUT_NAMES):
        raise ModelError(f"{path}: the graph returns {len(outputs)} outputs, not lungseg's {len(OUTPUT_NAMES)} "
                         f"({', '.join(OUTPUT_NAMES)}); not a model exported by lungseg")
    n, _, h, w = pixels.shape
    for name, out in zip(OUTPUT_NAMES, outputs):
        want = OUTPUTS[name]["dtype"]
        if not isinstance(out, np.ndarray):
            raise ModelError(f"{path}: output {name} is a {type(out).__name__}, not a {want} tensor")
        if out.dtype != np.dtype(want):
            raise ModelError(f"{path}: output {name} is {out.dtype}, not lungseg's {want}")
        shape = (n, OUTPUTS[name]["shape"][1]) if len(OUTPUTS[name]["shape"]) == 2 else (n, 1, h, w)
        if out.shape != shape:
            raise ModelError(f"{path}: output {name} has shape {list(out.shape)} for an input of shape "
                             f"{list(pixels.shape)}; lungseg's contract is {list(shape)}")
    prob, mask, quality = outputs
    if values and prob.size:
        if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
            raise ModelError(f"{path}: output probability is not finite in [0, 1] (damaged weights?)")
        if mask.max() > 1:
            raise ModelError(f"{path}: output mask holds values other than 0 and 1")
        finite = quality[np.isfinite(quality)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ModelError(f"{path}: output quality is outside [0, 1] (damaged weights?)")
    return prob, mask, quality
