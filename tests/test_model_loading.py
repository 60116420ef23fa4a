"""Model files as an attacker would write them: off-schema configs and metadata, damaged or NaN
weights, exported models where weights are expected, unusable devices, graphs off the contract."""

from __future__ import annotations

import copy
import io
import json
import traceback
import zipfile

import numpy as np
import pytest
import torch

import lungseg
from lungseg.api import Segmenter, resolve_device
from lungseg.checkpoint import load_weights
from lungseg.errors import InputError, ModelError
from lungseg.export.metadata import METADATA_NAME, build_metadata, check_metadata, dumps
from lungseg.runtime.torchscript import read_extra_file

from conftest import synthetic_xray


def _weights(tiny_weights) -> dict:
    return torch.load(tiny_weights, map_location="cpu", weights_only=True)


def _save(obj, path):
    torch.save(obj, path)
    return path


# --- 1. one schema for weights, checkpoints and artifact metadata -----------------------------

BAD_CONFIG = [
    ("image_size", 100000), ("image_size", -5), ("image_size", 100), ("image_size", 0), ("image_size", True),
    ("image_size", "256"), ("image_size", 64.0), ("encoder", "resnet999"), ("encoder", None),
    ("attention", "transformer"), ("decoder_channels", [16, 16, 8, 8]), ("decoder_channels", [32, 16, 16, 8, 0]),
    ("decoder_channels", [100000, 16, 16, 8, 8]), ("decoder_channels", "wide"), ("in_channels", 3),
    ("in_channels", -1), ("extents", []), ("extents", ["visible", "visible"]), ("extents", ["sideways"]),
]


@pytest.mark.parametrize("field,value", BAD_CONFIG, ids=[f"{f}={v!r}" for f, v in BAD_CONFIG])
def test_weights_config_off_schema_is_refused_at_load(tmp_path, tiny_weights, field, value):
    obj = _weights(tiny_weights)
    obj["config"][field] = value
    path = _save(obj, tmp_path / "bad.pt")
    for load in (lambda: Segmenter(path, device="cpu"), lambda: lungseg.load(path, device="cpu")):
        with pytest.raises(ModelError, match=rf"bad\.pt: {field} = .* is invalid"):
            load()


def test_checkpoint_config_is_checked_too(tmp_path, tiny_weights):
    obj = _weights(tiny_weights)
    ck = {"model": obj["state_dict"], "epoch": 1, "config": {**obj["config"], "image_size": 100000}}
    with pytest.raises(ModelError, match=r"last\.pt: image_size = 100000"):
        load_weights(_save(ck, tmp_path / "last.pt"))
    with pytest.raises(ModelError, match=r"unknown key\(s\) colour"):
        load_weights(_save({**obj, "config": {**obj["config"], "colour": "red"}}, tmp_path / "w.pt"))
    with pytest.raises(ModelError, match="lacks image_size"):
        config = dict(obj["config"])
        del config["image_size"]
        load_weights(_save({**obj, "config": config}, tmp_path / "w.pt"))
    with pytest.raises(ModelError, match="version 2"):
        load_weights(_save({**obj, "version": 2}, tmp_path / "w.pt"))


def test_activation_budget():
    from lungseg.model_schema import check_model_config

    good = {"encoder": "resnet18", "attention": "sga", "decoder_channels": [256, 128, 64, 32, 16],
            "in_channels": 1, "image_size": 2048}
    assert check_model_config(good, "m.pt") is good
    with pytest.raises(ModelError, match=r"m\.pt: decoder_channels = .* invalid: stage 4 would need 512 x 1024"):
        check_model_config({**good, "decoder_channels": [512] * 5}, "m.pt")


def _meta() -> dict:
    config = {"encoder": "resnet18", "attention": "sga", "decoder_channels": [32, 16, 16, 8, 8], "in_channels": 1,
              "extents": ["visible", "full"], "image_size": 64}
    return build_metadata("onnx", config, "0" * 64, 0.4, opset=18)


def _set(meta: dict, dotted: str, value) -> dict:
    meta = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node = meta
    for p in parents:
        node = node[p]
    node[last] = value
    return meta


