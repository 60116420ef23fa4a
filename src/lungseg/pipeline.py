"""The deploy module: raw pixels -> Preprocess -> network -> Postprocess -> mask.

This is the one module that Python inference, evaluation, validation during training
and every exported artifact run, so all of them map the same pixels to the same mask.
"""

from __future__ import annotations

import torch
from torch import nn

from .preprocess import DEFAULT_SIZE, Postprocess, Preprocess


class SegmentationPipeline(nn.Module):
    """``forward(pixels [N, 1, H, W]) -> (probability float32, mask uint8)``, both ``[N, 1, H, W]``."""

    def __init__(self, network: nn.Module, size: int = DEFAULT_SIZE, threshold: float = 0.5):
        super().__init__()
        self.preprocess = Preprocess(size)
        self.network = network
        self.postprocess = Postprocess(threshold)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Network logits at the network's own size."""
        out = self.network(self.preprocess(pixels))
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, pixels: torch.Tensor):
        return self.postprocess(self.logits(pixels), pixels.shape[-2], pixels.shape[-1])
