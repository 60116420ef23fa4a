"""`lungseg segment` and `lungseg info`: outputs, report, bad files, safety of inputs, exit status."""

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_xray
from lungseg.cli import main


def _report(out):
    with open(out / "report.csv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    """Good X-rays (8-bit, 16-bit, a TIFF in a sub-folder), a truncated PNG, a text file, a README."""
    root = tmp_path / "xrays"
    (root / "sub").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / f"case{i}.png"), synthetic_xray(64, 56, seed=i)[0])
    cv2.imwrite(str(root / "wide16.png"), synthetic_xray(48, 80, seed=5, dtype=np.uint16)[0])
    cv2.imwrite(str(root / "sub" / "deep.tif"), synthetic_xray(60, 60, seed=6, dtype=np.uint16)[0])
    data = (root / "case0.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("this is a text file, not an X-ray\n")
    (root / "README.txt").write_text("ignored: not an image by name\n")
    return root


GOOD = {"case0.png": "case0.png", "case1.png": "case1.png", "wide16.png": "wide16.png", "sub/deep.tif": "sub/deep.png"}


def test_folder_with_good_and_bad_files(folder, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = _run("segment", folder, "-o", out, "--model", tiny_weights, "--batch-size", 3)
    assert result.exit_code == 1
    for src, dst in GOOD.items():
        mask = cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(folder / src), cv2.IMREAD_UNCHANGED)
        assert mask.shape == image.shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
    rows = _report(out)
    assert len(rows) == 6
    assert {r["status"] for f, r in rows.items() if not f.endswith(("truncated.png", "notes.png"))} == {"ok"}
    bad = {f: r for f, r in rows.items() if r["status"] == "failed"}
    assert sorted(p.split("/")[-1] for p in bad) == ["notes.png", "truncated.png"]
    for f, r in bad.items():
        assert f in r["error"] and r["error"] in result.output  # named, with the reason, on screen too
    assert "truncated" in rows[str(folder / "truncated.png")]["error"]
    assert "not an image" in rows[str(folder / "notes.png")]["error"]
    assert "4 of 6 images segmented" in result.output and "2 failed" in result.output
    assert "ignored 1 file" in result.output
    ok = rows[str(folder / "case0.png")]
    assert (int(ok["width"]), int(ok["height"])) == (56, 64)
    assert int(ok["total_px"]) == int(ok["right_px"]) + int(ok["left_px"])
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_all_good_exits_zero_labels_and_overlays(folder, tmp_path, tiny_weights):
    for bad in ("truncated.png", "notes.png"):
        (folder / bad).unlink()
    out = tmp_path / "out"
    result = _run("segment", folder, "-o", out, "--model", tiny_weights, "--labels", "--overlay", "--workers", 0)
    assert result.exit_code == 0, result.output
    for src, dst in GOOD.items():
        labels = cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(labels)) <= {0, 1, 2}
        overlay = cv2.imread(str(out / dst.replace(".png", "_overlay.png")), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == labels.shape + (3,)
    assert all(r["overlay"] for r in _report(out).values())


def test_batching_and_workers_do_not_change_the_masks(folder, tmp_path, tiny_weights):
    outs = []
    for i, opts in enumerate((["--batch-size", 1, "--workers", 0], ["--batch-size", 4, "--workers", 2])):
        outs.append(tmp_path / f"out{i}")
        _run("segment", folder, "-o", outs[-1], "--model", tiny_weights, *opts)
    for dst in GOOD.values():
        a, b = (cv2.imread(str(o / dst), cv2.IMREAD_UNCHANGED) for o in outs)
        assert np.array_equal(a, b), dst


def test_refuses_to_write_into_an_input_folder(folder, tiny_weights):
    result = _run("segment", folder, "-o", folder / "masks", "--model", tiny_weights)
    assert result.exit_code == 2 and "inside the input folder" in result.output
    assert not (folder / "masks").exists()
    result = _run("segment", folder / "case0.png", "-o", folder, "--model", tiny_weights)
    assert result.exit_code == 2 and "is the folder of the input" in result.output
    assert _run("segment", folder / "case0.png", "-o", folder / "masks", "--model", tiny_weights).exit_code == 0


def test_never_overwrites_an_input_even_when_allowed_into_its_folder(tmp_path, tiny_weights):
    image = synthetic_xray(40, 40)[0]
    cv2.imwrite(str(tmp_path / "x.png"), image)
    before = (tmp_path / "x.png").read_bytes()
    result = _run("segment", tmp_path / "x.png", "-o", tmp_path, "--model", tiny_weights, "--allow-input-folder")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").read_bytes() == before
    assert _report(tmp_path)[str(tmp_path / "x.png")]["mask"] == "x_png.png"
    assert cv2.imread(str(tmp_path / "x_png.png"), cv2.IMREAD_UNCHANGED).shape == image.shape


def test_same_names_from_two_folders_get_distinct_outputs(tmp_path, tiny_weights):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.png"), synthetic_xray(40, 40, seed=ord(d))[0])
    out = tmp_path / "out"
    assert _run("segment", tmp_path / "a", tmp_path / "b", "-o", out, "--model", tiny_weights).exit_code == 0
    masks = sorted(r["mask"] for r in _report(out).values())
    assert len(set(masks)) == 2 and all((out / m).is_file() for m in masks)


def test_dicom_input_reports_areas_in_mm2(tmp_path, tiny_weights):
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom

    (tmp_path / "in").mkdir()
    write_dicom(tmp_path / "in" / "IM0001", synthetic_xray(48, 40, dtype=np.uint16)[0] >> 4, bits_stored=12,
                PixelSpacing=[0.5, 0.5])
    out = tmp_path / "out"
    assert _run("segment", tmp_path / "in", "-o", out, "--model", tiny_weights).exit_code == 0
    row = next(iter(_report(out).values()))
    assert row["mask"] == "IM0001.png"
    assert float(row["total_mm2"]) == pytest.approx(int(row["total_px"]) * 0.25)


def test_exported_model_runs_through_the_same_command(folder, tmp_path, exported):
    pytest.importorskip("onnxruntime")
    import lungseg

    model = exported("onnx").path
    out = tmp_path / "out"
    assert _run("segment", folder, "-o", out, "--model", model, "--labels").exit_code == 1  # the two bad files
    seg = lungseg.load(model, device="cpu")
    for src, dst in GOOD.items():
        assert np.array_equal(cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED), seg.segment(folder / src, labels=True))


def test_no_images_is_an_error(tmp_path, tiny_weights):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    result = _run("segment", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_weights)
    assert result.exit_code == 2 and "no images or DICOM files found" in result.output


def test_python_dash_m_works_like_the_console_script(tmp_path, tiny_weights):
    cv2.imwrite(str(tmp_path / "x.png"), synthetic_xray(40, 40)[0])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lungseg", "segment", str(tmp_path / "x.png"), "-o", str(out),
                           "--model", str(tiny_weights)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "x.png").is_file() and (out / "report.csv").is_file()


def test_info_lists_versions_backends_and_weights(tmp_path, monkeypatch, tiny_weights):
    import shutil

    import torch

    import lungseg
    from lungseg import api
    from lungseg.checkpoint import sha256_file

    result = _run("info", "--json")
    assert result.exit_code == 0
    facts = json.loads(result.output)
    assert facts["lungseg"] == lungseg.__version__ and facts["torch"] == torch.__version__
    assert {"torch", "onnxruntime", "tensorrt"} <= set(facts["backends"]) and "dicom" in facts["extras"]
    pt = tmp_path / "default.pt"
    shutil.copy(tiny_weights, pt)
    (tmp_path / "default.json").write_text(json.dumps({"sha256": sha256_file(pt)}))
    monkeypatch.setattr(api, "DEFAULT_WEIGHTS", pt)
    monkeypatch.setattr(api, "DEFAULT_CARD", tmp_path / "default.json")
    text = _run("info").output
    assert sha256_file(pt) in text and "verified" in text and f"lungseg            {lungseg.__version__}" in text
