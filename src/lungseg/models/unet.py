"""UNet assembly: ResNet encoder -> (optional SGA) -> decoder with a skip at every stride -> head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import SGA
from .encoders import ResNetEncoder
from ..extents import check_extent
from ..quality import QualityHead

ATTENTIONS = ("sga", None)
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the skip of that stride, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch + skip_ch, out_ch)
        self.conv2 = ConvBNReLU(out_ch, out_ch)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class UNet(nn.Module):
    """Lung UNet. Input: preprocessed ``[N, 1, S, S]`` (S divisible by 32). Output: logits.

    One output channel per entry of ``extents`` (see :mod:`lungseg.extents`), e.g.
    ``("visible", "full")``: the visible lung field and the full lung extent.

    ``quality``: the arguments of a :class:`~lungseg.quality.QualityHead` (``{"width": 16}``)
    to carry one, or None. In training mode with ``attention="sga"`` the forward returns ``(logits, coarse_logits)``
    so the coarse lung map can be supervised; in eval mode it returns the logits only.
    """

    def __init__(self, encoder: str = "resnet18", attention: str | None = "sga",
                 decoder_channels=DEFAULT_DECODER_CHANNELS, in_channels: int = 1, extents=("visible",),
                 quality: dict | None = None):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; choose one of {ATTENTIONS}")
        extents = [check_extent(e, "model extents") for e in extents]
        if not extents or len(set(extents)) != len(extents):
            raise ValueError(f"model extents must be distinct and not empty, got {extents}")
        self.config = {"encoder": encoder, "attention": attention,
                       "decoder_channels": list(decoder_channels), "in_channels": in_channels,
                       "extents": extents}
        # The per-image quality estimate (lungseg.quality), run by the deploy module, not by forward.
        self.quality_head = None
        if quality is not None:
            self.quality_head = QualityHead(extents, **quality)
            self.config["quality"] = dict(self.quality_head.config)
        self.encoder = ResNetEncoder(encoder, in_channels)
        enc = self.encoder.out_channels  # strides 1, 2, 4, 8, 16, 32
        skips = enc[:-1][::-1]  # strides 16, 8, 4, 2, 1
        ins = [enc[-1]] + list(decoder_channels[:-1])
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, decoder_channels)
        )
        self.attention = SGA(enc[-1], len(self.decoder), len(extents)) if attention == "sga" else None
        self.head = nn.Conv2d(decoder_channels[-1], len(extents), 3, padding=1)

    def forward(self, x: torch.Tensor):
        feats = self.encoder(x)
        x = feats[-1]
        coarse = None
        if self.attention is not None:
            x, coarse = self.attention(x)
        for i, (block, skip) in enumerate(zip(self.decoder, feats[-2::-1])):
            if coarse is not None:
                skip = self.attention.guidance.gate(skip, coarse, i)
            x = block(x, skip)
        logits = self.head(x)
        if self.training and coarse is not None:
            return logits, coarse
        return logits


def create_model(encoder: str = "resnet18", attention: str | None = "sga", **kwargs) -> UNet:
    """Build a lung UNet; ``attention=None`` (or ``"none"``) gives the plain ResNet-UNet."""
    if isinstance(attention, str) and attention.lower() in ("none", ""):
        attention = None
    return UNet(encoder=encoder, attention=attention, **kwargs)
