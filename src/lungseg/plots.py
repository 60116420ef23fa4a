"""Small PNG plots drawn with OpenCV (no plotting library needed): training curves."""

from __future__ import annotations

import cv2
import numpy as np

from .io import write_png_atomic


def _polyline(img, xs, ys, box, color, y_range):
    x0, y0, x1, y1 = box
    lo, hi = y_range
    if len(xs) == 0 or hi <= lo:
        return
    xmax = max(max(xs), 2)
    pts = [(int(x0 + (x - 1) / (xmax - 1) * (x1 - x0)), int(y1 - (y - lo) / (hi - lo) * (y1 - y0)))
           for x, y in zip(xs, ys)]
    cv2.polylines(img, [np.array(pts, np.int32)], False, color, 2, cv2.LINE_AA)
    for p in pts:
        cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)


def plot_curves(history: list[dict], path) -> None:
    """Training loss (left) and validation Dice (right) by epoch."""
    img = np.full((360, 960, 3), 255, np.uint8)
    epochs = [r["epoch"] for r in history]
    panels = [("train loss", [r["train_loss"] for r in history], (200, 80, 20)),
              ("val Dice", [r["val_dice"] for r in history], (30, 140, 30))]
    for i, (name, ys, color) in enumerate(panels):
        box = (60 + i * 480, 40, 440 + i * 480, 320)
        cv2.rectangle(img, box[:2], box[2:], (0, 0, 0), 1)
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        _polyline(img, epochs, ys, box, color, (lo, hi))
        cv2.putText(img, name, (box[0], 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)
        cv2.putText(img, f"{hi:.4f}", (box[0] - 55, box[1] + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"{lo:.4f}", (box[0] - 55, box[3]), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, f"epoch 1..{max(epochs) if epochs else 0}", (box[0], 345),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    write_png_atomic(path, img)
