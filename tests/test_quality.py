"""The per-image quality estimate: flags, the head in the graph, analyze(), the CLI and fitting."""

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lungseg
from lungseg import api
from lungseg.cli import main
from lungseg.data.datasets import as_unit_float
from lungseg.pipeline import SegmentationPipeline
from lungseg.postprocess import label_lungs, measure
from lungseg.quality import FLAGS, QUALITY_FIELDS, QualityHead, dice_features, flags_of
from lungseg.quality_data import NON_CHEST, OUT_OF_DISTRIBUTION, non_chest

from conftest import needs_shared_data, synthetic_xray

GOOD = (0.97, 0.97, 0.99, 0.01)


def _lungs(h=200, w=200, right=(30, 90), left=(110, 170), rows=(40, 170)):
    labels = np.zeros((h, w), np.uint8)
    labels[rows[0]:rows[1], right[0]:right[1]] = 1
    if left is not None:
        labels[rows[0]:rows[1], left[0]:left[1]] = 2
    return labels


def test_flags_each_rule():
    assert flags_of(GOOD, _lungs()) == []
    assert flags_of((0.1, 0.95, 0.1, 0.9), _lungs()) == ["inverted", "low_confidence"]
    assert flags_of((0.1, 0.95, 0.1, 0.1), _lungs()) == ["not_frontal_chest", "low_confidence"]
    assert flags_of(GOOD, _lungs(left=None)) == ["one_lung", "implausible_shape"]  # also narrow: 60 x 130
    assert flags_of(GOOD, _lungs(left=(110, 120))) == ["one_lung"]  # 10 columns vs 60: under a quarter
    assert "one_lung" not in flags_of(GOOD, _lungs(left=(110, 126)))  # 16 of 60: over a quarter
    assert flags_of(GOOD, _lungs(rows=(90, 100))) == ["implausible_shape"]  # 6% of the image, 14x as wide as high
    assert flags_of(GOOD, _lungs(right=(10, 100), left=(100, 195), rows=(5, 195))) == ["implausible_shape"]  # 90%
    assert flags_of(GOOD, np.zeros((50, 50), np.uint8)) == ["one_lung", "implausible_shape"]
    assert flags_of((0.89, 0.89, 0.99, 0.0), _lungs()) == ["low_confidence"]
    assert flags_of((0.89, 0.89, 0.99, 0.0), _lungs(), min_quality=0.8) == []
    assert flags_of((float("nan"),) * 4, _lungs()) == ["low_confidence"]  # a graph without a head
    assert set(FLAGS) == {"not_frontal_chest", "inverted", "one_lung", "implausible_shape", "low_confidence"}


def test_head_output_and_dice_formula():
    torch.manual_seed(0)
    head = QualityHead(["visible", "full"], width=4).eval()
    head.coef.copy_(torch.tensor([0.5, 0.2, 0.1, -1.0]))
    head.bias.copy_(torch.tensor([-1.0, -1.2]))
    x = torch.randn(3, 1, 64, 64)
    logits, other = torch.randn(3, 1, 64, 64) * 4, torch.randn(3, 1, 64, 64) * 4
    with torch.no_grad():
        out = head(x, logits, other, 1, 0.5, 64)
    assert out.shape == (3, len(QUALITY_FIELDS))
    feats = dice_features(logits, other, 0.5, 64)
    want = 1 - torch.exp(torch.clamp(feats @ head.coef + head.bias[1], max=0))
    assert torch.allclose(out[:, 1], want) and torch.allclose(out[:, 0], want * out[:, 2])
    assert ((out >= 0) & (out <= 1)).all()


def test_a_network_without_head_gives_nan(tiny_weights):
    from lungseg.models import create_model

    pipe = SegmentationPipeline(create_model(decoder_channels=(16, 8, 8, 4, 4)).eval(), 64)
    with torch.no_grad():
        quality = pipe(torch.rand(2, 1, 70, 90) * 255)[2]
    assert quality.shape == (2, 4) and torch.isnan(quality).all()


