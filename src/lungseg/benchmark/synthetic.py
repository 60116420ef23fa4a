"""Synthetic chest-like X-rays (no patient data) for benchmarks and tests that need no data folder."""

from __future__ import annotations

import numpy as np


def synthetic_xray(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 12-bit chest-like image (bright body, two dark lungs, noise) and its 0/1 lung mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:h, 0:w]
    mask = np.zeros((h, w), np.uint8)
    for cx, half in ((0.3, 0.17), (0.7, 0.15)):  # the patient's right lung (image left) is the larger
        mask |= (((xx - cx * w) / (half * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 <= 1).astype(np.uint8)
    body = 0.8 - 0.3 * ((xx - w / 2) / w) ** 2 - 0.1 * (yy / h)
    img = body - 0.45 * mask + rng.normal(0, 0.02, (h, w)).astype(np.float32)
    return (np.clip(img, 0, 1) * 4095).astype(np.uint16), mask


def noisy_mask(mask: np.ndarray, seed: int = 1) -> np.ndarray:
    """A lung mask with what a network leaves: specks outside, a hole inside."""
    rng = np.random.default_rng(seed)
    out = mask.copy()
    h, w = out.shape
    for y, x in rng.integers(0, [h, w], size=(40, 2)):
        out[y:y + 9, x:x + 9] = 1
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs[xs < w // 2].mean())
    out[cy - 40:cy + 40, cx - 40:cx + 40] = 0
    return out
