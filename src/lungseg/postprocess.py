"""Host-side mask clean-up that a graph cannot express: components, holes, left/right labels, areas.

On a standard PA chest X-ray the patient's right lung is on the image's LEFT side. Labels:
0 background, 1 the patient's right lung, 2 the patient's left lung.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

MIN_COMPONENT_FRACTION = 0.02  # components smaller than 2% of the largest are noise

# Speed on full-size X-rays (4020x4892): each step works inside the bounding box of the
# mask's pixels, labels components with OpenCV (several times faster than scipy), fills
# holes with one labelling of the background instead of scipy's iterated dilation, and
# touches the label image only for the two components kept.


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Slices of the smallest box holding every non-zero pixel, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _label(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Connected components numbered 1..n (OpenCV's numbering, not always raster order), 0 elsewhere."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    return labels


def _components(mask: np.ndarray):
    """8-connected components ranked by size: (labels, sizes of labels 1..n, the two largest labels).

    Of equal-sized components the one met first in raster order ranks higher. OpenCV does
    not number components in raster order, so where sizes tie at the top the mask is
    relabelled with ``scipy.ndimage.label``, which does.
    """
    labels = _label(mask, 8)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")[:3]
    if len(np.unique(sizes[order])) < order.size:
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel())[1:]
        order = np.argsort(-sizes, kind="stable")[:3]
    return labels, sizes, [int(i) + 1 for i in order[:2]]


def _mean_column(component: np.ndarray, x0: int) -> float:
    """Centroid column of a boolean crop starting at column ``x0``: exact integer sum / count."""
    counts = component.sum(axis=0)
    return float(counts @ np.arange(x0, x0 + counts.size)) / float(counts.sum())


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not 4-connected to the border (as ``ndimage.binary_fill_holes``)."""
    out = np.zeros(mask.shape, np.uint8)
    box = _bbox(mask)
    if box is None:
        return out
    # A one-pixel frame of background around the box is connected to everything outside it.
    inside = np.pad(mask[box] == 0, 1, constant_values=True)
    background = _label(inside, 4)  # 4-connected, like binary_fill_holes
    out[box] = (background != background[0, 0])[1:-1, 1:-1]
    return out


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the two largest components (dropping specks under 2% of the largest), fill holes.

    Of equal-sized components the one met first in raster order ranks higher.
    """
    out = np.zeros(mask.shape, np.uint8)
    box = _bbox(mask)
    if box is None:
        return out
    labels, sizes, order = _components(mask[box] != 0)
    keep = labels == order[0]
    if len(order) == 2 and sizes[order[1] - 1] >= MIN_COMPONENT_FRACTION * sizes[order[0] - 1]:
        keep |= labels == order[1]
    out[box] = keep
    return fill_holes(out)


def label_lungs(mask: np.ndarray) -> np.ndarray:
    """0/1 mask -> 0/1/2 labels (1 = patient's right = image left) by component position.

    With two components, the one whose centroid is further left in the image is 1. A single
    component that crosses the image's midline (lungs touching) is split at the column of
    least lung between its quarter points; otherwise it is labelled by its centroid's side.
    """
    out = np.zeros(mask.shape, np.uint8)
    box = _bbox(mask)
    if box is None:
        return out
    x0, w = box[1].start, mask.shape[1]
    labels, _, order = _components(mask[box] != 0)
    comp = labels == order[0]
    if len(order) == 2:
        other = labels == order[1]
        left_first = _mean_column(comp, x0) <= _mean_column(other, x0)
        first, second = (1, 2) if left_first else (2, 1)
        out[box] = comp * np.uint8(first) + other * np.uint8(second)
        return out
    cols = np.flatnonzero(comp.any(axis=0))
    c0, c1 = cols.min(), cols.max()
    if x0 + c0 < w / 2 < x0 + c1:
        a, b = c0 + (c1 - c0) // 4, c0 + 3 * (c1 - c0) // 4
        split = a + int(np.argmin(comp[:, a:b + 1].sum(axis=0)))
        part = np.zeros(comp.shape, np.uint8)
        part[:, :split][comp[:, :split]] = 1
        part[:, split:][comp[:, split:]] = 2
        out[box] = part
    else:
        out[box] = comp * np.uint8(1 if _mean_column(comp, x0) < w / 2 else 2)
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
