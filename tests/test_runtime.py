"""``lungseg.load``: one segment/segment_many API over weights, TorchScript, ONNX and TensorRT files."""

from __future__ import annotations

import io
import shutil
import sys
import zipfile

import numpy as np
import pytest
import torch

import lungseg
from lungseg.api import BaseSegmenter, Segmenter
from lungseg.errors import InputError, MissingExtraError, ModelError
from lungseg.metrics import dice_score
from lungseg.runtime import RuntimeSegmenter, model_kind

from conftest import synthetic_xray


@pytest.fixture(scope="module")
def eager(tiny_weights, tiny_threshold):
    return Segmenter(tiny_weights, device="cpu", threshold=tiny_threshold)


def test_kind_is_told_by_suffix_and_content(tmp_path, exported, tiny_weights):
    ts = exported("torchscript").path
    as_pt = tmp_path / "archive.pt"
    shutil.copy(ts, as_pt)
    assert model_kind(tiny_weights) == "weights"
    assert model_kind(as_pt) == "torchscript"
    assert model_kind(ts) == "torchscript"
    assert model_kind(exported("onnx").path) == "onnx"
    assert isinstance(lungseg.load(tiny_weights, device="cpu"), Segmenter)
    loaded = lungseg.load(as_pt)
    assert isinstance(loaded, RuntimeSegmenter) and isinstance(loaded, BaseSegmenter)
    assert loaded.backend.name == "torchscript"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_same_api_and_masks_as_segmenter(fmt, exported, eager):
    seg = lungseg.load(exported(fmt).path, device="cpu")
    assert seg.threshold == pytest.approx(eager.threshold) and seg.config["image_size"] == 64
    image, _ = synthetic_xray(160, 128, seed=3)
    a, b = seg.segment(image, postprocess=False), eager.segment(image, postprocess=False)
    assert a.dtype == np.uint8 and a.shape == (160, 128)
    assert 0.05 < b.mean() < 0.95 and dice_score(a, b) >= 0.999
    assert np.abs(seg.probability(image) - eager.probability(image)).max() <= 1e-4
    assert dice_score(seg.segment(image), eager.segment(image)) >= 0.999  # with host clean-up
    labels = seg.segment(image, labels=True)
    assert set(np.unique(labels)) <= {0, 1, 2}
    high = seg.segment(image, threshold=eager.threshold + 0.01, postprocess=False)
    assert high.sum() < a.sum()  # re-thresholded on the host
    images = [image, synthetic_xray(96, 200, seed=4)[0], synthetic_xray(160, 128, seed=5)[0].astype(np.uint16) * 257]
    many = seg.segment_many(images, batch_size=2, postprocess=False)
    assert [m.shape for m in many] == [(160, 128), (96, 200), (160, 128)]
    for got, want in zip(many, eager.segment_many(images, batch_size=2, postprocess=False)):
        assert dice_score(got, want) >= 0.999


def test_threshold_given_at_load_overrides_the_graph(exported, tiny_threshold):
    image, _ = synthetic_xray(128, 128, seed=6)
    base = lungseg.load(exported("onnx").path, postprocess=False)
    high = lungseg.load(exported("onnx").path, threshold=tiny_threshold + 0.01, postprocess=False)
    prob = base.probability(image)
    assert np.array_equal(high.segment(image), (prob > tiny_threshold + 0.01).astype(np.uint8))


# --- files that are not lungseg models ----------------------------------------------------------

def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        lungseg.load(tmp_path / "nothing.onnx")
    other = tmp_path / "model.bin"
    other.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="unknown model file type '.bin'"):
        lungseg.load(other)


def test_corrupt_onnx(tmp_path, exported):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage that is not a protobuf" * 10)
    with pytest.raises(ModelError, match="bad.onnx: not a loadable ONNX model"):
        lungseg.load(bad)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(exported("onnx").path.read_bytes()[:5000])
    with pytest.raises(ModelError, match="cut.onnx"):
        lungseg.load(cut)


def test_foreign_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ModelError, match="no lungseg metadata"):
        lungseg.load(path)


def test_corrupt_and_foreign_torch_files(tmp_path, exported):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="bad.pt"):
        lungseg.load(bad)
    not_ts = tmp_path / "notes.torchscript"
    with zipfile.ZipFile(not_ts, "w") as z:
        z.writestr("notes/readme.txt", "hello")
    with pytest.raises(ModelError, match="not a TorchScript archive"):
        lungseg.load(not_ts)
    foreign = tmp_path / "foreign.pt"
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), buf)
    foreign.write_bytes(buf.getvalue())
    with pytest.raises(ModelError, match="no lungseg metadata"):
        lungseg.load(foreign)
    cut = tmp_path / "cut.torchscript"
    data = exported("torchscript").path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.torchscript"):
        lungseg.load(cut)


def test_torchscript_runs_only_where_traced(exported):
    with pytest.raises(ModelError, match="traced on cpu.*--device cuda"):
        lungseg.load(exported("torchscript").path, device="cuda")


def test_onnx_on_cuda_without_provider(exported):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(InputError, match="CUDA requested.*onnxruntime-gpu"):
        lungseg.load(exported("onnx").path, device="cuda")


def test_missing_runtime_extras(tmp_path, exported, monkeypatch):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 128)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[trt\].*NVIDIA GPU"):
        lungseg.load(engine)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[onnx\]"):
        lungseg.load(exported("onnx").path)


@pytest.mark.trt
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (torch sees no CUDA)")
def test_corrupt_engine_and_missing_sidecar(tmp_path):
    pytest.importorskip("tensorrt", exc_type=ImportError)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 128)
    with pytest.raises(ModelError, match="no lungseg metadata"):
        lungseg.load(engine)
    from lungseg.export.metadata import build_metadata, dumps

    meta = build_metadata("trt", {"image_size": 256}, "0" * 64, 0.5)
    del meta["model"]
    (tmp_path / "m.engine.json").write_text(dumps(meta))
    with pytest.raises(ModelError, match="TensorRT cannot load this engine"):
        lungseg.load(engine)


def test_batches_larger_than_the_backend_allows_are_split(exported):
    from lungseg.runtime import open_backend

    inner = open_backend(exported("onnx").path, "cpu")
    calls = []

    class OneAtATime:  # like a TensorRT engine whose profile allows N <= 1
        name, path, metadata, device, max_batch = "fake", inner.path, inner.metadata, "cpu", 1

        def __call__(self, pixels):
            calls.append(len(pixels))
            return inner(pixels)

    images = [synthetic_xray(64, 80, seed=i)[0] for i in range(3)]
    masks = RuntimeSegmenter(OneAtATime(), postprocess=False).segment_many(images, batch_size=4)
    assert calls == [1, 1, 1]
    whole = RuntimeSegmenter(inner, postprocess=False).segment_many(images)
    assert all(np.array_equal(m, w) for m, w in zip(masks, whole))
