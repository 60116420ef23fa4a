"""Export to TorchScript, ONNX and TensorRT: format table, graph contract, metadata, parity, errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lungseg
from lungseg.checkpoint import load_weights, sha256_file
from lungseg.cli import main
from lungseg.errors import InputError, MissingExtraError, ModelError
from lungseg.export.formats import FORMATS, get_format
from lungseg.export.parity import check_parity, compare, eager, parity_batches, real_images, synthetic_xray
from lungseg.pipeline import SegmentationPipeline
from lungseg.runtime import open_backend

from conftest import EXPORT_PARITY_SIZES, SHARED_DATA, needs_shared_data


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_weights, tiny_threshold):
    network, config = load_weights(tiny_weights)
    return SegmentationPipeline(network, config["image_size"], tiny_threshold).eval()


# --- the format table -------------------------------------------------------------------------

def test_format_table_and_aliases():
    assert [f.name for f in FORMATS] == ["torchscript", "onnx", "trt"]
    assert get_format("tensorrt").name == get_format("engine").name == get_format("TRT").name == "trt"
    trt = get_format("trt")
    assert trt.suffixes == (".engine",) and trt.needs_gpu and trt.extra == "trt"
    assert get_format("onnx").extra == "onnx" and not get_format("onnx").needs_gpu
    with pytest.raises(InputError, match="unknown export format 'openvino'.*torchscript, onnx, trt"):
        get_format("openvino")


# --- artifacts: parity, graph contract, metadata -----------------------------------------------

@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_passes_parity_on_nontrivial_masks(fmt, exported, tiny_pipeline):
    result = exported(fmt)
    assert result.path.is_file() and result.format == fmt
    assert [r["size"] for r in result.parity] == [f"{w}x{h}" for w, h in EXPORT_PARITY_SIZES]
    for row in result.parity:
        assert row["ok"] and row["batch"] == 2
        assert row["max_abs_prob_diff"] <= 1e-4 and row["dice"] >= 0.999
    # the Dice figures mean something: the eager masks at this threshold are neither empty nor full
    for _, pixels in parity_batches(None, EXPORT_PARITY_SIZES):
        mask = eager(tiny_pipeline, pixels)[1]
        assert 0.1 < mask.mean() < 0.9


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_dynamic_batch_height_and_width(fmt, exported, tiny_pipeline):
    backend = open_backend(exported(fmt).path, device="cpu")
    rng = np.random.default_rng(1)
    for shape in [(1, 37, 53), (3, 64, 64), (2, 300, 190), (1, 2, 2)]:
        pixels = rng.integers(0, 65535, shape).astype(np.uint16)
        ref_prob, ref_mask, ref_quality = eager(tiny_pipeline, pixels)
        prob, mask, quality = backend(pixels.astype(np.float32)[:, None])
        assert prob.shape == mask.shape == (shape[0], 1, *shape[1:])
        assert quality.shape == (shape[0], 4) and np.isfinite(quality).all()
        assert np.abs(quality - ref_quality).max() <= 2e-3
        assert prob.dtype == np.float32 and mask.dtype == np.uint8
        assert np.abs(prob[:, 0] - ref_prob).max() <= 1e-4
        assert (mask[:, 0] != ref_mask).mean() <= 1e-3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_metadata_round_trip(fmt, exported, tiny_weights, tiny_threshold):
    result = exported(fmt)
    meta = lungseg.load(result.path).metadata
    assert meta == json.loads(json.dumps(result.metadata))
    assert meta["producer"] == "lungseg" and meta["lungseg_version"] == lungseg.__version__
    assert meta["format"] == fmt and meta["precision"] == "fp32"
    assert meta["weights_sha256"] == sha256_file(tiny_weights)
    assert meta["image_size"] == 64 and meta["threshold"] == pytest.approx(tiny_threshold)
    assert meta["inputs"] == {"pixels": {"dtype": "float32", "shape": ["N", 1, "H", "W"]}}
    assert meta["outputs"]["mask"]["dtype"] == "uint8" and meta["outputs"]["probability"]["dtype"] == "float32"
    assert meta["opset"] == (18 if fmt == "onnx" else None)
    assert meta["model"]["encoder"] == "resnet18"


def test_onnx_graph_contract_and_tensorrt_ops(exported):
    onnx = pytest.importorskip("onnx")
    from lungseg.export.trt_ops import tensorrt_problems

    model = onnx.load(str(exported("onnx").path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]

    def io(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values}

    assert io(model.graph.input) == {"pixels": (onnx.TensorProto.FLOAT, ["N", 1, "H", "W"])}
    assert io(model.graph.output) == {"probability": (onnx.TensorProto.FLOAT, ["N", 1, "H", "W"]),
                                      "mask": (onnx.TensorProto.UINT8, ["N", 1, "H", "W"]),
                                      "quality": (onnx.TensorProto.FLOAT, ["N", 4])}
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["lungseg.json"])["image_size"] == 64
    assert props["image_size"] == "64" and props["precision"] == "fp32" and props["opset"] == "18"
    assert tensorrt_problems(model) == []
    modes = {(a["mode"], a["coordinate_transformation_mode"], a.get("antialias", 0))
             for a in ({x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
                       for n in model.graph.node if n.op_type == "Resize")}
    assert {(m.decode(), c.decode(), aa) for m, c, aa in modes} <= {("linear", "half_pixel", 0),
                                                                    ("nearest", "asymmetric", 0)}


def test_tensorrt_check_flags_what_the_parser_rejects():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from lungseg.export.trt_ops import tensorrt_problems

    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, 8, 8])
    nodes = [helper.make_node("Resize", ["pixels", "", "", "sizes"], ["r"], mode="linear", antialias=1),
             helper.make_node("Resize", ["r", "", "", "sizes"], ["c"], mode="cubic"),
             helper.make_node("Cast", ["c"], ["d"], to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["d"], ["mask"], to=TensorProto.UINT8),
             helper.make_node("Det", ["c"], ["det"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("mask", TensorProto.UINT8, None)], [sizes])
    problems = tensorrt_problems(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    text = "\n".join(problems)
    assert "antialias=1" in text and "mode 'cubic'" in text and "element type 11" in text and "Det node" in text
    assert len(problems) == 4


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_parity_at_detector_size(fmt, exported, tiny_pipeline):
    rows = check_parity(tiny_pipeline, open_backend(exported(fmt).path, "cpu"), sizes=((4020, 4892),))
    assert rows[0]["size"] == "4020x4892" and rows[0]["ok"], rows


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_shipped_weights_export_with_default_check(fmt, tmp_path):
    from lungseg.api import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"shipped weights not installed at {DEFAULT_WEIGHTS}")
    folder = SHARED_DATA / "montgomery"
    images = real_images([folder]) if (folder / "images").is_dir() else None  # else synthetic X-rays
    result = lungseg.export(None, fmt, tmp_path / f"lung{get_format(fmt).suffixes[0]}", parity_images=images)
    assert [r["size"] for r in result.parity] == ["512x512", "1000x800", "4020x4892"]
    assert all(r["ok"] for r in result.parity), result.parity
    assert result.metadata["image_size"] == 256


def test_parity_on_real_xrays(exported, tiny_pipeline):
    images = real_images([needs_shared_data("montgomery")], count=2)
    assert len(images) == 2 and images[0].shape == (512, 512)
    rows = check_parity(tiny_pipeline, open_backend(exported("onnx").path, "cpu"), images=images,
                        sizes=EXPORT_PARITY_SIZES)
    assert all(r["ok"] for r in rows), rows


# --- the parity judge --------------------------------------------------------------------------

def test_parity_judge_fails_on_differences(tiny_pipeline):
    pixels = np.stack([synthetic_xray(96, 80, seed=i) for i in range(2)])

    def exact(x):
        prob, mask, quality = eager(tiny_pipeline, x[:, 0])
        return prob[:, None], mask[:, None], quality

    def shifted(x):
        prob, mask, quality = exact(x)
        return prob + 2e-4, mask, quality

    def flipped(x):
        prob, mask, quality = exact(x)
        mask = mask.copy()
        mask[:, :, :20] = 1 - mask[:, :, :20]
        return prob, mask, quality

    def other_quality(x):
        prob, mask, quality = exact(x)
        return prob, mask, quality + 0.01

    assert compare(tiny_pipeline, exact, pixels).ok
    assert not compare(tiny_pipeline, other_quality, pixels).ok  # the quality output is compared too
    assert not compare(tiny_pipeline, shifted, pixels).ok
    assert compare(tiny_pipeline, shifted, pixels, precision="fp16").ok  # fp16: Dice only
    case = compare(tiny_pipeline, flipped, pixels, precision="fp16")
    assert not case.ok and case.dice < 0.995
    assert not compare(tiny_pipeline, lambda x: (exact(x)[0], exact(x)[1].astype(np.int64), exact(x)[2]),
                       pixels).ok  # dtype


# --- errors ------------------------------------------------------------------------------------

def test_bad_output_paths_fail_before_any_work(tmp_path, tiny_weights):
    (tmp_path / "file").write_text("x")
    cases = [(tmp_path / "m.engine", "onnx", "onnx files end in .onnx"),
             (tmp_path / "m.onnx", "torchscript", "end in .torchscript or .pt"),
             (tmp_path / "dir.onnx", "onnx", "is a folder"),
             (tmp_path / "file" / "m.onnx", "onnx", "is a file, not a folder")]
    (tmp_path / "dir.onnx").mkdir()
    for out, fmt, message in cases:
        with pytest.raises(InputError, match=message):
            lungseg.export(tiny_weights, fmt, out)
    with pytest.raises(InputError, match="fp16 is offered for the trt format only"):
        lungseg.export(tiny_weights, "onnx", tmp_path / "m.onnx", fp16=True)
    with pytest.raises(InputError, match="unknown export option"):
        lungseg.export(tiny_weights, "onnx", tmp_path / "m.onnx", fp61=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.onnx", "file"]


def test_missing_extras_name_the_install(tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if not installed, even where it is
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[trt\].*NVIDIA GPU"):
        lungseg.export(tiny_weights, "tensorrt", tmp_path / "m.engine")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[onnx\]"):
        lungseg.export(tiny_weights, "onnx", tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_that_fails_parity_is_deleted(tmp_path, tiny_weights, monkeypatch):
    import lungseg.export.parity as parity

    bad = [{"size": "512x512", "batch": 2, "max_abs_prob_diff": 0.3, "dice": 0.5, "ok": False}]
    monkeypatch.setattr(parity, "check_parity", lambda *a, **k: bad)
    with pytest.raises(ModelError, match="differs from the eager model, so it was deleted"):
        lungseg.export(tiny_weights, "torchscript", tmp_path / "m.torchscript")
    assert list(tmp_path.iterdir()) == []


def test_opset_below_18_is_refused(tmp_path, tiny_weights):
    with pytest.raises(InputError, match="opset 17"):
        lungseg.export(tiny_weights, "onnx", tmp_path / "m.onnx", opset=17)


def test_bad_weights_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(ModelError, match="bad.pt"):
        lungseg.export(bad, "torchscript", tmp_path / "m.torchscript")


# --- the command line --------------------------------------------------------------------------

def test_cli_export_torchscript_as_pt(tmp_path, tiny_weights, tiny_threshold):
    out = tmp_path / "model.pt"
    args = ["export", "--format", "torchscript", "--model", str(tiny_weights), "-o", str(out),
            "--threshold", str(tiny_threshold), "--parity-size", "300x200"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "parity   300x200 batch 2" in result.output
    seg = lungseg.load(out)  # a TorchScript archive, told from a weights file by its content
    assert seg.backend.name == "torchscript"


def test_cli_export_errors(tmp_path, tiny_weights):
    runner = CliRunner()
    r = runner.invoke(main, ["export", "--format", "coreml", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "unknown export format 'coreml'" in r.output
    r = runner.invoke(main, ["export", "--format", "onnx", "--model", str(tiny_weights), "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 2 and "onnx files end in .onnx" in r.output
    r = runner.invoke(main, ["export", "--format", "onnx", "--opset", "17", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "17" in r.output


# --- GPU ---------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (torch sees no CUDA)")


@pytest.mark.cuda
@needs_cuda
def test_torchscript_traced_on_cuda(tmp_path, tiny_weights, tiny_threshold):
    result = lungseg.export(tiny_weights, "torchscript", tmp_path / "m.torchscript", device="cuda",
                            threshold=tiny_threshold, parity_sizes=EXPORT_PARITY_SIZES)
    assert result.metadata["device"] == "cuda" and all(r["ok"] for r in result.parity)
    assert lungseg.load(result.path).device.type == "cuda"


@pytest.mark.trt
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine(tmp_path, tiny_weights, tiny_threshold, fp16):
    pytest.importorskip("tensorrt", exc_type=ImportError)
    out = tmp_path / "m.engine"
    result = lungseg.export(tiny_weights, "trt", out, fp16=fp16, threshold=tiny_threshold,
                            max_shape=(2, 1, 5000, 5000))
    assert [r["size"] for r in result.parity] == ["512x512", "1000x800", "4020x4892"]
    assert all(r["ok"] for r in result.parity), result.parity
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert sidecar["precision"] == ("fp16" if fp16 else "fp32") and sidecar["profile"]["max"] == [2, 1, 5000, 5000]
    seg = lungseg.load(out)
    assert seg.segment(synthetic_xray(700, 600)).shape == (700, 600)
    with pytest.raises(InputError, match="optimization profile"):
        seg.backend(np.zeros((3, 1, 64, 64), np.float32))


# --- the TensorRT builder, against a stand-in for the tensorrt module ------------------------------
# TensorRT cannot be installed here: this checks lungseg's side of onnx2engine (profile, flags,
# fp32 pinning of the preprocessing, sidecar) with a minimal fake of TensorRT 10's Python API.

class _FakeTensorRT:
    __version__ = "10.9.0"
    float32, float16, int32, int64, uint8, bool = "float32", "float16", "int32", "int64", "uint8", "bool"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class BuilderFlag:
        FP16, TF32, OBEY_PRECISION_CONSTRAINTS = "FP16", "TF32", "OBEY_PRECISION_CONSTRAINTS"

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    def __init__(self):
        fake = self

        class Layer:
            def __init__(self, name, in_types, out_types):
                self.name, self.metadata, self.precision = name, "", None
                self.inputs = [type("T", (), {"dtype": d})() for d in in_types]
                self.outputs = [type("T", (), {"dtype": d})() for d in out_types]
                self.num_inputs, self.num_outputs, self.output_types = len(in_types), len(out_types), {}

            def get_input(self, k):
                return self.inputs[k]

            def get_output(self, j):
                return self.outputs[j]

            def set_output_type(self, j, dtype):
                self.output_types[j] = dtype

        class Network:
            layers = []

            @property
            def num_layers(self):
                return len(self.layers)

            def get_layer(self, i):
                return self.layers[i]

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                import onnx

                from lungseg.export.trt_ops import _element_types

                model = onnx.load(path)
                types = _element_types(model)
                constants = {i.name for i in model.graph.initializer}  # become layer parameters in TensorRT

                def dtypes(names):
                    kept = [v for v in names if v and v not in constants]
                    return [fake.float32 if types.get(v) == 1 else fake.int64 for v in kept]

                self.network.layers = [Layer(n.name, dtypes(n.input), dtypes(n.output)) for n in model.graph.node]
                return True

        class Config:
            def __init__(self):
                self.flags = {fake.BuilderFlag.TF32}
                self.profiles = []

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

        class Profile:
            def set_shape(self, name, *shapes):
                self.name, self.shapes = name, shapes

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                fake.network = Network()
                return fake.network

            def create_builder_config(self):
                fake.config = Config()
                return fake.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"fake engine"

        self.Builder, self.OnnxParser = Builder, Parser


def ops_of(result) -> dict:
    return {n.name: n.op_type for n in pytest.importorskip("onnx").load(str(result.path)).graph.node}


@pytest.mark.parametrize("fp16", [False, True])
def test_onnx2engine_against_a_tensorrt_stand_in(fp16, exported, tmp_path, monkeypatch):
    from lungseg.export.tensorrt import onnx2engine

    onnx_result = exported("onnx")  # before tensorrt is faked: torch's exporter looks for it
    fake = _FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    meta = onnx2engine(onnx_result.path, tmp_path / "m.engine", fp16=fp16,
                       min_shape=(1, 1, 32, 32), opt_shape=(1, 1, 512, 512), max_shape=(2, 1, 5000, 5000))
    assert (tmp_path / "m.engine").read_bytes() == b"fake engine"
    sidecar = json.loads((tmp_path / "m.engine.json").read_text())
    assert sidecar == meta and meta["format"] == "trt" and meta["precision"] == ("fp16" if fp16 else "fp32")
    assert meta["profile"] == {"min": [1, 1, 32, 32], "opt": [1, 1, 512, 512], "max": [2, 1, 5000, 5000]}
    assert meta["tensorrt_version"] == "10.9.0" and meta["weights_sha256"] == onnx_result.metadata["weights_sha256"]
    profile, = fake.config.profiles
    assert profile.name == "pixels" and profile.shapes[2] == (2, 1, 5000, 5000)
    pinned = {layer.name for layer in fake.network.layers if layer.precision == "float32"}
    kept = {layer.name for layer in fake.network.layers if "float32" in layer.output_types.values()}
    if not fp16:
        assert "TF32" not in fake.config.flags and not pinned and not kept
        return
    ops = ops_of(onnx_result)
    assert pinned < kept and "Range" in {ops[name] for name in kept}  # the resize weights stay float32
    # int -> float casts and the resize's band gathers: data movement, float32 by output type only
    assert {ops[name] for name in kept - pinned} == {"Cast", "Gather", "Reshape"}
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= fake.config.flags
    assert sum(ops[name] == "MatMul" for name in pinned) == 2  # the antialiased resize
    assert {"ReduceMean", "Sqrt", "Clip"} <= {ops[name] for name in pinned}  # the standardisation
    assert not any(ops[name] in ("Conv", "Sigmoid", "Resize") for name in pinned)


def test_bad_tensorrt_profile_fails_early(tmp_path, tiny_weights):
    with pytest.raises(InputError, match="optimization profile"):
        lungseg.export(tiny_weights, "trt", tmp_path / "m.engine", min_shape=(1, 1, 600, 600),
                       opt_shape=(1, 1, 512, 512))
