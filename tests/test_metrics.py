import numpy as np
import pytest

from lungseg.metrics import all_metrics, assd, dice_score, hd95, iou_score


def square(h=40, w=40, y=10, x=10, s=10):
    m = np.zeros((h, w), np.uint8)
    m[y:y + s, x:x + s] = 1
    return m


def test_identical_masks():
    m = square()
    assert all_metrics(m, m) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_disjoint_masks():
    a, b = square(x=0, y=0, s=5), square(x=30, y=30, s=5)
    assert dice_score(a, b) == 0.0 and iou_score(a, b) == 0.0


def test_partial_overlap_by_hand():
    a, b = square(s=10), square(x=15, s=10)  # overlap 10x5 = 50 pixels
    assert dice_score(a, b) == pytest.approx(2 * 50 / 200)
    assert iou_score(a, b) == pytest.approx(50 / 150)


def test_known_shift_distances():
    a, b = square(s=10), square(x=13, s=10)  # shifted right by 3 pixels
    # vertical edges are 3 apart; top/bottom edge pixels are within 3 of the other boundary
    assert hd95(a, b) == pytest.approx(3.0)
    assert 0 < assd(a, b) <= 3.0
    assert hd95(a, b, spacing=(0.5, 0.5)) == pytest.approx(1.5)
    assert hd95(a, b, spacing=(1.0, 2.0)) == pytest.approx(6.0)


def test_empty_conventions():
    z = np.zeros((30, 40), np.uint8)
    assert all_metrics(z, z) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    m = square(30, 40)
    assert dice_score(z, m) == 0.0 and hd95(z, m) == pytest.approx(50.0)
