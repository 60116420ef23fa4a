"""Host post-processing (components, holes, left/right labels) and overlay contrast, against references."""

import numpy as np
import pytest
from scipy import ndimage

from lungseg import postprocess
from lungseg.overlay import to_display
from lungseg.postprocess import clean_mask, fill_holes, label_lungs, measure

EIGHT = np.ones((3, 3), bool)


@pytest.fixture(params=["run graph", "opencv"])
def strategy(request, monkeypatch):
    """Join the runs of foreground pixels with the run graph, or with OpenCV's labelling of the pixels."""
    monkeypatch.setattr(postprocess, "GRAPH_MAX_RUNS_PER_PIXEL", np.inf if request.param == "run graph" else 0.0)
    return request.param


def _reference_clean(mask):
    """The definition, written plainly with scipy: two largest 8-components (>= 2% of the largest), holes filled."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return np.zeros(mask.shape, np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    order = sorted(range(n), key=lambda i: (-sizes[i], i))[:2]  # ties: the lower label
    keep = [i + 1 for i in order if sizes[i] >= 0.02 * sizes[order[0]]]
    return ndimage.binary_fill_holes(np.isin(labels, keep)).astype(np.uint8)


def _random_masks(n=150, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) < rng.uniform(0.05, 0.7)
        if k % 2:
            m = ndimage.binary_dilation(m)
        yield m.astype(np.uint8)


def test_fill_holes_matches_scipy():
    for m in _random_masks():
        assert np.array_equal(fill_holes(m), ndimage.binary_fill_holes(m).astype(np.uint8))


def test_clean_mask_matches_the_reference(strategy):
    for m in _random_masks(seed=1):
        assert np.array_equal(clean_mask(m), _reference_clean(m))


def _reference_labels(mask):
    """label_lungs' docstring, written plainly with scipy (raster-order labels, ties to the lower one)."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    out = np.zeros(mask.shape, np.uint8)
    if n == 0:
        return out
    sizes = np.bincount(labels.ravel())[1:]
    order = [i + 1 for i in sorted(range(n), key=lambda i: (-sizes[i], i))[:2]]
    w = mask.shape[1]
    if len(order) == 2:
        cx = [ndimage.center_of_mass(labels == i)[1] for i in order]
        out[labels == order[0]], out[labels == order[1]] = (1, 2) if cx[0] <= cx[1] else (2, 1)
        return out
    comp = labels == order[0]
    cols = np.flatnonzero(comp.any(axis=0))
    c0, c1 = cols[0], cols[-1]
    if c0 < w / 2 < c1:
        a, b = c0 + (c1 - c0) // 4, c0 + 3 * (c1 - c0) // 4
        split = a + int(np.argmin(comp[:, a:b + 1].sum(axis=0)))
        out[:, :split][comp[:, :split]] = 1
        out[:, split:][comp[:, split:]] = 2
    else:
        out[comp] = 1 if ndimage.center_of_mass(comp)[1] < w / 2 else 2
    return out


def test_label_lungs_matches_the_reference(strategy):
    for m in _random_masks(seed=2):
        assert np.array_equal(label_lungs(m), _reference_labels(m))
        clean = clean_mask(m)
        assert np.array_equal(label_lungs(clean), _reference_labels(clean))


def _lungs(h, w, touching=False, seed=0):
    """Two lung-shaped ellipses (or one, where they touch), specks and a hole, as a network leaves them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:h, 0:w]
    m = np.zeros((h, w), bool)
    for cx, half in ((0.3, 0.17), (0.7, 0.15)):
        m |= ((xx - cx * w) / (half * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 <= 1
    if touching:
        m[int(0.6 * h):int(0.63 * h), int(0.3 * w):int(0.7 * w)] = True
    for y, x in rng.integers(0, [h, w], size=(40, 2)):
        m[y:y + 5, x:x + 5] = True
    m[int(0.45 * h):int(0.5 * h), int(0.25 * w):int(0.3 * w)] = False
    return m.astype(np.uint8)


@pytest.mark.parametrize("touching", [False, True])
def test_lung_sized_masks_match_the_reference(strategy, touching):
    m = _lungs(900, 740, touching)
    clean = clean_mask(m)
    assert np.array_equal(clean, _reference_clean(m))
    assert np.array_equal(label_lungs(m), _reference_labels(m))
    labels = label_lungs(clean)
    assert np.array_equal(labels, _reference_labels(clean))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_any_mask_dtype_gives_the_same_result(strategy):
    m = _lungs(300, 250, seed=3)
    expected = clean_mask(m), label_lungs(m), fill_holes(m)
    for other in (m.astype(bool), m * np.uint8(255), m.astype(np.float32), m.astype(np.int64)):
        for a, b in zip(expected, (clean_mask(other), label_lungs(other), fill_holes(other))):
            assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)
    assert measure(m.astype(bool)) == measure(m)


def test_equal_sized_components_rank_by_raster_order():
    m = np.zeros((30, 40), np.uint8)
    for x0 in (2, 14, 26):  # three 6x6 squares: the first two met in raster order are kept
        m[10:16, x0:x0 + 6] = 1
    out = clean_mask(m)
    assert out[12, 4] == 1 and out[12, 16] == 1 and out[12, 28] == 0
    labels = label_lungs(m)
    assert labels[12, 4] == 1 and labels[12, 16] == 2 and labels[12, 28] == 0


def test_clean_mask_drops_specks_and_fills_holes():
    m = np.zeros((60, 80), np.uint8)
    m[10:50, 5:35] = 1
    m[10:50, 45:75] = 1
    m[20:25, 10:15] = 0  # a hole
    m[55, 40] = 1  # a speck
    out = clean_mask(m)
    assert out[22, 12] == 1 and out[55, 40] == 0 and out.sum() == 2 * 40 * 30


def test_label_lungs_patient_right_is_image_left():
    m = np.zeros((40, 60), np.uint8)
    m[5:35, 5:20] = 1
    m[5:35, 40:58] = 1
    labels = label_lungs(m)
    assert set(np.unique(labels[:, :25])) == {0, 1} and set(np.unique(labels[:, 35:])) == {0, 2}


def test_touching_lungs_are_split_and_a_single_lung_labelled_by_side():
    m = np.zeros((40, 60), np.uint8)
    m[5:35, 5:55] = 1
    m[5:30, 28:32] = 0  # narrow bridge at the bottom
    labels = label_lungs(m)
    assert (labels[:, :25][m[:, :25] > 0] == 1).all() and (labels[:, 35:][m[:, 35:] > 0] == 2).all()
    one = np.zeros((40, 60), np.uint8)
    one[5:35, 40:55] = 1
    assert set(np.unique(label_lungs(one))) == {0, 2}


def test_empty_masks():
    z = np.zeros((10, 12), np.uint8)
    for f in (clean_mask, fill_holes, label_lungs):
        assert np.array_equal(f(z), z)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_display_contrast_matches_numpy_percentiles(dtype):
    rng = np.random.default_rng(0)
    for k in range(60):
        img = rng.integers(0, int(rng.integers(1, np.iinfo(dtype).max)) + 1, rng.integers(1, 40, 2)).astype(dtype)
        x = img.astype(np.float32)
        lo, hi = np.percentile(x, [0.5, 99.5])
        expected = (np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
        assert np.array_equal(to_display(img), np.dstack([expected] * 3)), k
