"""Overlay pictures: an X-ray with lung masks drawn in colour (for reports and the CLI)."""

from __future__ import annotations

import cv2
import numpy as np

COLOURS = {1: (60, 60, 230), 2: (230, 120, 40)}  # BGR: patient's right red, left blue
REFERENCE = (40, 200, 40)


def _stretch(x: np.ndarray, lo, hi) -> np.ndarray:
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    return (x * 255).astype(np.uint8)


def _percentiles_from_counts(counts: np.ndarray, q) -> np.ndarray:
    """``np.percentile`` (linear method) of the values 0..len(counts)-1 with these counts."""
    cum = np.cumsum(counts)
    rank = np.asarray(q, np.float64) / 100 * (cum[-1] - 1)
    below = np.floor(rank)
    v0 = np.searchsorted(cum, below, side="right")
    v1 = np.searchsorted(cum, np.minimum(below + 1, cum[-1] - 1), side="right")
    return v0 + (rank - below) * (v1 - v0)


def to_display(image: np.ndarray) -> np.ndarray:
    """Any-dtype 2-D image -> 8-bit BGR, stretched between its 0.5 and 99.5 percentiles."""
    if image.dtype in (np.uint8, np.uint16):  # histogram and lookup table: fast on 20 MP X-rays
        counts = np.bincount(image.ravel(), minlength=2)
        lo, hi = _percentiles_from_counts(counts, [0.5, 99.5])
        gray = _stretch(np.arange(counts.size, dtype=np.float32), lo, hi)[image]
    else:
        x = image.astype(np.float32)
        gray = _stretch(x, *np.percentile(x, [0.5, 99.5]))
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def draw_overlay(image: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None,
                 alpha: float = 0.35) -> np.ndarray:
    """Fill each label in colour over the image; draw a ``reference`` mask's outline in green."""
    out = to_display(image)
    tint = out.copy()
    for value, colour in COLOURS.items():
        tint[labels == value] = colour
    out = cv2.addWeighted(tint, alpha, out, 1 - alpha, 0)
    thickness = max(1, round(max(image.shape) / 400))
    for value, colour in COLOURS.items():
        cnt, _ = cv2.findContours((labels == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnt, -1, colour, thickness, cv2.LINE_AA)
    if reference is not None:
        cnt, _ = cv2.findContours((reference > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnt, -1, REFERENCE, thickness, cv2.LINE_AA)
    return out
