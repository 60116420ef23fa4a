"""Host-side mask clean-up that a graph cannot express: components, holes, left/right labels, areas.

On a standard PA chest X-ray the patient's right lung is on the image's LEFT side. Labels:
0 background, 1 the patient's right lung, 2 the patient's left lung.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_COMPONENT_FRACTION = 0.02  # components smaller than 2% of the largest are noise
_EIGHT = np.ones((3, 3), bool)


def _components(mask: np.ndarray):
    labels, n = ndimage.label(mask.astype(bool), structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return labels, sizes


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the two largest components (dropping specks under 2% of the largest), fill holes."""
    labels, sizes = _components(mask)
    if sizes.size == 0:
        return np.zeros(mask.shape, np.uint8)
    order = np.argsort(sizes)[::-1][:2]
    keep = [i + 1 for i in order if sizes[i] >= MIN_COMPONENT_FRACTION * sizes[order[0]]]
    out = np.isin(labels, keep)
    return ndimage.binary_fill_holes(out).astype(np.uint8)


def label_lungs(mask: np.ndarray) -> np.ndarray:
    """0/1 mask -> 0/1/2 labels (1 = patient's right = image left) by component position.

    With two components, the one whose centroid is further left in the image is 1. A single
    component that crosses the image's midline (lungs touching) is split at the column of
    least lung between its quarter points; otherwise it is labelled by its centroid's side.
    """
    labels, sizes = _components(mask)
    out = np.zeros(mask.shape, np.uint8)
    if sizes.size == 0:
        return out
    order = np.argsort(sizes)[::-1][:2] + 1
    w = mask.shape[1]
    if len(order) == 2:
        cx = [ndimage.center_of_mass(labels == i)[1] for i in order]
        left_first = cx[0] <= cx[1]
        out[labels == order[0]] = 1 if left_first else 2
        out[labels == order[1]] = 2 if left_first else 1
        return out
    comp = labels == order[0]
    cols = np.where(comp.any(axis=0))[0]
    c0, c1 = cols.min(), cols.max()
    if c0 < w / 2 < c1:
        a, b = c0 + (c1 - c0) // 4, c0 + 3 * (c1 - c0) // 4
        split = a + int(np.argmin(comp[:, a:b + 1].sum(axis=0)))
        out[:, :split][comp[:, :split]] = 1
        out[:, split:][comp[:, split:]] = 2
    else:
        out[comp] = 1 if ndimage.center_of_mass(comp)[1] < w / 2 else 2
    return out


def measure(mask_or_labels: np.ndarray, spacing=None) -> dict:
    """Lung areas in pixels (and mm^2 where ``spacing`` (row, col) in mm is known).

    A 0/1 mask is labelled first with :func:`label_lungs`. Returns right, left and total
    areas and the right/left ratio (None where the left lung is empty).
    """
    arr = np.asarray(mask_or_labels)
    labels = arr if arr.max(initial=0) > 1 else label_lungs(arr)
    right, left = int((labels == 1).sum()), int((labels == 2).sum())
    out = {"right_px": right, "left_px": left, "total_px": right + left,
           "right_left_ratio": (right / left) if left else None}
    if spacing is not None:
        sy, sx = (float(s) for s in np.broadcast_to(spacing, (2,)))
        px = sy * sx
        out.update(right_mm2=right * px, left_mm2=left * px, total_mm2=(right + left) * px)
    return out
