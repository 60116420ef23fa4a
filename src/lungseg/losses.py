"""Training loss: BCE + soft Dice on the lung logits, plus the SGA coarse-map auxiliary loss.

Targets come with per-pixel weights, one channel per extent (see :mod:`lungseg.extents`):
BCE counts each pixel by its weight (0 on ``ignore`` pixels and on pixels that a sample's
convention says nothing about), soft Dice is taken on each sample's own, fully labelled
channel (``primary``), with its ignored pixels left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import mask_to_grid


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                   eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image (over the pixels ``weight`` keeps), averaged over the batch."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    w = torch.ones_like(t) if weight is None else weight.flatten(1)
    inter = (p * t * w).sum(1)
    return (1 - (2 * inter + eps) / ((p * w).sum(1) + (t * w).sum(1) + eps)).mean()


def masked_bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                         primary: torch.Tensor) -> torch.Tensor:
    """Weighted BCE over all channels + soft Dice of each sample's ``primary`` channel.

    ``logits``, ``target``, ``weight``: ``[N, C, H, W]``; ``primary``: ``[N]`` channel indices.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    bce = bce / weight.sum().clamp_min(1.0)
    idx = torch.arange(logits.shape[0], device=logits.device)
    own = lambda t: t[idx, primary]  # noqa: E731  [N, H, W]
    # On the own channel a weight is 1 except on ignored pixels: keep those out of Dice.
    keep = (own(weight) > 0).to(logits.dtype)
    return bce + soft_dice_loss(own(logits), own(target), keep)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """BCE of the student's logits against the teacher's probabilities, on every pixel and channel.

    The teacher speaks for every extent, so a sample also teaches the channels its own
    mask convention leaves unlabelled.
    """
    return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits))


class SegmentationLoss(nn.Module):
    """``loss(output, target, weight, primary)``; output is logits or ``(logits, coarse_logits)``."""

    def __init__(self, aux_weight: float = 0.4):
        super().__init__()
        self.aux_weight = aux_weight

    def forward(self, output, target, weight, primary):
        if isinstance(output, (tuple, list)):
            logits, coarse = output
            grid = tuple(coarse.shape[-2:])
            loss = masked_bce_dice_loss(logits, target, weight, primary)
            return loss + self.aux_weight * masked_bce_dice_loss(
                coarse, mask_to_grid(target, grid), mask_to_grid(weight, grid), primary)
        return masked_bce_dice_loss(output, target, weight, primary)
