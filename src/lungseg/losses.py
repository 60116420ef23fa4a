"""Training loss: BCE + soft Dice on the lung logits, plus the SGA coarse-map auxiliary loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import mask_to_grid


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged over the batch."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)


class SegmentationLoss(nn.Module):
    """``loss(output, target)`` where output is logits or ``(logits, coarse_logits)``."""

    def __init__(self, aux_weight: float = 0.4):
        super().__init__()
        self.aux_weight = aux_weight

    def forward(self, output, target):
        if isinstance(output, (tuple, list)):
            logits, coarse = output
            coarse_target = mask_to_grid(target, tuple(coarse.shape[-2:]))
            return bce_dice_loss(logits, target) + self.aux_weight * bce_dice_loss(coarse, coarse_target)
        return bce_dice_loss(output, target)
