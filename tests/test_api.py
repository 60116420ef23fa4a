"""The Python API: Segmenter, the cached lungseg.segment(), measure(); real-data consistency checks."""

import functools

import cv2
import numpy as np
import pytest

import lungseg
from conftest import synthetic_xray
from lungseg import api
from lungseg.errors import InputError, ModelError
from lungseg.metrics import dice_score


@pytest.fixture(scope="module")
def segmenter(tiny_weights):
    return api.Segmenter(tiny_weights, device="cpu")


@pytest.fixture
def image():
    return synthetic_xray(72, 60, seed=3)[0]


@pytest.fixture
def default_weights_from(install_shipped):
    """Install a weights file as the 'shipped' default (with its sha256 card) for one test."""
    return functools.partial(install_shipped, "default")


def _components(mask):
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n - 1


# ---- Segmenter -----------------------------------------------------------------------------

def test_mask_has_the_input_size_and_is_binary(segmenter, image):
    mask = segmenter.segment(image)
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}


def test_labels_split_the_mask(segmenter, image):
    mask = segmenter.segment(image)
    labels = segmenter.segment(image, labels=True)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
    assert np.array_equal(labels > 0, mask > 0)


def test_postprocess_false_is_the_graph_mask(segmenter, image):
    raw = segmenter.segment(image, postprocess=False)
    assert np.array_equal(raw, (segmenter.probability(image) > 0.5).astype(np.uint8))
    clean = segmenter.segment(image)
    assert _components(clean) <= 2
    filled = clean.copy()
    cv2.floodFill(filled, None, (0, 0), 1) if clean[0, 0] == 0 else None
    assert clean[0, 0] == 1 or filled.all()  # no holes: flooding the outside reaches everything


def test_threshold_changes_the_mask_monotonically(segmenter, image):
    prob = segmenter.probability(image)
    t = float(np.median(prob))
    low = segmenter.segment(image, threshold=t - 1e-3, postprocess=False)
    high = segmenter.segment(image, threshold=t + 1e-3, postprocess=False)
    assert np.array_equal(high, (prob > t + 1e-3).astype(np.uint8))
    assert np.all(high <= low) and high.sum() < low.sum()


