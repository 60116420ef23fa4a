"""Semantic-guided attention (SGA): self-attention at the bottleneck plus a lung-prior gate.

* :class:`PositionAttention` (DANet / SAGAN): query/key/value 1x1 convolutions, softmax
  over positions, learned residual scale ``gamma`` starting at 0. Used only on the
  stride-32 grid (8x8 for a 256 input), so its O((HW)^2) cost stays tiny.
* :class:`ChannelAttention` (DANet CAM): channel-by-channel affinity, residual ``gamma``.
* :class:`SemanticGuidance`: predicts a coarse lung logit map from the bottleneck; its
  sigmoid, upsampled to each decoder stage, gates the skip features as
  ``skip * (1 + alpha * p)`` so lung regions get more weight. The coarse map is
  supervised with the downsampled ground truth during training. With one coarse map per
  extent (visible field, full extent) both are supervised and the gate uses their maximum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PositionAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # N, HW, C'
        k = self.key(x).flatten(2)  # N, C', HW
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # N, HW, HW
        v = self.value(x).flatten(2)  # N, C, HW
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(n, c, h, w)
        return x + self.gamma * out


class ChannelAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        f = x.flatten(2)  # N, C, HW
        energy = torch.bmm(f, f.transpose(1, 2))  # N, C, C
        # DANet: subtract from the row max so that dissimilar channels get more weight.
        energy = energy.amax(dim=-1, keepdim=True) - energy
        attn = torch.softmax(energy, dim=-1)
        out = torch.bmm(attn, f).reshape(n, c, h, w)
        return x + self.gamma * out


class SemanticGuidance(nn.Module):
    """Coarse lung-logit head and the skip gates it drives."""

    def __init__(self, channels: int, n_stages: int, n_maps: int = 1):
        super().__init__()
        mid = max(channels // 4, 16)
        self.head = nn.Sequential(
            nn.Conv2d(channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, n_maps, 1),
        )
        self.alpha = nn.Parameter(torch.ones(n_stages))

    def coarse_logits(self, bottleneck):
        return self.head(bottleneck)

    def gate(self, skip, coarse_logits, stage: int):
        # With one map per extent the gate follows the widest: any kind of lung gets weight.
        coarse = coarse_logits.amax(dim=1, keepdim=True) if coarse_logits.shape[1] > 1 else coarse_logits
        prior = torch.sigmoid(F.interpolate(coarse, size=skip.shape[-2:], mode="bilinear", align_corners=False))
        return skip * (1.0 + self.alpha[stage] * prior)


class SGA(nn.Module):
    """Bottleneck self-attention (position + channel) and semantic guidance."""

    def __init__(self, channels: int, n_stages: int, n_maps: int = 1):
        super().__init__()
        self.position = PositionAttention(channels)
        self.channel = ChannelAttention()
        self.guidance = SemanticGuidance(channels, n_stages, n_maps)

    def forward(self, bottleneck):
        x = self.position(bottleneck) + self.channel(bottleneck) - bottleneck
        return x, self.guidance.coarse_logits(x)
