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

The resize is written as two matrix products whose weights are computed from the input
shape with plain tensor arithmetic, so it exports to ONNX/TorchScript with dynamic
height and width and needs no antialias attribute in the target runtime.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SIZE = 256
EPS = 1e-6
CLIP = 6.0


def resize_weights(in_size: torch.Tensor, out_size: int, device=None) -> torch.Tensor:
    """Weights ``[out_size, in_size]`` of an antialiased linear resize along one axis.

    For downscaling the triangle filter is widened by the scale factor (as PIL and
    ``torch.nn.functional.interpolate(antialias=True)`` do); for upscaling it is plain
    linear interpolation. Pixel centres are aligned (``align_corners=False``). Rows sum
    to one. ``in_size`` is a 0-d tensor so that the shape stays symbolic in exports.
    """
    in_f = in_size.to(torch.float32)
    scale = in_f / float(out_size)
    support = torch.clamp(scale, min=1.0)
    src = torch.arange(in_size, device=device, dtype=torch.float32)
    centre = (torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale - 0.5
    dist = (centre[:, None] - src[None, :]).abs() / support
    w = torch.clamp(1.0 - dist, min=0.0)
    return w / w.sum(dim=1, keepdim=True)


def resize_antialiased(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` float images to ``size`` with an antialiased linear filter."""
    h, w = x.shape[-2], x.shape[-1]
    if not isinstance(h, torch.Tensor):
        h, w = torch.tensor(h), torch.tensor(w)
    wy = resize_weights(h, size[0], device=x.device)
    wx = resize_weights(w, size[1], device=x.device)
    # Contract the longer axis first: fewer multiply-adds for tall and wide inputs alike.
    return torch.matmul(wy, torch.matmul(x, wx.t()))


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit variance, clipped to +-CLIP standard deviations."""
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
