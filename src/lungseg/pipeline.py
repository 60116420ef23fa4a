"""The deploy module: raw pixels -> Preprocess -> network -> Postprocess -> mask (+ quality).

This is the one module that Python inference, evaluation, validation during training
and every exported artifact run, so all of them map the same pixels to the same mask.
"""

from __future__ import annotations

import torch
from torch import nn

from .extents import DEFAULT_EXTENT, channel_of
from .preprocess import DEFAULT_SIZE, Postprocess, Preprocess
from .quality import QUALITY_FIELDS


class SegmentationPipeline(nn.Module):
    """``forward(pixels [N, 1, H, W]) -> (probability, mask, quality)``.

    ``probability`` float32 and ``mask`` uint8 are ``[N, 1, H, W]``; ``quality`` float32
    ``[N, 4]`` is :data:`lungseg.quality.QUALITY_FIELDS` from the network's quality head
    (NaN where the network carries none). ``extent`` picks which of the network's outputs
    (``network.config["extents"]``) it returns: ``"visible"`` (the lung field) or ``"full"``
    (the full lung extent).
    """

    def __init__(self, network: nn.Module, size: int = DEFAULT_SIZE, threshold: float = 0.5,
                 extent: str = DEFAULT_EXTENT):
        super().__init__()
        self.preprocess = Preprocess(size)
        self.network = network
        self.postprocess = Postprocess(threshold)
        self.select_extent(extent)

    @property
    def extents(self) -> list[str]:
        return list(getattr(self.network, "config", {}).get("extents", ["visible"]))

    def select_extent(self, extent: str) -> None:
        """Make ``forward`` return the ``extent`` output; InputError if the network has none."""
        self.channel = channel_of(self.extents, extent)
        self.extent = extent

    def logits(self, pixels: torch.Tensor, channel: int | None = None) -> torch.Tensor:
        """Network logits of the selected extent (or ``channel``) ``[N, 1, S, S]`` at the network's size."""
        out = self.run_network(self.preprocess(pixels))
        c = self.channel if channel is None else channel
        return out[:, c:c + 1]

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logits ``[N, extents, S, S]`` of the network input ``x``."""
        out = self.network(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, pixels: torch.Tensor):
        return self._outputs(pixels, self.channel)

    def run(self, pixels: torch.Tensor, extent: str):
        """``forward`` for another of the network's extents (eager use; the selection is unchanged)."""
        return self._outputs(pixels, channel_of(self.extents, extent))

    def _outputs(self, pixels: torch.Tensor, channel: int):
        x = self.preprocess(pixels)
        out = self.run_network(x)
        logits = out[:, channel:channel + 1]
        prob, mask = self.postprocess(logits, pixels.shape[-2], pixels.shape[-1])
        head = getattr(self.network, "quality_head", None)
        if head is None:  # NaN of the batch's size (ONNX ConstantOfShape: no arithmetic an int8 calibrator ranges)
            quality = logits.new_full((logits.shape[0], len(QUALITY_FIELDS)), float("nan"))
        else:
            others = [k for k in range(out.shape[1]) if k != channel]
            other = out[:, others[0]:others[0] + 1] if others else None
            quality = head(x, logits, other, channel, self.postprocess.threshold, self.preprocess.size)
        return prob, mask, quality