BAD_META = [
    ("image_size", 100000), ("image_size", -5), ("image_size", 33), ("image_size", False), ("threshold", 1.5),
    ("threshold", 0), ("threshold", float("nan")), ("threshold", "0.5"), ("threshold", True),
    ("extent", "sideways"), ("precision", "fp8"), ("format", "coreml"), ("opset", -1), ("weights_sha256", "abc"),
    ("inputs.pixels.dtype", "uint16"), ("inputs.pixels.shape", ["N", 3, "H", "W"]),
    ("inputs.pixels.shape", ["N", True, "H", "W"]), ("outputs.mask.dtype", "float32"),
    ("outputs.probability.shape", ["N", 1, 256, 256]), ("model.encoder", "vit"), ("model.decoder_channels", [8]),
    ("model.in_channels", 3), ("preprocessing.eps", -1), ("device", "tpu"),
]


@pytest.mark.parametrize("field,value", BAD_META, ids=[f"{f}={v!r}" for f, v in BAD_META])
def test_artifact_metadata_off_schema_is_refused(field, value):
    assert check_metadata(dumps(_meta()), "m.onnx")["image_size"] == 64
    text = json.dumps(_set(_meta(), field, value))
    with pytest.raises(ModelError, match=rf"m\.onnx: {field.replace('.', '[.]')} = .* is invalid"):
        check_metadata(text, "m.onnx")


def test_artifact_metadata_structure():
    meta = _meta()
    with pytest.raises(ModelError, match="schema True"):
        check_metadata(json.dumps({**meta, "schema_version": True}), "m.onnx")
    with pytest.raises(ModelError, match="unknown key"):
        check_metadata(json.dumps({**meta, "extra": 1}), "m.onnx")
    with pytest.raises(ModelError, match=r"inputs = .* must name exactly pixels"):
        check_metadata(json.dumps({**meta, "inputs": {"x": meta["inputs"]["pixels"]}}), "m.onnx")
    with pytest.raises(ModelError, match=r"outputs = .* must name exactly"):
        check_metadata(json.dumps({**meta, "outputs": {}}), "m.onnx")
    one = _set(meta, "model.extents", ["visible"])
    with pytest.raises(ModelError, match=r"extent = 'full' is invalid: the model has only visible"):
        check_metadata(json.dumps({**one, "extent": "full"}), "m.onnx")


def _onnx_with_metadata(src, dst, meta: dict):
    onnx = pytest.importorskip("onnx")
    from lungseg.export.onnx import set_metadata

    model = onnx.load(str(src))
    set_metadata(model, meta)
    onnx.save(model, str(dst))
    return dst


def _torchscript_with(module, dst, meta: dict):
    buf = io.BytesIO()
    torch.jit.save(module, buf, _extra_files={METADATA_NAME: dumps(meta)})
    dst.write_bytes(buf.getvalue())
    return dst


def test_exported_files_with_bad_metadata_do_not_load(tmp_path, exported):
    meta = exported("onnx").metadata
    bad = _onnx_with_metadata(exported("onnx").path, tmp_path / "huge.onnx", {**meta, "image_size": 100000})
    with pytest.raises(ModelError, match=r"huge\.onnx: image_size = 100000 is invalid"):
        lungseg.load(bad)
    ts = exported("torchscript")
    module = torch.jit.load(str(ts.path))
    bad = _torchscript_with(module, tmp_path / "t.torchscript", {**ts.metadata, "threshold": float("nan")})
    with pytest.raises(ModelError, match=r"t\.torchscript: threshold = nan is invalid"):
        lungseg.load(bad)


# --- 2. damaged and non-finite weights ---------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path, tiny_weights, value):
    obj = _weights(tiny_weights)
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point() and k.startswith("decoder"))
    obj["state_dict"][name] = obj["state_dict"][name].clone()
    obj["state_dict"][name].view(-1)[3] = value
    path = _save(obj, tmp_path / "nan.pt")
    with pytest.raises(ModelError, match=rf"nan\.pt: weight '{name}' holds 1 non-finite"):
        Segmenter(path, device="cpu")


