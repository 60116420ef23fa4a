"""OpenVINO backend: the exported ``.onnx`` file on OpenVINO's CPU plugin gives ONNX Runtime's outputs.

Tolerances: both runtimes compute the same float32 graph with different kernels (seen: 1.2e-7
apart in probability on the tiny model, 1.0e-5 on the shipped one), so probability and
quality must agree within PROB_TOL = 1e-4, the export parity check's tolerance; a mask pixel
may only differ where its probability lies within PROB_TOL of the threshold (rounding decides
it there), and then at most MAX_FLIPS pixels per call.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

import lungseg
from lungseg.errors import InputError, MissingExtraError, ModelError
from lungseg.runtime import RuntimeSegmenter, open_backend

from conftest import synthetic_xray

PROB_TOL = 1e-4
MAX_FLIPS = 5

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino cannot be imported (pip install lungseg[openvino])")


@pytest.fixture(scope="module")
def onnx_path(exported):
    pytest.importorskip("onnxruntime")
    return exported("onnx").path


@pytest.fixture(scope="module")
def pair(onnx_path):
    """(ONNX Runtime backend, OpenVINO backend) on the same tiny .onnx file, one thread each."""
    pytest.importorskip("openvino", exc_type=ImportError)
    return open_backend(onnx_path, "cpu", 1), open_backend(onnx_path, "cpu", 1, backend="openvino")


def _pixels(h, w, n=1, seed=0):
    return np.stack([synthetic_xray(h, w, seed=seed + i)[0] for i in range(n)])[:, None].astype(np.float32)


def _assert_same(ort_out, ov_out, threshold):
    (p1, m1, q1), (p2, m2, q2) = ort_out, ov_out
    assert p2.dtype == np.float32 and m2.dtype == np.uint8 and q2.dtype == np.float32
    assert p1.shape == p2.shape and m1.shape == m2.shape and q1.shape == q2.shape
    assert np.abs(p1 - p2).max() <= PROB_TOL
    np.testing.assert_allclose(q1, q2, atol=PROB_TOL, equal_nan=True)
    flips = m1 != m2
    assert flips.sum() <= MAX_FLIPS and np.all(np.abs(p1[flips] - threshold) <= PROB_TOL)


@needs_openvino
def test_same_outputs_as_onnxruntime_batches_and_sizes_in_one_model(pair):
    ort, ov = pair
    assert ov.name == "openvino" and ov.device == "cpu" and ov.threads == 1
    assert ov.metadata == ort.metadata
    assert ov.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(ov.compiled.get_property("INFERENCE_PRECISION_HINT")) == str(pytest.importorskip("openvino").Type.f32)
    threshold = ort.metadata["threshold"]
    masks = []
    for shape in [(2, 160, 128), (1, 96, 200), (2, 512, 512), (1, 160, 128)]:  # dynamic N, H and W
        n, h, w = shape
        pixels = _pixels(h, w, n, seed=h)
        got = ov(pixels)
        _assert_same(ort(pixels), got, threshold)
        masks.append(got[1])
    assert 0.05 < masks[0].mean() < 0.95  # the comparison means something: masks neither empty nor full
    sixteen = _pixels(96, 96, seed=9).astype(np.uint16) * 257  # 16-bit pixel values too
    _assert_same(ort(sixteen), ov(sixteen), threshold)


@needs_openvino
def test_load_with_backend_openvino(onnx_path, pair, tiny_threshold):
    seg = lungseg.load(onnx_path, device="cpu", threads=1, backend="OpenVINO")
    ref = lungseg.load(onnx_path, device="cpu", threads=1)
    assert isinstance(seg, RuntimeSegmenter) and seg.backend.name == "openvino" and ref.backend.name == "onnxruntime"
    assert "backend=openvino" in repr(seg) and seg.threshold == pytest.approx(tiny_threshold)
    images = [synthetic_xray(160, 128, seed=3)[0], synthetic_xray(96, 200, seed=4)[0]]
    for got, want in zip(seg.segment_many(images, batch_size=2), ref.segment_many(images, batch_size=2)):
        assert got.shape == want.shape and (got != want).sum() <= MAX_FLIPS
    a, b = seg.analyze(images[0]), ref.analyze(images[0])
    assert a.quality == pytest.approx(b.quality, abs=PROB_TOL) and a.flags == b.flags


@needs_openvino
@pytest.mark.parametrize("image, message", [
    (np.full((64, 64), np.nan, np.float32), "NaN or infinite"),
    (np.full((64, 64), 7, np.uint8), "constant image"),
    (np.zeros((1, 100), np.uint8), "at least 2 pixels per side"),
])
def test_bad_images_give_the_same_errors(onnx_path, pair, image, message):
    for backend in (None, "openvino"):
        with pytest.raises(InputError, match=message):
            lungseg.load(onnx_path, device="cpu", backend=backend).segment(image)


@needs_openvino
def test_bad_pixel_tensors_give_the_same_errors(pair):
    for backend in pair:
        for shape in [(1, 64, 64), (1, 3, 64, 64), (1, 1, 0, 5)]:
            with pytest.raises(InputError, match=r"tiny\.onnx: input pixels of shape .* \[N, 1, H, W\]"):
                backend(np.ones(shape, np.float32))
    empty = [b(np.ones((0, 1, 32, 40), np.float32)) for b in pair]  # an empty batch: empty outputs from both
    assert [[o.shape for o in out] for out in empty] == [[(0, 1, 32, 40), (0, 1, 32, 40), (0, 4)]] * 2


@needs_openvino
def test_cuda_is_refused(onnx_path):
    with pytest.raises(InputError, match="CUDA requested.*openvino backend runs on the CPU only"):
        lungseg.load(onnx_path, device="cuda", backend="openvino")


@needs_openvino
def test_files_that_are_not_lungseg_onnx_models(tmp_path, exported):
    from test_model_loading import _onnx_graph

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage that is not a protobuf" * 10)
    with pytest.raises(ModelError, match=r"bad\.onnx: not a loadable ONNX model"):
        lungseg.load(bad, backend="openvino")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(exported("onnx").path.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"cut\.onnx"):
        lungseg.load(cut, backend="openvino")
    from onnx import TensorProto

    with pytest.raises(ModelError, match=r"floatmask\.onnx: graph inputs .* are not lungseg's"):
        lungseg.load(_onnx_graph(tmp_path, exported, "floatmask.onnx", half=False, mask_type=TensorProto.FLOAT),
                     backend="openvino")
    half = lungseg.load(_onnx_graph(tmp_path, exported, "half.onnx", half=True), backend="openvino")
    with pytest.raises(ModelError, match=r"half\.onnx: output probability has shape \[1, 1, 256, 256\]"):
        half.segment(synthetic_xray(512, 512)[0])
    import onnx

    model = onnx.load(str(exported("onnx").path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "nometa.onnx"))
    with pytest.raises(ModelError, match=r"nometa\.onnx: no lungseg metadata"):
        lungseg.load(tmp_path / "nometa.onnx", backend="openvino")


def test_backend_that_does_not_fit_the_file(tmp_path, tiny_weights, onnx_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 128)
    with pytest.raises(InputError, match=r"tiny\.pt: a weights file runs with torch; backend='openvino'"):
        lungseg.load(tiny_weights, backend="openvino")
    with pytest.raises(InputError, match=r"m\.engine: a trt model runs with tensorrt, not backend='openvino'"):
        lungseg.load(engine, backend="openvino")
    with pytest.raises(InputError, match=r"backend 'tflite': unknown; choose one of .*onnxruntime.*openvino"):
        lungseg.load(onnx_path, backend="tflite")


def test_missing_openvino_names_the_extra(onnx_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[openvino\]"):
        lungseg.load(onnx_path, backend="openvino")
    from lungseg.benchmark.targets import LUNGSEG, Skip, Target, _requirements

    with pytest.raises(Skip, match=r"pip install lungseg\[openvino\]"):
        _requirements(Target(LUNGSEG, "openvino", "cpu"))


@needs_openvino
def test_benchmark_row_runs_the_onnx_rows_artifact(tmp_path, tiny_weights):
    from lungseg.benchmark.targets import FORMATS, LUNGSEG, Context, Skip, Target, _requirements, open_runner

    assert "openvino" in FORMATS
    with pytest.raises(Skip, match="CPU plugin only"):
        _requirements(Target(LUNGSEG, "openvino", "cuda"))
    ctx = Context(tmp_path, weights=str(tiny_weights), threads=1)
    ov = open_runner(Target(LUNGSEG, "openvino", "cpu"), ctx)
    ort = open_runner(Target(LUNGSEG, "onnx", "cpu"), ctx)
    assert ov.artifact == ort.artifact and ov.artifact[0].suffix == ".onnx" and ov.threads == 1
    image = synthetic_xray(128, 112, seed=2)[0]
    assert (ov.graph(image) != ort.graph(image)).sum() <= MAX_FLIPS
    assert [m.shape for m in ov.run_batch(np.stack([image, image]))] == [(128, 112)] * 2


@needs_openvino
def test_cli_segment_backend(tmp_path, onnx_path):
    import cv2
    from click.testing import CliRunner

    from lungseg.cli import main

    cv2.imwrite(str(tmp_path / "x.png"), synthetic_xray(64, 56)[0])
    out = {b: tmp_path / f"out-{b}" for b in ("onnxruntime", "openvino")}
    for backend, folder in out.items():
        result = CliRunner().invoke(main, ["segment", str(tmp_path / "x.png"), "-o", str(folder), "--model",
                                           str(onnx_path), "--backend", backend, "--device", "cpu"])
        assert result.exit_code == 0, result.output
    masks = [cv2.imread(str(folder / "x.png"), cv2.IMREAD_UNCHANGED) for folder in out.values()]
    assert (masks[0] != masks[1]).sum() <= MAX_FLIPS
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "x.png"), "-o", str(tmp_path / "o2"),
                                       "--backend", "openvino"])
    assert result.exit_code == 2 and "--backend openvino is for an exported .onnx --model" in result.output
