import cv2
import numpy as np
import pytest

from conftest import synthetic_xray
from lungseg.data import SegmentationDataset, XrayAugment, find_samples, load_sample
from lungseg.data.transforms import random_affine, synthetic_opacity
from lungseg.errors import InputError


def test_folder_layout_with_splits(synthetic_data):
    assert len(find_samples(synthetic_data, "train")) == 6
    assert len(find_samples(synthetic_data, "test")) == 2
    assert len(find_samples(synthetic_data, "all")) == 10
    s = find_samples(synthetic_data, "val")[0]
    image, mask = load_sample(s)
    assert image.shape == mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 1}


def _nlm(tmp_path, n=3):
    root = tmp_path / "NLM"
    for d in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        img, mask = synthetic_xray(64, 80, seed=i)
        name = f"MCUCXR_{i:04d}_{i % 2}.png"
        cv2.imwrite(str(root / "CXR_png" / name), img)
        left = mask.copy(); left[:, 40:] = 0
        cv2.imwrite(str(root / "ManualMask/leftMask" / name), left * 255)
        cv2.imwrite(str(root / "ManualMask/rightMask" / name), (mask - left) * 255)
    return root, mask


def test_nlm_layout_merges_left_and_right(tmp_path):
    root, mask = _nlm(tmp_path)
    samples = find_samples(root)
    assert [s.tb_label for s in samples] == [0, 1, 0]
    _, merged = load_sample(samples[2])
    assert np.array_equal(merged, mask)
    with pytest.raises(InputError, match="no split"):
        find_samples(root, "train")


def test_bad_data_folders_name_the_file(tmp_path, synthetic_data):
    with pytest.raises(InputError, match="no such data folder"):
        find_samples(tmp_path / "missing")
    with pytest.raises(InputError, match="not a data folder"):
        find_samples(tmp_path)
    root, _ = _nlm(tmp_path)
    (root / "ManualMask/rightMask/MCUCXR_0001_1.png").unlink()
    with pytest.raises(InputError, match="MCUCXR_0001_1.png"):
        find_samples(root)


def test_image_without_mask_and_size_mismatch(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True); (root / "masks").mkdir()
    img, mask = synthetic_xray(64, 64)
    cv2.imwrite(str(root / "images/a.png"), img)
    with pytest.raises(InputError, match="a.png: no mask"):
        find_samples(root)
    cv2.imwrite(str(root / "masks/a.png"), cv2.resize(mask * 255, (32, 32)))
    with pytest.raises(InputError, match="differs from image size"):
        load_sample(find_samples(root)[0])
    (root / "images/b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cv2.imwrite(str(root / "masks/b.png"), mask * 255)
    with pytest.raises(InputError, match="b.png"):
        load_sample(find_samples(root)[1])


def _centroid(a):
    ys, xs = np.nonzero(a > a.mean())
    return ys.mean(), xs.mean()


def test_augmentation_keeps_image_and_mask_aligned():
    h, w = 128, 128
    image = np.zeros((h, w), np.float32)
    image[40:70, 30:60] = 1.0
    mask = (image > 0).astype(np.uint8)
    for seed in range(5):
        a, m = random_affine(image, mask, np.random.default_rng(seed))
        assert np.allclose(_centroid(a), _centroid(m.astype(np.float32)), atol=1.0)
        assert ((a > 0.5) == (m > 0)).mean() > 0.98


def test_opacity_whitens_lung_but_keeps_mask():
    img, mask = synthetic_xray(128, 128, seed=3)
    image = img.astype(np.float32) / 255
    out, m = synthetic_opacity(image, mask, np.random.default_rng(1))
    assert np.array_equal(m, mask)
    assert out[mask > 0].mean() > image[mask > 0].mean()
    assert np.abs(out[mask == 0] - image[mask == 0]).mean() < np.abs(out[mask > 0] - image[mask > 0]).mean()


def test_dataset_items_go_through_preprocess(synthetic_data):
    ds = SegmentationDataset(find_samples(synthetic_data, "train"), 32, XrayAugment(), seed=1)
    x, y, w, primary = ds[0]
    assert x.shape == y.shape == w.shape == (1, 32, 32) and primary == 0
    assert abs(float(x.mean())) < 1e-3 and 0 <= float(y.min()) and float(y.max()) <= 1
    x2 = ds[0][0]
    assert np.array_equal(x.numpy(), x2.numpy())  # same epoch and index: same augmentation
    ds.set_epoch(1)
    assert not np.array_equal(x.numpy(), ds[0][0].numpy())