def test_same_pixels_same_mask_from_array_file_pil_and_rgb(segmenter, image, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    expected = segmenter.segment(image)
    cv2.imwrite(str(tmp_path / "x.png"), image)
    for same in (tmp_path / "x.png", str(tmp_path / "x.png"), PIL.fromarray(image), image[..., None],
                 np.dstack([image] * 3), np.dstack([image] * 3 + [np.full_like(image, 255)])):
        assert np.array_equal(segmenter.segment(same), expected)


def test_uint8_and_uint16_times_257_give_identical_masks(segmenter, image, tmp_path):
    wide = image.astype(np.uint16) * 257
    assert np.array_equal(segmenter.segment(image), segmenter.segment(wide))
    cv2.imwrite(str(tmp_path / "x16.png"), wide)
    assert np.array_equal(segmenter.segment(image), segmenter.segment(tmp_path / "x16.png"))


def test_segment_many_matches_one_by_one(segmenter):
    images = [synthetic_xray(64, 64, seed=s)[0] for s in range(3)] + [synthetic_xray(50, 70, seed=9)[0]]
    many = segmenter.segment_many(images, batch_size=2, labels=True)
    for img, got in zip(images, many):
        prob = segmenter.probability(img)
        one = segmenter.segment(img, labels=True)
        assert got.shape == img.shape
        sure = np.abs(prob - 0.5) > 1e-4  # batching may move a probability by float rounding
        assert np.array_equal(got[sure] > 0, one[sure] > 0)


def test_bad_input_raises_input_error_naming_the_file(segmenter, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(lungseg.InputError, match=r"notes\.png: not an image"):
        segmenter.segment(tmp_path / "notes.png")
    with pytest.raises(InputError, match="constant"):
        segmenter.segment(np.zeros((30, 30), np.uint8))


def test_bad_weights_raise_model_error(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"w\.pt"):
        api.Segmenter(tmp_path / "w.pt")


# ---- lungseg.segment: the default model, loaded once ---------------------------------------

def test_top_level_segment_uses_the_cached_default(default_weights_from, tiny_weights, image):
    default_weights_from(tiny_weights)
    expected = api.Segmenter(tiny_weights, device="cpu").segment(image, labels=True)
    got = lungseg.segment(image, labels=True, device="cpu")
    assert np.array_equal(got, expected)
    lungseg.segment(image, device="cpu")
    assert api._cached_segmenter.cache_info().misses == 1  # the model was loaded once


def test_threads_asking_at_once_load_the_default_model_once(monkeypatch):
    import threading
    import time

    made, start = [], threading.Barrier(4)

    class Slow:
        def __init__(self, model, device):
            made.append(device)
            time.sleep(0.2)  # a model load: long enough for the other threads to arrive meanwhile

    monkeypatch.setattr(api, "Segmenter", Slow)
    api._cached_segmenter.cache_clear()
    got = []

    def ask():
        start.wait()
        got.append(api._cached_segmenter("cpu"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        api._cached_segmenter.cache_clear()
    assert made == ["cpu"] and len(got) == 4 and all(g is got[0] for g in got)


def test_default_weights_are_checked_against_their_sha256(default_weights_from, tiny_weights, image):
    default_weights_from(tiny_weights, sha="0" * 64)
    with pytest.raises(ModelError, match="does not match"):
        lungseg.segment(image, device="cpu")


def test_exports_are_lazy_and_complete():
    assert lungseg.Segmenter is api.Segmenter and lungseg.measure is api.measure
    assert {"segment", "Segmenter", "measure", "InputError"} <= set(lungseg.__all__)


# ---- measure ---------------------------------------------------------------------------------

def test_measure_areas_ratio_and_mm2():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 5:20] = 1  # image left = the patient's right: 450 px
    mask[5:25, 40:55] = 1  # image right = the patient's left: 300 px
    m = lungseg.measure(mask, spacing=(0.2, 0.5))
    assert (m["right_px"], m["left_px"], m["total_px"]) == (450, 300, 750)
    assert m["right_left_ratio"] == pytest.approx(1.5)
    assert m["right_mm2"] == pytest.approx(45.0) and m["total_mm2"] == pytest.approx(75.0)
    assert "total_mm2" not in lungseg.measure(mask)
    assert lungseg.measure(np.zeros((5, 5), np.uint8))["right_left_ratio"] is None


def _two_lungs():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 5:20] = 1  # image left = the patient's right: 450 px
    mask[5:25, 40:55] = 1  # image right = the patient's left: 300 px
    return mask


def test_measure_reads_01_0255_and_bool_masks_and_labels():
    mask = _two_lungs()
    expected = (450, 300)
    labels = mask.copy()
    labels[:, 30:] *= 2
    for given in (mask, mask * np.uint8(255), mask.astype(bool), mask.astype(np.float32), labels,
                  np.array([0, 128, 255], np.uint8)[labels]):
        m = lungseg.measure(given)
        assert (m["right_px"], m["left_px"]) == expected, given.dtype
    only_right = mask.copy()
    only_right[:, 30:] = 0
    assert lungseg.measure(only_right * 2, labels=True)["left_px"] == 450  # label 2 wherever it lies
    assert lungseg.measure(mask, labels=True)["right_px"] == 750  # told: all label 1
    with pytest.raises(InputError, match="expected a 0/1, 0/255 or bool mask"):
        lungseg.measure(labels, labels=False)
    for bad in (mask * 7, mask.astype(np.float32) * 0.5, np.full((4, 4), np.nan, np.float32)):
        with pytest.raises(InputError, match="mask"):
            lungseg.measure(bad)
    with pytest.raises(InputError, match="label values"):
        lungseg.measure(mask * 7, labels=True)


@pytest.mark.parametrize("spacing", [0, -0.5, (0.5, 0.0), (0.5, -1), float("nan"), (0.5, float("inf")),
                                     (1, 2, 3), "abc"])
def test_measure_refuses_bad_spacing(spacing):
    with pytest.raises(InputError, match="spacing"):
        lungseg.measure(_two_lungs(), spacing=spacing)


# ---- real X-rays with the shipped weights ----------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    if not api.DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"shipped weights not present at {api.DEFAULT_WEIGHTS} (added with the trained model)")
    return api.Segmenter(device="cpu")


def _test_samples(n=None):
    from conftest import needs_shared_data
    from lungseg.data import find_samples

    samples = find_samples(needs_shared_data("montgomery"), "test")
    return samples[:n] if n else samples


@pytest.mark.slow  # two passes over the 28 Montgomery test images
def test_segment_gives_the_same_dice_as_evaluate(shipped, tmp_path):
    import csv

    from lungseg.data import load_sample
    from lungseg.evaluate import evaluate

    samples = _test_samples()
    summary = evaluate([samples[0].image.parents[1]], "test", out_dir=tmp_path, segmenter=shipped)
    with open(tmp_path / "per_image.csv") as f:
        reported = {r["id"]: float(r["dice"]) for r in csv.DictReader(f)}
    ours = []
    for s in samples:
        _, truth = load_sample(s)
        ours.append(dice_score(lungseg.segment(s.image, device="cpu"), truth))
        assert ours[-1] == pytest.approx(reported[s.id], abs=1e-9), s.id
    assert np.mean(ours) == pytest.approx(summary["montgomery"]["dice_mean"], abs=1e-9)


def test_512_and_upscaled_4096_masks_agree(shipped):
    from lungseg.data import load_sample

    for s in _test_samples(3):
        image, _ = load_sample(s)
        small = shipped.segment(image)
        big = shipped.segment(cv2.resize(image, (4096, 4096), interpolation=cv2.INTER_CUBIC))
        back = cv2.resize(big, image.shape[::-1], interpolation=cv2.INTER_AREA)
        assert dice_score(small, back) >= 0.98, s.id


def test_real_uint8_and_uint16_give_identical_masks(shipped):
    from lungseg.data import load_sample

    for s in _test_samples(3):
        image, _ = load_sample(s)
        assert np.array_equal(shipped.segment(image), shipped.segment(image.astype(np.uint16) * 257)), s.id


def test_real_monochrome1_and_monochrome2_dicoms_give_identical_masks(shipped, tmp_path):
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom
    from lungseg.data import load_sample

    image, _ = load_sample(_test_samples(1)[0])
    mono2 = write_dicom(tmp_path / "m2.dcm", image, bits_stored=8)
    mono1 = write_dicom(tmp_path / "m1.dcm", 255 - image, photometric="MONOCHROME1", bits_stored=8)
    assert np.array_equal(shipped.segment(mono1), shipped.segment(mono2))
