"""Joint image+mask augmentation for chest X-rays, built against missing sick lungs.

All transforms take ``(image, mask, rng)``: a float32 image in [0, 1] at its original
resolution, a uint8 0/1 mask and a ``numpy.random.Generator``; they return the pair.
Geometry moves image and mask together; everything else changes the image only, so the
mask stays the whole lung field. No horizontal flips (they move the heart).

:func:`synthetic_opacity` lays realistic white-outs over parts of the lung field
(patchy consolidation, a basal effusion with a meniscus, diffuse haze) while the mask
keeps the whole lung, so the model learns that opaque lung is still lung.
"""

from __future__ import annotations

import cv2
import numpy as np


def random_affine(image, mask, rng, max_rot=10.0, scale=(0.88, 1.12), max_shift=0.07):
    h, w = image.shape
    angle = rng.uniform(-max_rot, max_rot)
    s = rng.uniform(*scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, s)
    m[0, 2] += rng.uniform(-max_shift, max_shift) * w
    m[1, 2] += rng.uniform(-max_shift, max_shift) * h
    fill = float(np.percentile(image[:, :8], 50)) if w > 8 else 0.0
    image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return image, mask


def _smooth_field(shape, rng, cells):
    h, w = shape
    noise = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def synthetic_opacity(image, mask, rng):
    """Whiten part of the lung field (consolidation, effusion or haze); the mask is unchanged."""
    lung_mask = (mask & 1).astype(np.uint8)  # other bits mark ignored pixels
    if lung_mask.sum() == 0:
        return image, mask
    h, w = image.shape
    lung = lung_mask.astype(np.float32)
    bright = float(np.percentile(image[lung_mask > 0], 99))
    target = max(bright, float(np.percentile(image, 97)))
    kind = rng.choice(["patchy", "effusion", "haze"], p=[0.5, 0.3, 0.2])
    if kind == "patchy":
        field = _smooth_field((h, w), rng, int(rng.integers(4, 10)))
        cut = rng.uniform(0.55, 0.8)
        blob = np.clip((field - cut) / (1 - cut) * 3.0, 0, 1)
        alpha = rng.uniform(0.5, 1.0)
    elif kind == "effusion":
        n, labels = cv2.connectedComponents(lung_mask)
        side = int(rng.integers(1, n)) if n > 1 else 1
        rows = np.where((labels == side).any(axis=1))[0]
        top, bottom = rows.min(), rows.max()
        level = bottom - rng.uniform(0.15, 0.6) * (bottom - top)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        cols = np.where((labels == side).any(axis=0))[0]
        cx = (cols.min() + cols.max()) / 2
        meniscus = level - rng.uniform(0.0, 0.25) * (rows.max() - rows.min()) * (np.abs(xx - cx) / max(int(np.ptp(cols)), 1)) * 2
        blob = np.clip((yy - meniscus) / max(0.03 * h, 1), 0, 1) * (labels == side)
        alpha = rng.uniform(0.6, 1.0)
    else:
        blob = np.ones((h, w), np.float32)
        alpha = rng.uniform(0.2, 0.5)
    sigma = max(h, w) / rng.uniform(40, 120)
    soft_lung = cv2.GaussianBlur(lung, (0, 0), sigma * 0.5)
    blob = cv2.GaussianBlur(blob.astype(np.float32), (0, 0), sigma) * soft_lung
    texture = 1.0 + 0.08 * (_smooth_field((h, w), rng, 32) - 0.5)
    out = image + alpha * blob * (target * texture - image)
    return np.clip(out, 0.0, 1.0).astype(np.float32), mask


def random_intensity(image, mask, rng):
    """Gamma, contrast, brightness and window clipping (as from print scans or other systems)."""
    x = image
    lo, hi = np.percentile(x, [rng.uniform(0, 5), rng.uniform(95, 100)])
    if rng.random() < 0.5 and hi > lo:
        x = np.clip((x - lo) / (hi - lo), 0, 1)  # saturated window
    x = np.power(np.clip(x, 0, 1), rng.uniform(0.55, 1.8))
    x = x * rng.uniform(0.6, 1.3) + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.3:  # low-contrast scan of a print
        x = 0.5 + (x - 0.5) * rng.uniform(0.3, 0.7)
    return np.clip(x, 0, 1).astype(np.float32), mask


def random_degrade(image, mask, rng):
    """Blur or resolution loss, then sensor noise."""
    x = image
    r = rng.random()
    if r < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 2.0))
    elif r < 0.5:
        h, w = x.shape
        f = rng.uniform(0.25, 0.6)
        small = cv2.resize(x, (max(int(w * f), 8), max(int(h * f), 8)), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        x = x + rng.normal(0, rng.uniform(0.005, 0.04), x.shape).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32), mask


class XrayAugment:
    """The training augmentation: affine, synthetic opacity, intensity, degradation."""

    def __init__(self, p_affine=0.8, p_opacity=0.5, p_intensity=0.8, p_degrade=0.5):
        self.steps = [(p_affine, random_affine), (p_opacity, synthetic_opacity),
                      (p_intensity, random_intensity), (p_degrade, random_degrade)]

    def __call__(self, image, mask, rng):
        for p, fn in self.steps:
            if rng.random() < p:
                image, mask = fn(image, mask, rng)
        return image, mask
