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


LEGEND_NAMES = {1: "prediction, patient's right lung", 2: "prediction, patient's left lung"}


def draw_legend(picture: np.ndarray, reference: bool = True) -> np.ndarray:
    """Write in the top-left corner which colour is which: prediction fills, truth outline (in place)."""
    entries = [(LEGEND_NAMES[v], c, True) for v, c in COLOURS.items()]
    if reference:
        entries.append(("truth (outline)", REFERENCE, False))
    scale = max(0.4, max(picture.shape[:2]) / 1600)
    thick = max(1, round(scale * 1.5))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), base = cv2.getTextSize("Ag", font, scale, thick)
    line, pad = th + base + 2 * thick, max(3, round(6 * scale))
    width = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t, _, _ in entries) + line + 3 * pad
    cv2.rectangle(picture, (0, 0), (width, pad + line * len(entries) + pad), (0, 0, 0), -1)
    for i, (text, colour, filled) in enumerate(entries):
        y = pad + i * line
        cv2.rectangle(picture, (pad, y + 2), (pad + th, y + th + 2), colour, -1 if filled else thick)
        cv2.putText(picture, text, (2 * pad + th, y + th + 1), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return picture


def draw_overlay(image: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None,
                 alpha: float = 0.35, legend: bool = False) -> np.ndarray:
    """Fill each label in colour over the image; draw a ``reference`` mask's outline in green.

    ``legend``: name the colours (prediction, truth) in the top-left corner.
    """
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
    if legend:
        draw_legend(out, reference is not None)
    return out
