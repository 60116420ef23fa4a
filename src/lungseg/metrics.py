"""Segmentation metrics on binary masks: Dice, IoU, HD95 and ASSD.

Surface distances are measured between mask boundaries (the mask minus its 4-connected
erosion) with an exact Euclidean distance transform; ``spacing`` (row, col) in mm gives
millimetres, otherwise pixels. Conventions for empty masks: both empty -> Dice/IoU 1 and
distances 0; exactly one empty -> Dice/IoU 0 and distances equal to the image diagonal.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _as_bool(a) -> np.ndarray:
    return np.asarray(a).astype(bool)


def dice_score(pred, target) -> float:
    p, t = _as_bool(pred), _as_bool(target)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2.0 * np.logical_and(p, t).sum() / denom)


def iou_score(pred, target) -> float:
    p, t = _as_bool(pred), _as_bool(target)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def _boundary(m: np.ndarray) -> np.ndarray:
    return m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(2, 1), border_value=0)


def surface_distances(pred, target, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each boundary pixel of ``pred`` to ``target``'s boundary, and back."""
    p, t = _as_bool(pred), _as_bool(target)
    sampling = (1.0, 1.0) if spacing is None else tuple(float(s) for s in np.broadcast_to(spacing, (2,)))
    bp, bt = _boundary(p), _boundary(t)
    dt_t = ndimage.distance_transform_edt(~bt, sampling=sampling)
    dt_p = ndimage.distance_transform_edt(~bp, sampling=sampling)
    return dt_t[bp], dt_p[bt]


def _empty_case(p, t, spacing):
    if p.any() and t.any():
        return None
    if not p.any() and not t.any():
        return 0.0
    sy, sx = (1.0, 1.0) if spacing is None else np.broadcast_to(spacing, (2,))
    return float(np.hypot(p.shape[0] * sy, p.shape[1] * sx))


def hd95(pred, target, spacing=None) -> float:
    """95th percentile of the symmetric boundary distances."""
    p, t = _as_bool(pred), _as_bool(target)
    special = _empty_case(p, t, spacing)
    if special is not None:
        return special
    a, b = surface_distances(p, t, spacing)
    return float(np.percentile(np.concatenate([a, b]), 95))


def assd(pred, target, spacing=None) -> float:
    """Average symmetric surface distance."""
    p, t = _as_bool(pred), _as_bool(target)
    special = _empty_case(p, t, spacing)
    if special is not None:
        return special
    a, b = surface_distances(p, t, spacing)
    return float((a.sum() + b.sum()) / (len(a) + len(b)))


def without_ignored(pred, target, ignore=None) -> np.ndarray:
    """``pred`` with the ``ignore`` pixels set to the target's value, so they count neither way."""
    p = _as_bool(pred)
    if ignore is None:
        return p
    ig = _as_bool(ignore)
    return np.where(ig, _as_bool(target), p)


def masked_dice(pred, target, ignore=None) -> float:
    """Dice over the pixels outside ``ignore`` (None: all pixels)."""
    if ignore is None:
        return dice_score(pred, target)
    keep = ~_as_bool(ignore)
    return dice_score(_as_bool(pred) & keep, _as_bool(target) & keep)


def all_metrics(pred, target, spacing=None, ignore=None) -> dict:
    """Dice and IoU over the pixels outside ``ignore``; HD95 and ASSD with the ignored
    pixels of ``pred`` taken from the target (so they move no boundary)."""
    keep = None if ignore is None else ~_as_bool(ignore)
    p, t = _as_bool(pred), _as_bool(target)
    pk, tk = (p, t) if keep is None else (p & keep, t & keep)
    pd = without_ignored(p, t, ignore)
    return {"dice": dice_score(pk, tk), "iou": iou_score(pk, tk),
            "hd95": hd95(pd, t, spacing), "assd": assd(pd, t, spacing)}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a, b) -> float:
    """Spearman's rank correlation of two sequences (NaN when either is constant or has a NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")
