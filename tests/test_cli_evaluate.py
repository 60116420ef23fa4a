"""evaluate: masks thresholded at half their range, inverted masks warned about, the worst
cases per dataset with a legend, one line per dataset; export progress; help; packaging."""

import json
import logging
import shutil
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from lungseg.cli import main
from lungseg.evaluate import evaluate
from lungseg.io import read_mask
from lungseg.overlay import draw_overlay

from conftest import synthetic_xray

ROOT = Path(__file__).resolve().parents[1]


def test_read_mask_thresholds_jpeg_masks_at_half_their_range(tmp_path):
    _, mask = synthetic_xray(256, 256, seed=1)
    cv2.imwrite(str(tmp_path / "m.jpg"), mask * 255, [cv2.IMWRITE_JPEG_QUALITY, 60])
    got = read_mask(tmp_path / "m.jpg")
    assert abs(int(got.sum()) - int(mask.sum())) < 0.01 * mask.sum()  # ringing is not lung
    assert (got != mask).mean() < 0.005
    for values in (mask, mask * 255, mask * 2, mask.astype(np.uint16) * 65535):  # 0/1, 0/255, labels, 16 bit
        cv2.imwrite(str(tmp_path / "m.png"), values)
        assert np.array_equal(read_mask(tmp_path / "m.png"), mask)
    labels = mask.copy()
    labels[:, 128:] *= 2  # 0/1/2: both lungs count
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    assert np.array_equal(read_mask(tmp_path / "l.png"), mask)


def _copy(src, dst, invert=False):
    shutil.copytree(src, dst)
    if invert:  # lung black on white: covers 90% of the image
        for m in (dst / "masks").iterdir():
            inverted = np.full((96, 96), 255, np.uint8)
            inverted[20:50, 20:51] = 0
            cv2.imwrite(str(m), inverted)
    return dst


def test_inverted_mask_is_warned_about_in_the_log_and_on_the_cli(synthetic_data, tiny_weights, tmp_path, caplog):
    data = _copy(synthetic_data, tmp_path / "inv", invert=True)
    with caplog.at_level(logging.WARNING, logger="lungseg"):
        evaluate([data], "test", model=tiny_weights, device="cpu")
    assert any("covers" in r.getMessage() and "case8.png" in r.getMessage() for r in caplog.records)
    r = CliRunner().invoke(main, ["evaluate", str(data), "--model", str(tiny_weights), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "inverted" in r.stderr


def test_evaluate_out_keeps_the_worst_of_each_dataset(synthetic_data, tiny_weights, tmp_path):
    a, b = _copy(synthetic_data, tmp_path / "a"), _copy(synthetic_data, tmp_path / "b")
    evaluate([a, b], "test", model=tiny_weights, device="cpu", out_dir=tmp_path / "out", n_worst=1)
    names = sorted(p.name.split("_")[0] for p in (tmp_path / "out/worst").iterdir())
    assert names == ["a", "b"]


def test_overlay_legend_names_truth_and_prediction():
    image, mask = synthetic_xray(400, 400, seed=2)
    plain = draw_overlay(image, mask, reference=mask)
    with_legend = draw_overlay(image, mask, reference=mask, legend=True)
    corner = (slice(0, 60), slice(0, 200))
    assert not np.array_equal(plain[corner], with_legend[corner])
    assert np.array_equal(plain[200:], with_legend[200:])  # the rest of the picture untouched
    swatches = with_legend[corner].reshape(-1, 3)
    for colour in ((60, 60, 230), (230, 120, 40), (40, 200, 40)):  # right, left prediction; truth
        assert (swatches == colour).all(axis=1).any(), colour


def test_evaluate_json_prints_one_line_per_dataset_and_no_bars(synthetic_data, tiny_weights, tmp_path):
    a, b = _copy(synthetic_data, tmp_path / "a"), _copy(synthetic_data, tmp_path / "b")
    r = CliRunner().invoke(main, ["evaluate", str(a), str(b), "--model", str(tiny_weights), "--device", "cpu",
                                  "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    scores = [line for line in lines if "IoU" in line]
    quality = [line for line in lines if "quality vs Dice" in line]
    assert [line.split()[0] for line in scores] == ["a", "b"] and len(lines) == 6
    assert [line.split()[0] for line in quality] == ["a", "b", "pooled"] and "{" not in r.stdout
    assert "baseline mean probability in the mask" in quality[2]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary) == {"a", "b", "pooled"}
    pooled = summary["pooled"]["quality"]
    assert pooled["n"] == summary["a"]["n"] + summary["b"]["n"]
    # an untrained tiny model may give every image the same quality: no ranking (NaN) then
    assert not pooled["spearman_quality"] < -1 and not pooled["spearman_quality"] > 1
    assert 0 <= pooled["mae_quality"] <= 1
    assert "\r" not in r.stderr


def test_export_reports_each_stage_on_stderr(tiny_weights, tmp_path):
    r = CliRunner().invoke(main, ["export", "--format", "torchscript", "--model", str(tiny_weights),
                                  "-o", str(tmp_path / "m.pt"), "--parity-size", "96x80", "--threshold", "0.5"])
    assert "tracing" in r.stderr and "parity check at 96x80" in r.stderr, r.output


def test_group_and_export_help():
    r = CliRunner().invoke(main, ["--help"])
    commands = r.output.split("Commands:")[1]
    assert "..." not in commands  # command descriptions are not cut short
    assert "check it against the eager model" in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["export", "--help"])
    assert "[torchscript|onnx|trt" in r.output and "--format TEXT" not in r.output


def test_license_file_is_declared_for_the_wheel_and_pytest_reports_skips():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0" and "LICENSE" in project["project"]["license-files"]
    assert "-rs" in project["tool"]["pytest"]["ini_options"]["addopts"].split()


def test_evaluate_threshold_scores_the_masks_cut_there(synthetic_data, tiny_weights, tiny_threshold, tmp_path):
    from lungseg.api import Segmenter
    from lungseg.data import find_samples, load_sample
    from lungseg.metrics import all_metrics

    seg = Segmenter(tiny_weights, device="cpu")
    samples = find_samples(synthetic_data, "test")
    scores = []
    for t in (tiny_threshold, 0.5):
        want = np.mean([all_metrics(seg.analyze(load_sample(s)[0], threshold=t).mask, load_sample(s)[1])["dice"]
                        for s in samples])
        got = evaluate([synthetic_data], "test", segmenter=seg, threshold=t)["synthetic"]
        assert got["threshold"] == t and got["dice_mean"] == pytest.approx(want)
        scores.append(want)
    assert scores[0] != pytest.approx(scores[1])  # the two cut-offs give different masks, so the check can fail
    r = CliRunner().invoke(main, ["evaluate", str(synthetic_data), "--model", str(tiny_weights), "--device", "cpu",
                                  "--threshold", str(tiny_threshold), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["synthetic"]["threshold"] == pytest.approx(tiny_threshold)
    r = CliRunner().invoke(main, ["evaluate", str(synthetic_data), "--threshold", "1.5"])
    assert r.exit_code == 2 and "threshold" in r.output
