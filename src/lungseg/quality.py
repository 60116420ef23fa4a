"""Per-image quality estimate: how far a mask can be trusted, computed inside the graph.

:class:`QualityHead` runs after the network, in the deploy module (so Python, every
exported graph and the C++ runtime get the same numbers), and returns one row of
:data:`QUALITY_FIELDS` per image:

* ``quality``: the estimated Dice of the mask against an expert's, times the view check's
  probability that the input is an upright frontal chest X-ray (so a non-chest input
  scores low whatever its mask looks like);
* ``dice_estimate``: the Dice estimate alone, a calibrated function (:data:`DICE_FEATURES`)
  of the probability map at the network's size;
* ``frontal_probability`` / ``inverted_probability``: the view check, a small CNN
  (:class:`ViewNet`) on a 64x64 thumbnail of the network input.

The flags (:data:`FLAGS`) follow from that row and from the cleaned 0/1/2 labels by the
rules in :func:`flags_of` (the C++ runtime implements the same rules; golden fixtures
check both). ``lungseg fit-quality`` (:mod:`lungseg.quality_fit`) trains and calibrates
the head.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

QUALITY_FIELDS = ("quality", "dice_estimate", "frontal_probability", "inverted_probability")
THUMB = 64  # side of the view check's thumbnail
DICE_FEATURES = ("log_uncertain_band", "log_one_minus_mean_inside", "log_extent_disagreement", "area")

# Flags, in the order of their bits in the C ABI (bit k = FLAGS[k]).
FLAGS = ("not_frontal_chest", "inverted", "one_lung", "implausible_shape", "low_confidence")
VIEW_CUTOFF = 0.5            # frontal/inverted probabilities at or above this count as that view
MIN_QUALITY = 0.90           # the documented cut-off of low_confidence (the CLI's --min-quality default)
ONE_LUNG_RATIO = 0.25        # the smaller lung under this share of the larger: one_lung
AREA_RANGE = (0.05, 0.70)    # lung share of the image outside this: implausible_shape
BOX_ASPECT_RANGE = (0.6, 2.6)  # width/height of both lungs' bounding box outside this: implausible_shape


class ViewNet(nn.Module):
    """``[N, 1, 64, 64]`` thumbnail -> logits of (upright frontal chest, inverted chest, other)."""

    def __init__(self, width: int = 16):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                       nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(chans[-1], 3)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(thumb).mean(dim=(-2, -1)))


def thumbnail(x: torch.Tensor, size: int) -> torch.Tensor:
    """The view check's ``[N, 1, 64, 64]`` input: the network input (``size`` a side) averaged in blocks."""
    return F.adaptive_avg_pool2d(x, THUMB) if size % THUMB else F.avg_pool2d(x, size // THUMB)


def dice_features(logits: torch.Tensor, other: torch.Tensor | None, threshold: float, size: int) -> torch.Tensor:
    """``[N, len(DICE_FEATURES)]`` from the selected extent's logits ``[N, 1, size, size]``.

    ``other``: the other extent's logits (None for a one-output network: no disagreement).
    The uncertain band is sum 4p(1-p) over the mask's area (boundary width per area, which
    is what Dice loses at an uncertain edge); the extent disagreement is 1 - Dice between
    the two extents' masks (large where much lung hides behind the heart or the
    diaphragm, where annotators differ most).
    """
    p = torch.sigmoid(logits.float())
    m = (p > threshold).to(torch.float32)
    area = m.sum(dim=(1, 2, 3))
    safe = torch.clamp(area, min=1.0)
    band = (4.0 * p * (1.0 - p)).sum(dim=(1, 2, 3)) / safe
    inside = (p * m).sum(dim=(1, 2, 3)) / safe
    if other is None:
        disagree = torch.zeros_like(area)
    else:
        mo = (torch.sigmoid(other.float()) > threshold).to(torch.float32)
        disagree = 1.0 - 2.0 * (m * mo).sum(dim=(1, 2, 3)) / torch.clamp(area + mo.sum(dim=(1, 2, 3)), min=1.0)
    tiny = 1e-4
    return torch.stack([torch.log(band + tiny), torch.log(1.0 - inside + tiny), torch.log(disagree + tiny),
                        area / float(size * size)], dim=1)


class QualityHead(nn.Module):
    """``forward(x, logits, other) -> [N, 4]`` (:data:`QUALITY_FIELDS`), all float32.

    ``x``: the network input ``[N, 1, S, S]``; ``logits``: the selected extent's output,
    ``other``: the other extent's (or None); ``size``: the network's input side. The Dice estimate is
    ``1 - exp(coef . features + bias[extent])``, fitted by least squares on log(1 - Dice)
    of held-out images (:mod:`lungseg.quality_fit`); ``bias`` has one entry per extent.
    """

    def __init__(self, extents=("visible",), width: int = 16):
        super().__init__()
        self.extents = list(extents)
        self.config = {"width": int(width)}
        self.view = ViewNet(width)
        self.register_buffer("coef", torch.zeros(len(DICE_FEATURES)))
        self.register_buffer("bias", torch.full((len(self.extents),), -3.0))

    def forward(self, x: torch.Tensor, logits: torch.Tensor, other: torch.Tensor | None, channel: int,
                threshold: float, size: int) -> torch.Tensor:
        view = torch.softmax(self.view(thumbnail(x, size)).float(), dim=1)
        feats = dice_features(logits, other, threshold, size)
        dice = 1.0 - torch.exp(torch.clamp(feats @ self.coef + self.bias[channel], max=0.0))
        return torch.stack([dice * view[:, 0], dice, view[:, 0], view[:, 1]], dim=1)


def flags_of(row, labels: np.ndarray, min_quality: float = MIN_QUALITY) -> list[str]:
    """The flags of one image from its quality ``row`` (:data:`QUALITY_FIELDS`) and 0/1/2 ``labels``.

    * ``not_frontal_chest``: the view check finds neither an upright frontal chest X-ray nor
      an inverted one (rotated, upside down, cropped, lateral or not a chest X-ray);
    * ``inverted``: the view check finds an inverted (negative) chest X-ray;
    * ``one_lung``: no lung or one, or the smaller under ONE_LUNG_RATIO of the larger;
    * ``implausible_shape``: the lungs cover a share of the image outside AREA_RANGE, or
      their joint bounding box has a width/height outside BOX_ASPECT_RANGE;
    * ``low_confidence``: quality under ``min_quality``.
    """
    quality, _, frontal, inverted = (float(v) for v in row)
    flags = []
    if inverted >= VIEW_CUTOFF:
        flags.append("inverted")
    elif frontal < VIEW_CUTOFF:
        flags.append("not_frontal_chest")
    counts = np.bincount(labels.ravel(), minlength=3)[1:3]
    if counts.min() < ONE_LUNG_RATIO * counts.max() or counts.max() == 0:
        flags.append("one_lung")
    if _implausible(labels, int(counts.sum())):
        flags.append("implausible_shape")
    if not quality >= min_quality:  # NaN (a graph without the head) is not confident either
        flags.append("low_confidence")
    return flags


def _implausible(labels: np.ndarray, area: int) -> bool:
    h, w = labels.shape
    share = area / float(h * w)
    if not AREA_RANGE[0] <= share <= AREA_RANGE[1]:
        return True
    rows = np.flatnonzero(labels.any(axis=1))
    cols = np.flatnonzero(labels.any(axis=0))
    aspect = (cols[-1] - cols[0] + 1) / float(rows[-1] - rows[0] + 1)
    return not BOX_ASPECT_RANGE[0] <= aspect <= BOX_ASPECT_RANGE[1]