def _flip_a_byte_inside_the_largest_entry(src, dst):
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        big = max(z.infolist(), key=lambda i: i.file_size)
    start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra)
    data[start + big.file_size // 2] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def test_byte_flipped_files_do_not_load(tmp_path, tiny_weights, exported):
    flipped = _flip_a_byte_inside_the_largest_entry(tiny_weights, tmp_path / "flip.pt")
    assert torch.load(flipped, weights_only=True)  # torch alone would take it
    with pytest.raises(ModelError, match=r"flip\.pt: damaged file: entry .* fails its CRC check"):
        Segmenter(flipped, device="cpu")
    ts = _flip_a_byte_inside_the_largest_entry(exported("torchscript").path, tmp_path / "flip.torchscript")
    with pytest.raises(ModelError, match=r"flip\.torchscript: damaged file"):
        lungseg.load(ts)


def test_non_finite_exported_weights_are_refused(tmp_path, exported):
    ts = exported("torchscript")
    module = torch.jit.load(str(ts.path))
    name, param = next((n, p) for n, p in module.named_parameters() if "decoder" in n)
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    bad = _torchscript_with(module, tmp_path / "nan.torchscript", ts.metadata)
    with pytest.raises(ModelError, match=rf"nan\.torchscript: weight '{name}' holds 1 non-finite"):
        lungseg.load(bad)

    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(str(exported("onnx").path))
    init = next(i for i in model.graph.initializer  # a weight of the segmentation network, not the quality head
                if numpy_helper.to_array(i).size > 100 and "quality" not in i.name)
    array = numpy_helper.to_array(init).copy()
    array.flat[0] = np.nan
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    seg = lungseg.load(tmp_path / "nan.onnx", device="cpu")
    with pytest.raises(ModelError, match=r"nan\.onnx: output probability is not finite"):
        seg.segment(synthetic_xray(96, 96)[0])


# --- 3. an exported model where weights are expected; no unsafe advice ----------------------------

def test_exported_model_given_as_weights_points_to_lungseg_load(tmp_path, exported):
    ts_as_pt = tmp_path / "archive.pt"
    ts_as_pt.write_bytes(exported("torchscript").path.read_bytes())
    for path, kind in ((exported("onnx").path, "onnx"), (ts_as_pt, "torchscript")):
        with pytest.raises(ModelError, match=rf"an exported {kind} model.*lungseg\.load\(path\)") as err:
            Segmenter(path, device="cpu")
        assert "weights_only" not in "".join(traceback.format_exception(err.value))


class _Unsafe:
    pass


def test_torch_errors_never_advise_unsafe_loading(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    unsafe = _save({"state_dict": _Unsafe()}, tmp_path / "unsafe.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(unsafe.read_bytes()[:200])
    for path in (garbage, unsafe, cut):
        with pytest.raises(ModelError, match=rf"{path.name}: not a loadable lungseg weights file") as err:
            Segmenter(path, device="cpu")
        text = "".join(traceback.format_exception(err.value))
        assert "weights_only" not in text and "arbitrary code" not in text


# --- 4. one device check -------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_device(no_cuda):
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("CPU") == torch.device("cpu")
    for bad in ("cuda", "cuda:1"):
        with pytest.raises(InputError, match="CUDA requested"):
            resolve_device(bad)
    with pytest.raises(InputError, match="not a device"):
        resolve_device("gpu please")
    with pytest.raises(InputError, match="runs on cpu or cuda"):
        resolve_device("meta")


def test_cuda_on_a_machine_without_it_is_an_input_error_everywhere(no_cuda, tmp_path, tiny_weights, exported,
                                                                   synthetic_data):
    with pytest.raises(InputError, match="CUDA requested"):
        Segmenter(tiny_weights, device="cuda")
    with pytest.raises(InputError, match="CUDA requested"):
        lungseg.load(tiny_weights, device="cuda:0")
    ts = exported("torchscript")
    cuda_ts = _torchscript_with(torch.jit.load(str(ts.path)), tmp_path / "cuda.torchscript",
                                {**ts.metadata, "device": "cuda"})
    with pytest.raises(InputError, match="CUDA requested"):
        lungseg.load(cuda_ts)

    from lungseg.train import TrainConfig, train

    with pytest.raises(InputError, match="CUDA requested"):
        train(TrainConfig(data=[str(synthetic_data)], out=str(tmp_path / "run"), device="cuda"))

    from click.testing import CliRunner
    from lungseg.cli import main

    import cv2

    cv2.imwrite(str(tmp_path / "x.png"), synthetic_xray(64, 64)[0])
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "x.png"), "-o", str(tmp_path / "out"),
                                       "--model", str(tiny_weights), "--device", "cuda"])
    assert result.exit_code == 2 and "CUDA requested" in result.output, result.output
    assert "AssertionError" not in result.output


