"""The single preprocessing and graph-side postprocessing path of lungseg.

Everything that turns raw pixels into network input, and network logits back into a mask
at the input's own size, lives here as ``torch.nn.Module`` code. Training, evaluation,
Python inference and every exported graph use these modules, so the same pixels give the
same mask on every path.

* :class:`Preprocess`: raw pixels ``[N, 1, H, W]`` of any numeric dtype and any size ->
  network input ``[N, 1, S, S]`` float32: an antialiased (triangle filter) resize to the
  network size followed by per-image standardisation (zero mean, unit variance). The
  standardisation makes the result independent of the bit depth and of any linear
  intensity scaling (8-bit ``v`` and 16-bit ``v * 257`` give the same input).
* :class:`Postprocess`: logits ``[N, 1, S, S]`` -> lung probability at ``H x W``
  (bilinear) and the thresholded ``uint8`` mask.

The resize is written as matrix products whose weights are computed from the input shape
with plain tensor arithmetic, so it exports to ONNX/TorchScript with dynamic height and
width and needs no antialias attribute in the target runtime. Each axis is resized in a
fixed number of groups of output pixels; a group reads only the band of input rows (or
columns) its filter taps can reach, so a 4892x4020 image costs about 0.7 GFLOP instead of
the ~10.7 GFLOP of one dense product per axis, with the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SIZE = 256
EPS = 1e-10  # added to the variance of the image divided by its largest |value| (relative, scale-free)
_TINY = 1.17549435e-38  # float32's smallest normal number: the divisor of an all-zero image
CLIP = 6.0
GROUP = 16  # outputs per band: larger groups mean fewer products but more rows read twice


def _groups(size: int, group: int) -> int:
    return -(-int(size) // int(group))


# Where the taps are (n inputs -> s outputs, groups of g outputs). Output i has its centre at input
# coordinate ((2i+1) n - s) / 2s and a non-zero weight only for the inputs j with
# |centre - j| < support = max(n / s, 1) <= (n + s) / s. For the outputs k*g .. k*g+g-1 of group k
# these j lie in a_k < j < a_k + d, with a_k = ((2kg-1) n - 3s) / 2s and d = ((g+1) n + 2s) / s.
# A band that starts at or below floor(a_k) but above a_k - c holds them all if it is at least
# d + c + 1 long.


def _eager_bands(n: int, size: int, group: int) -> tuple[int, list[int]]:
    """(length, starts) of each group's band for a known size ``n``, inside ``0 .. n-1``.

    Exact integer arithmetic: start floor(a_k) - 1 (c = 2), length ceil(d) + 3. A band that
    would stick out of the image is moved inside it (it still holds every tap that exists)
    and none is longer than the image.
    """
    s, g = int(size), int(group)
    length = min(((g + 1) * n + 3 * s - 1) // s + 3, n)
    starts = [min(max(((2 * k * g - 1) * n + s) // (2 * s) - 3, 0), n - length) for k in range(_groups(s, g))]
    return length, starts


def _graph_bands(n, size: int, group: int, device) -> tuple[object, torch.Tensor]:
    """(length, starts ``[groups]``) of the bands for a symbolic size ``n`` (SymInt or 0-d tensor).

    The length, floor(d) + 6, is integer shape arithmetic (exported as a plain integer Div:
    the numerator is positive, so truncating and floor division agree). The starts are
    data, computed without Floor/Mod (which TensorRT's parser is not checked for): a_k + 2
    in float32 (off by less than 0.01 for n <= 65536), cast to int64, minus 3. Whether the
    cast truncates or rounds, that is floor(a_k) - 2 .. floor(a_k), so c = 3 and the length
    is enough. Bands may stick out of the image: the caller clamps their indices and gives
    those taps weight 0.
    """
    s, g = int(size), int(group)
    length = ((g + 1) * n + 2 * s) // s + 6
    n_t = n if isinstance(n, torch.Tensor) else torch.tensor(n, device=device)
    k = torch.arange(_groups(s, g), device=device)
    num = ((2 * g) * k - 1) * n_t + s  # (2kg-1) n + s, exact in int64
    starts = (num.to(torch.float32) / float(2 * s)).to(torch.int64) - 3
    return length, starts


def _band_weights(n, size: int, group: int, pos: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
    """Triangle-filter weights ``[groups, group, length]`` of the input indices ``pos [groups, length]``.

    ``pos`` holds the indices as float32 (exact integers). The weight of input ``j`` for output
    ``i`` is ``max(0, 1 - |centre_i - j| / support)``, normalised over the inputs inside the
    image, as the dense ``[size, n]`` weight matrix has it: where ``inside`` (float32 1/0 per
    index) is given, the indices outside ``0 .. n-1`` get 0. Outputs past ``size`` (the last
    group's padding) repeat output ``size - 1``.
    """
    s, g = int(size), int(group)
    count = _groups(s, g)
    n_t = n if isinstance(n, torch.Tensor) else torch.tensor(n, device=pos.device)
    scale = n_t.to(torch.float32) / float(s)
    support = torch.clamp(scale, min=1.0)
    out = torch.arange(count * g, device=pos.device).clamp(max=s - 1).reshape(count, g).to(torch.float32)
    centre = (out + 0.5) * scale - 0.5
    dist = (centre[:, :, None] - pos[:, None, :]).abs() / support
    w = torch.clamp(1.0 - dist, min=0.0)
    if inside is not None:
        w = w * inside[:, None, :]  # a product, not Where: only float layers in the weights
    return w / w.sum(dim=-1, keepdim=True)


def _graph_capture() -> bool:
    """True while torch.jit.trace, torch.export or torch.compile records the code: shapes are symbolic."""
    return torch.jit.is_tracing() or getattr(torch.compiler, "is_compiling", lambda: False)()


def _resize_axis(x: torch.Tensor, size: int, dim: int, group: int = GROUP) -> torch.Tensor:
    """Antialiased linear resize of ``x`` along ``dim`` (-2: rows, -1: columns) to ``size``.

    The outputs are resized in ``ceil(size / group)`` groups; each group reads one band of
    the input. Eager on the CPU: one product per group on a view (slice) of its band, no
    copy of ``x``. Traced/exported, and on a GPU (where a few large kernels beat many small
    ones): the band starts are tensors computed from the shape, so the bands are gathered
    (ONNX Gather) and contracted in one batched product (MatMul); indices outside the image
    are clamped and weighted 0. In the graph every float layer takes only float inputs,
    except the int -> float Casts and the Gathers and Reshapes of the bands (data movement).
    """
    s, g = int(size), int(group)
    count = _groups(s, g)
    n = x.shape[dim]
    if isinstance(n, int) and x.device.type == "cpu" and not _graph_capture():
        length, starts = _eager_bands(n, s, g)
        pos = torch.tensor(starts, dtype=torch.float32, device=x.device)[:, None] + torch.arange(
            length, dtype=torch.float32, device=x.device)
        w = _band_weights(n, s, g, pos)  # [count, g, length]
        if dim == -2:
            parts = [torch.matmul(w[k], x[..., a:a + length, :]) for k, a in enumerate(starts)]
        else:
            parts = [torch.matmul(x[..., a:a + length], w[k].t()) for k, a in enumerate(starts)]
        y = torch.cat(parts, dim=dim)
    else:
        length, starts = _graph_bands(n, s, g, x.device)
        n_t = n if isinstance(n, torch.Tensor) else torch.tensor(n, device=x.device)
        # Indices as exact float32 integers (n <= 65536) for the weights, and as int64 for Gather.
        pos = starts.to(torch.float32)[:, None] + torch.arange(length, dtype=torch.float32, device=x.device)[None, :]
        idx = pos.to(torch.int64)  # [count, length]
        # Clamp into 0 .. n-1 with Greater/Where (TensorRT: Clip bounds must be constants).
        last = n_t - 1
        clamped = torch.where(torch.gt(idx, last), last, idx)
        clamped = torch.where(torch.gt(clamped, 0), clamped, torch.zeros_like(clamped))
        w = _band_weights(n_t, s, g, pos, inside=torch.eq(clamped, idx).to(torch.float32))
        if dim == -2:
            bands = x.index_select(-2, clamped.reshape(-1)).unflatten(-2, (count, -1))  # [..., count, length, W]
            y = torch.matmul(w, bands).flatten(-3, -2)  # [..., count * g, W]
        else:
            bands = x.index_select(-1, clamped.reshape(-1)).unflatten(-1, (count, -1))  # [..., R, count, length]
            y = torch.matmul(bands.transpose(-3, -2), w.transpose(-1, -2))  # [..., count, R, g]
            y = y.transpose(-3, -2).flatten(-2, -1)  # [..., R, count * g]
    if count * g != s:
        y = y[..., :s, :] if dim == -2 else y[..., :s]
    return y


def resize_antialiased(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` float images to ``size`` with an antialiased linear filter.

    For downscaling the triangle filter is widened by the scale factor (as PIL and
    ``torch.nn.functional.interpolate(antialias=True)`` do); for upscaling it is plain
    linear interpolation. Pixel centres are aligned (``align_corners=False``); the weights
    of each output sum to one over the pixels inside the image. The rows are resized first,
    so the full-size image is read once, in bands; the columns of the ``size[0]``-row
    result after.
    """
    return _resize_axis(_resize_axis(x, size[0], -2), size[1], -1)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit variance, clipped to +-CLIP standard deviations.

    Each image is first divided by its own largest ``|value|``, so the mean and the variance
    are computed on values in [-1, 1]: no overflow for huge values (float32 squares would
    reach inf from about 1e19) and no underflow or EPS domination for tiny ones. The result
    is the same for the image times any positive factor.
    """
    peak = torch.clamp(x.abs().amax(dim=(-2, -1), keepdim=True), min=_TINY)
    x = x / peak
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = torch.sqrt(((x - mean) ** 2).mean(dim=(-2, -1), keepdim=True) + EPS)
    return torch.clamp((x - mean) / std, -CLIP, CLIP)


class Preprocess(nn.Module):
    """Raw pixels ``[N, 1, H, W]`` (uint8, uint16 or float values) -> network input."""

    def __init__(self, size: int = DEFAULT_SIZE):
        super().__init__()
        self.size = int(size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float32)
        x = resize_antialiased(x, (self.size, self.size))
        return standardize(x)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Postprocess(nn.Module):
    """Logits at network size -> (probability, uint8 mask) at the input's ``H x W``."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = float(threshold)

    def forward(self, logits: torch.Tensor, height, width) -> tuple[torch.Tensor, torch.Tensor]:
        up = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        prob = torch.sigmoid(up)
        return prob, (prob > self.threshold).to(torch.uint8)


def mask_to_grid(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a 0/1 mask ``[N, 1, H, W]`` to ``size`` as a soft target in [0, 1]."""
    return resize_antialiased(mask.to(torch.float32), size).clamp(0.0, 1.0)