def test_analyze_agrees_with_segment_and_measure(tiny_weights, tiny_threshold):
    seg = api.Segmenter(tiny_weights, device="cpu", threshold=tiny_threshold)
    image = synthetic_xray(120, 100)[0]
    r = seg.analyze(image)
    assert np.array_equal(r.mask, seg.segment(image)) and np.array_equal(r.labels, seg.segment(image, labels=True))
    assert r.areas == measure(r.labels, labels=True) and r.probability.shape == image.shape
    assert 0 <= r.quality <= 1 and r.flags == flags_of(
        (r.quality, r.dice_estimate, r.frontal_probability, r.inverted_probability), r.labels)
    many = seg.analyze_many([image, synthetic_xray(80, 80, seed=1)[0], image], extent="full")
    assert [m.quality for m in many][::2] == [seg.analyze(image, extent="full").quality] * 2


def test_cli_report_has_quality_and_review(tmp_path, tiny_weights):
    import cv2

    (tmp_path / "in").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "in" / f"x{i}.png"), synthetic_xray(96, 96, seed=i)[0])
    runner = CliRunner()
    r = runner.invoke(main, ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "a"), "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "a" / "report.csv")))
    assert all(row["status"] == "ok" and 0 <= float(row["quality"]) <= 1 for row in rows)
    assert all(set(row["flags"].split()) <= set(FLAGS) for row in rows)
    r = runner.invoke(main, ["segment", str(tmp_path / "in"), "-o", str(tmp_path / "b"), "--model", str(tiny_weights),
                             "--min-quality", "1"])
    assert r.exit_code == 0 and "2 to review" in r.output  # review is not a failure
    rows = list(csv.DictReader(open(tmp_path / "b" / "report.csv")))
    assert [row["status"] for row in rows] == ["review", "review"] and all((tmp_path / "b" / row["mask"]).is_file()
                                                                          for row in rows)
    assert all("low_confidence" in row["flags"] for row in rows)


def test_fit_quality_writes_a_model_with_a_fitted_head(tmp_path, tiny_weights, synthetic_data):
    from lungseg.checkpoint import load_weights

    out = tmp_path / "q.pt"
    r = CliRunner().invoke(main, ["fit-quality", "--data", str(synthetic_data), "--model", str(tiny_weights),
                                  "-o", str(out), "--rounds", "1", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    network, config = load_weights(out)
    assert config["quality"] == {"width": 16} and network.quality_head is not None
    assert network.quality_head.coef.abs().sum() > 0  # calibrated, not the initial zeros
    again = CliRunner().invoke(main, ["fit-quality", "--data", str(synthetic_data), "--model", str(tiny_weights),
                                      "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output  # nothing is overwritten


def test_non_chest_kinds_are_valid_images():
    rng = np.random.default_rng(0)
    for kind in NON_CHEST:
        x = non_chest(kind, rng, 64)
        assert x.shape == (64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 and x.std() > 0


def test_shipped_model_flags_out_of_distribution_inputs():
    data = needs_shared_data("montgomery")
    from lungseg.data import find_samples, load_sample

    seg = api.Segmenter(device="cpu")
    rng = np.random.default_rng(0)
    for s in find_samples(data, "test")[:2]:
        image, mask = load_sample(s)
        assert seg.analyze(image).flags == []
        x = as_unit_float(image)
        assert "inverted" in seg.analyze(OUT_OF_DISTRIBUTION["inverted"](x)).flags
        for name in ("rotated_90", "upside_down", "one_lung_crop"):
            assert seg.analyze(OUT_OF_DISTRIBUTION[name](x, mask, rng)).flags, name
    assert "not_frontal_chest" in seg.analyze(non_chest("ellipses", rng, 300)).flags


def test_lungseg_analyze_is_exported():
    assert lungseg.analyze is api.analyze and lungseg.Result is api.Result