# --- 5. graphs whose outputs break the contract ------------------------------------------------

class _OneOutput(torch.nn.Module):
    def forward(self, x):
        return torch.sigmoid(x * 0.0)


class _FourOutputs(torch.nn.Module):
    def forward(self, x):
        p = torch.sigmoid(x * 0.0)
        return p, (p > 0.5).to(torch.uint8), p, p


def _quality(x):
    return torch.zeros_like(x[:, 0, 0, :1]).expand(-1, 4)


class _HalfSize(torch.nn.Module):
    def forward(self, x):
        p = torch.sigmoid(x[:, :, ::2, ::2] * 0.0)
        return p, (p > 0.4).to(torch.uint8), _quality(x)


class _FloatMask(torch.nn.Module):
    def forward(self, x):
        p = torch.sigmoid(x * 0.0)
        return p, (p > 0.4).float(), _quality(x)


class _WideQuality(torch.nn.Module):
    def forward(self, x):
        p = torch.sigmoid(x * 0.0)
        return p, (p > 0.4).to(torch.uint8), p


@pytest.mark.parametrize("module,message", [
    (_OneOutput(), "the graph returns one Tensor"), (_FourOutputs(), "the graph returns 4 outputs"),
    (_HalfSize(), r"output probability has shape \[1, 1, 256, 256\] for an input of shape \[1, 1, 512, 512\]"),
    (_FloatMask(), "output mask is float32, not lungseg's uint8"),
    (_WideQuality(), r"output quality has shape \[1, 1, 512, 512\] for an input of shape \[1, 1, 512, 512\]"),
])
def test_torchscript_of_another_model_with_lungseg_metadata(tmp_path, exported, module, message):
    meta = json.loads(read_extra_file(exported("torchscript").path))
    path = _torchscript_with(torch.jit.script(module), tmp_path / "other.torchscript", meta)
    seg = lungseg.load(path)
    with pytest.raises(ModelError, match=rf"other\.torchscript: {message}"):
        seg.segment(synthetic_xray(512, 512)[0])


def _onnx_graph(tmp_path, exported, name: str, half: bool, mask_type=None):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    mask_type = TensorProto.UINT8 if mask_type is None else mask_type
    nodes = [helper.make_node("AveragePool", ["pixels"], ["small"], kernel_shape=[2, 2], strides=[2, 2])
             if half else helper.make_node("Identity", ["pixels"], ["small"]),
             helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
             helper.make_node("Mul", ["small", "zero"], ["z2"]),
             helper.make_node("Sigmoid", ["z2"], ["probability"]),
             helper.make_node("Constant", [], ["t"], value=helper.make_tensor("t0", TensorProto.FLOAT, [], [0.4])),
             helper.make_node("Greater", ["probability", "t"], ["above"]),
             helper.make_node("Cast", ["above"], ["mask"], to=mask_type),
             helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [2], [2, 3])),
             helper.make_node("ReduceMean", ["probability", "axes"], ["mean"], keepdims=0),
             helper.make_node("Constant", [], ["four"], value=helper.make_tensor("f", TensorProto.INT64, [2], [1, 4])),
             helper.make_node("Expand", ["mean", "four"], ["quality"])]
    dims = ["N", 1, "H", "W"]
    graph = helper.make_graph(nodes, "other", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("mask", mask_type, None),
                               helper.make_tensor_value_info("quality", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    from lungseg.export.onnx import set_metadata

    set_metadata(model, exported("onnx").metadata)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_onnx_of_another_model_with_lungseg_metadata(tmp_path, exported):
    seg = lungseg.load(_onnx_graph(tmp_path, exported, "half.onnx", half=True), device="cpu")
    with pytest.raises(ModelError, match=r"half\.onnx: output probability has shape \[1, 1, 256, 256\]"):
        seg.segment(synthetic_xray(512, 512)[0])
    from onnx import TensorProto

    with pytest.raises(ModelError, match=r"floatmask\.onnx: graph inputs .* are not lungseg's"):
        lungseg.load(_onnx_graph(tmp_path, exported, "floatmask.onnx", half=False, mask_type=TensorProto.FLOAT))
    same = lungseg.load(_onnx_graph(tmp_path, exported, "same.onnx", half=False), device="cpu")
    assert same.segment(synthetic_xray(64, 80)[0], postprocess=False).shape == (64, 80)
