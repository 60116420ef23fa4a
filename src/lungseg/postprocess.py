"""Host-side mask clean-up that a graph cannot express: components, holes, left/right labels, areas.

On a standard PA chest X-ray the patient's right lung is on the image's LEFT side. Labels:
0 background, 1 the patient's right lung, 2 the patient's left lung.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .errors import InputError

MIN_COMPONENT_FRACTION = 0.02  # components smaller than 2% of the largest are noise

# Speed on full-size X-rays (4020x4892): a mask is read once, inside the bounding box of its
# pixels, as runs (row, first column, end column) of foreground pixels in raster order. A
# network's mask has a few runs per row, so components, sizes, centroids and column profiles
# are computed on the runs, not the pixels. The outputs are drawn inside the box of the
# components kept (copying the mask there and clearing the runs dropped, or painting the runs
# kept, whichever touches fewer pixels); holes are filled and the second lung relabelled with
# cv2.floodFill, which touches only the pixels it fills. Where the runs are many (noise), one
# OpenCV labelling of the pixels joins them instead of a graph over the runs.
GRAPH_MAX_RUNS_PER_PIXEL = 1 / 32  # above this, labelling the pixels with OpenCV is cheaper than the run graph


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Slices of the smallest box holding every non-zero pixel, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class _Components(NamedTuple):
    """8-connected components of a mask, as runs of foreground pixels in raster order.

    Run ``i`` is row ``rows[i]``, columns ``starts[i] .. ends[i] - 1`` (image coordinates) and
    belongs to component ``comp[i]`` (0 .. n-1, in no particular order). ``sizes`` and ``first``
    (the index of its first run, i.e. its first pixel in raster order) are per component.
    ``order``: the two (or one) largest; of equal-sized components the one met first in raster
    order ranks higher. ``inside``: the mask's pixels (bool) in ``box``, the mask's bounding box.
    """

    rows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    comp: np.ndarray
    sizes: np.ndarray
    first: np.ndarray
    order: list
    box: tuple
    inside: np.ndarray


def _components(mask: np.ndarray) -> _Components | None:
    """The 8-connected components of the non-zero pixels of ``mask``; None for an empty mask."""
    box = _bbox(mask)
    if box is None:
        return None
    y0, x0 = box[0].start, box[1].start
    h, w = box[0].stop - y0, box[1].stop - x0
    padded = np.zeros((h, w + 2), bool)  # a background column either side: every run has both ends in its row
    inside = padded[:, 1:-1]
    np.not_equal(mask[box], 0, out=inside)
    edges = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # run starts and ends alternate, row by row
    row, starts = np.divmod(edges[0::2], w + 1)
    ends = edges[1::2] - row * (w + 1)
    n_runs = row.size
    if n_runs <= GRAPH_MAX_RUNS_PER_PIXEL * h * w:
        # Join runs of consecutive rows that touch (8-connected: columns overlap or meet at a
        # corner). Keys of (row, column) increase in raster order, so the runs of row r + 1 that
        # touch run i are the contiguous range with end >= starts[i] and start <= ends[i].
        stride = w + 2
        below = (row + 1) * stride
        lo = np.searchsorted(row * stride + ends, below + starts, side="left")
        hi = np.searchsorted(row * stride + starts, below + ends, side="right")
        count = np.maximum(hi - lo, 0)
        src = np.repeat(np.arange(n_runs), count)
        dst = np.arange(src.size) + np.repeat(lo - (np.cumsum(count) - count), count)
        graph = csr_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(n_runs, n_runs))
        n, comp = connected_components(graph, directed=False)
    else:
        n, labels = cv2.connectedComponents(inside.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        comp = labels[row, starts] - 1
        n -= 1
    sizes = np.bincount(comp, weights=ends - starts, minlength=n).astype(np.int64)
    first = np.full(n, n_runs, np.int64)
    np.minimum.at(first, comp, np.arange(n_runs))
    order = [int(i) for i in np.lexsort((first, -sizes))[:2]]
    return _Components(row + y0, starts + x0, ends + x0, comp, sizes, first, order, box, inside)


def _set_runs(flat: np.ndarray, index: np.ndarray, length: np.ndarray, value) -> None:
    """``flat[index[i] : index[i] + length[i]] = value`` for every run ``i`` (lengths > 0)."""
    skip = np.repeat(index - (np.cumsum(length) - length), length)
    flat[np.arange(skip.size) + skip] = value


def _draw(cs: _Components, keep: list, pad: int) -> tuple[np.ndarray, int, int]:
    """The components ``keep`` as 0/1 ``uint8`` in their bounding box, with ``pad`` pixels of 0 around.

    Returns (image, top row, left column) of the box in the mask's coordinates. The box is
    copied from the mask and the other components' runs in it cleared, or the runs kept are
    painted on zeros, whichever touches fewer pixels.
    """
    kept = np.isin(cs.comp, keep)
    y0, y1 = int(cs.rows[kept].min()), int(cs.rows[kept].max()) + 1
    x0, x1 = int(cs.starts[kept].min()), int(cs.ends[kept].max())
    stride = x1 - x0 + 2 * pad
    out = np.zeros((y1 - y0 + 2 * pad, stride), np.uint8)
    drop = ~kept & (cs.rows >= y0) & (cs.rows < y1) & (cs.ends > x0) & (cs.starts < x1)
    starts, ends = np.maximum(cs.starts[drop], x0), np.minimum(cs.ends[drop], x1)
    n_kept = int(cs.sizes[keep].sum())
    if int((ends - starts).sum()) < n_kept:
        by, bx = cs.box[0].start, cs.box[1].start
        np.copyto(out[pad:pad + y1 - y0, pad:pad + x1 - x0], cs.inside[y0 - by:y1 - by, x0 - bx:x1 - bx], casting="unsafe")
        rows, value = cs.rows[drop], 0
    else:
        rows, starts, ends, value = cs.rows[kept], cs.starts[kept], cs.ends[kept], 1
    _set_runs(out.reshape(-1), (rows - y0 + pad) * stride + starts - x0 + pad, ends - starts, value)
    return out, y0, x0


def _fill_from_frame(framed: np.ndarray) -> np.ndarray:
    """Holes filled: ``framed`` (0/1, a frame of 0 around) -> bool of the pixels inside the frame.

    The background 4-connected to the frame is the background connected to the image border
    (outside the box everything is background), as ``ndimage.binary_fill_holes`` defines it.
    """
    cv2.floodFill(framed, None, (0, 0), 2, flags=4)
    return framed[1:-1, 1:-1] != 2


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not 4-connected to the border (as ``ndimage.binary_fill_holes``)."""
    out = np.zeros(mask.shape, np.uint8)
    box = _bbox(mask)
    if box is None:
        return out
    framed = np.zeros((box[0].stop - box[0].start + 2, box[1].stop - box[1].start + 2), np.uint8)
    np.not_equal(mask[box], 0, out=framed[1:-1, 1:-1].view(bool))
    out[box] = _fill_from_frame(framed)
    return out


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the two largest components (dropping specks under 2% of the largest), fill holes.

    Of equal-sized components the one met first in raster order ranks higher.
    """
    out = np.zeros(mask.shape, np.uint8)
    cs = _components(mask)
    if cs is None:
        return out
    keep = cs.order[:1]
    if len(cs.order) == 2 and cs.sizes[cs.order[1]] >= MIN_COMPONENT_FRACTION * cs.sizes[cs.order[0]]:
        keep = cs.order
    framed, y0, x0 = _draw(cs, keep, pad=1)
    out[y0:y0 + framed.shape[0] - 2, x0:x0 + framed.shape[1] - 2] = _fill_from_frame(framed)
    return out


def _column_sum(cs: _Components, k: int) -> int:
    """Sum of the column indices of the pixels of component ``k`` (exact)."""
    sel = cs.comp == k
    starts, ends = cs.starts[sel], cs.ends[sel]
    return int(((starts + ends - 1) * (ends - starts)).sum()) // 2


def label_lungs(mask: np.ndarray) -> np.ndarray:
    """0/1 mask -> 0/1/2 labels (1 = patient's right = image left) by component position.

    With two components, the one whose centroid is further left in the image is 1. A single
    component that crosses the image's midline (lungs touching) is split at the column of
    least lung between its quarter points; otherwise it is labelled by its centroid's side.
    """
    out = np.zeros(mask.shape, np.uint8)
    cs = _components(mask)
    if cs is None:
        return out
    w = mask.shape[1]
    comp = cs.order[0]
    centre = float(_column_sum(cs, comp)) / float(cs.sizes[comp])  # centroid column, as float64
    if len(cs.order) == 2:
        other = cs.order[1]
        left_first = centre <= float(_column_sum(cs, other)) / float(cs.sizes[other])
        part, y0, x0 = _draw(cs, cs.order, pad=0)
        second = other if left_first else comp  # the component labelled 2
        seed = (int(cs.starts[cs.first[second]]) - x0, int(cs.rows[cs.first[second]]) - y0)
        cv2.floodFill(part, None, seed, 2, flags=8)  # exactly that 8-connected component
    else:
        part, y0, x0 = _draw(cs, [comp], pad=0)
        c0, c1 = int(cs.starts.min()), int(cs.ends.max()) - 1
        if c0 < w / 2 < c1:
            a, b = c0 + (c1 - c0) // 4, c0 + 3 * (c1 - c0) // 4
            counts = np.cumsum(np.bincount(cs.starts, minlength=w + 1) - np.bincount(cs.ends, minlength=w + 1))
            split = a + int(np.argmin(counts[a:b + 1]))
            part[:, split - x0:] *= 2
        elif centre >= w / 2:
            part *= 2
    out[y0:y0 + part.shape[0], x0:x0 + part.shape[1]] = part
    return out


LABEL_VALUES = (0, 1, 2)  # background, patient's right lung, patient's left lung
VISIBLE_LABEL_VALUES = (0, 128, 255)  # the same labels as ``lungseg segment --labels-visible`` writes them


def _values(arr: np.ndarray) -> set:
    """The distinct values of ``arr`` (a counting pass for 8-bit arrays, else a sort)."""
    if arr.dtype in (np.uint8, np.bool_):
        a = arr.view(np.uint8)
        hi = int(a.max()) if a.size else 0
        if hi <= 2:  # masks and labels: a few comparisons beat bincount's cast to int64
            return {v for v in range(hi + 1) if v == hi or np.any(a == v)}
        return {int(v) for v in np.flatnonzero(np.bincount(a.reshape(-1), minlength=2))}
    return {v.item() for v in np.unique(arr)}


def _as_labels(arr: np.ndarray, labels: bool | None) -> np.ndarray:
    """0/1/2 labels from a mask (0/1, 0/255, bool) or from labels (0/1/2, 0/128/255).

    ``labels`` None detects which: values in {0, 1} or {0, 255} (or bool) are a mask, values
    in {0, 1, 2} or {0, 128, 255} with a 2 or a 128 are labels; anything else is refused.
    """
    if arr.ndim != 2:
        raise InputError(f"mask of shape {arr.shape}; expected a 2-D mask or label image")
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"mask of type {arr.dtype}; expected bool, integer or float")
    values = _values(arr)
    if any(v != v for v in values):
        raise InputError("mask holds NaN values")
    is_mask = values <= {0, 1} or values <= {0, 255}
    if labels is None:
        if not is_mask and not (values <= set(LABEL_VALUES) or values <= set(VISIBLE_LABEL_VALUES)):
            raise InputError(f"mask values {sorted(values)[:6]} are neither a 0/1 or 0/255 mask nor 0/1/2 "
                             "(or 0/128/255) labels")
        labels = not is_mask
    if not labels:
        if not (is_mask or arr.dtype == np.bool_):
            raise InputError(f"mask values {sorted(values)[:6]}: expected a 0/1, 0/255 or bool mask")
        return label_lungs(arr)
    if values <= set(LABEL_VALUES):
        return arr.astype(np.uint8)
    if values <= set(VISIBLE_LABEL_VALUES):
        return (arr // 127).astype(np.uint8)  # 128 -> 1, 255 -> 2
    raise InputError(f"label values {sorted(values)[:6]}: expected 0/1/2 (or 0/128/255) labels")


def _lung_counts(arr: np.ndarray, labels: bool | None) -> tuple[int, int]:
    """(right, left) pixel counts; 8-bit 0/1/2 labels are counted without a copy or a sort."""
    if arr.ndim == 2 and arr.dtype == np.uint8 and labels is not False and arr.size and int(arr.max()) <= 2:
        right, left = int(np.count_nonzero(arr == 1)), int(np.count_nonzero(arr == 2))
        if labels or left:  # labels=None: without a 2 it reads as a 0/1 mask, labelled below
            return right, left
    lab = _as_labels(arr, labels)  # a mask to label, or values to refuse with the reason
    return int(np.count_nonzero(lab == 1)), int(np.count_nonzero(lab == 2))


def _pixel_area(spacing) -> float:
    """mm^2 per pixel from ``spacing`` (one number, or (row, column) in mm), which must be positive and finite."""
    try:
        sy, sx = (float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (2,)))
    except (TypeError, ValueError):
        raise InputError(f"spacing {spacing!r}: expected one number or (row, column) in mm") from None
    if not (np.isfinite(sy) and np.isfinite(sx) and sy > 0 and sx > 0):
        raise InputError(f"spacing {spacing!r}: pixel spacing must be positive and finite (mm)")
    return sy * sx


def measure(mask_or_labels: np.ndarray, spacing=None, *, labels: bool | None = None) -> dict:
    """Lung areas in pixels (and mm^2 where ``spacing`` (row, col) in mm is known).

    Accepts a 0/1, 0/255 or bool mask (labelled first with :func:`label_lungs`) or 0/1/2
    labels (1 the patient's right lung, 2 the left; 0/128/255 as ``--labels-visible`` writes
    them). ``labels``: True for labels, False for a mask, None to tell from the values (a
    labels image holding only label 1 reads as a mask; pass ``labels=True`` for it).
    ``spacing`` must be positive and finite. Returns right, left and total areas and the
    right/left ratio (None where the left lung is empty). Other values raise
    :class:`~lungseg.errors.InputError`.
    """
    px = None if spacing is None else _pixel_area(spacing)
    right, left = _lung_counts(np.asarray(mask_or_labels), labels)
    out = {"right_px": right, "left_px": left, "total_px": right + left,
           "right_left_ratio": (right / left) if left else None}
    if px is not None:
        out.update(right_mm2=right * px, left_mm2=left * px, total_mm2=(right + left) * px)
    return out
