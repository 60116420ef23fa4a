"""int8 ONNX models made by ``lungseg.export.quantize.quantize_onnx`` from a tiny exported model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import lungseg  # noqa: E402
from lungseg.checkpoint import load_weights, save_weights  # noqa: E402
from lungseg.errors import InputError  # noqa: E402
from lungseg.export.parity import eager, synthetic_xray  # noqa: E402
from lungseg.export.quantize import network_nodes, quantize_onnx  # noqa: E402
from lungseg.metrics import dice_score  # noqa: E402
from lungseg.models import create_model  # noqa: E402
from lungseg.pipeline import SegmentationPipeline  # noqa: E402

SIZE = (80, 96)  # (width, height) of the synthetic test image, not square on purpose


@pytest.fixture(scope="module", params=[None, "sga"])
def tiny_onnx(request, tmp_path_factory):
    """A random-weight resnet18 UNet (without / with SGA attention) at 64 px, exported with lungseg.export."""
    torch.manual_seed(0)
    model = create_model("resnet18", request.param, decoder_channels=(32, 16, 16, 8, 8)).eval()
    folder = tmp_path_factory.mktemp(f"quant-{request.param}")
    weights = folder / "tiny.pt"
    save_weights(weights, model, image_size=64)
    # a threshold at the eager model's median probability, so that its mask is about half the image
    network, config = load_weights(weights)
    prob = eager(SegmentationPipeline(network, config["image_size"]), synthetic_xray(SIZE[1], SIZE[0])[None])[0]
    threshold = float(np.median(prob))
    result = lungseg.export(weights, "onnx", folder / "tiny.onnx", threshold=threshold, parity_sizes=(SIZE,))
    return result.path


def calibration(count: int = 6) -> list[np.ndarray]:
    """12-bit synthetic X-rays at varied sizes: the graph's own preprocessing resizes them."""
    return [synthetic_xray(90 + 7 * i, 70 + 11 * i, seed=i + 1) for i in range(count)]


@pytest.fixture(scope="module")
def int8_onnx(tiny_onnx):
    return quantize_onnx(tiny_onnx, tiny_onnx.with_name("tiny-int8.onnx"), calibration())


def test_int8_model_loads_and_follows_fp32(tiny_onnx, int8_onnx):
    fp32, int8 = lungseg.load(tiny_onnx, device="cpu"), lungseg.load(int8_onnx, device="cpu")
    image = synthetic_xray(SIZE[1], SIZE[0], seed=7)  # not one of the calibration images
    p32, p8 = fp32.probability(image), int8.probability(image)
    assert p8.shape == p32.shape == image.shape and p8.dtype == np.float32
    # A random network's probabilities span a narrow band (about 0.50-0.55), so compare their
    # pattern: the int8 map must follow the fp32 one (seen: r >= 0.9997; a broken quantization
    # gives r near 0), and the masks at the graph's threshold, about half the image each, must
    # agree (seen: Dice >= 0.989 over several seeds).
    r = np.corrcoef(p32.ravel(), p8.ravel())[0, 1]
    assert r >= 0.99, r
    m32, m8 = fp32.segment(image, postprocess=False), int8.segment(image, postprocess=False)
    assert 0.2 < m32.mean() < 0.8
    assert dice_score(m8, m32) >= 0.95
    # any size and batch still runs: the preprocessing stayed float and shape-agnostic
    prob, mask, _ = int8.backend(np.stack([synthetic_xray(37, 53, seed=s) for s in (1, 2)])[:, None].astype(np.float32))
    assert prob.shape == mask.shape == (2, 1, 37, 53) and mask.dtype == np.uint8


def test_int8_metadata(tiny_onnx, int8_onnx):
    meta32, meta8 = lungseg.load(tiny_onnx).metadata, lungseg.load(int8_onnx).metadata
    assert meta8["precision"] == "int8" and meta8["format"] == "onnx"
    q = meta8["quantization"]
    assert q["format"] == "qdq" and q["activations"] == "uint8" and q["weights"] == "int8"
    assert q["per_channel"] and q["reduce_range"] and q["calibration"] == "minmax" and q["calibration_images"] == 6
    assert q["excluded_groups"] == ["head"]
    same = {k: v for k, v in meta8.items() if k not in ("precision", "quantization", "opset")}
    assert same == {k: v for k, v in meta32.items() if k not in ("precision", "opset")}
    props = {p.key: p.value for p in onnx.load(str(int8_onnx)).metadata_props}
    assert props["precision"] == "int8" and json.loads(props["lungseg.json"])["precision"] == "int8"


def test_only_the_network_is_quantized(tiny_onnx, int8_onnx):
    fp32, int8 = onnx.load(str(tiny_onnx)), onnx.load(str(int8_onnx))
    network, _ = network_nodes(fp32)
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    net_in, net_out = convs[0].input[0], convs[-1].output[0]
    outside = [n for n in fp32.graph.node if n.name not in network]
    assert any(n.op_type == "MatMul" for n in outside)  # the preprocessing resize
    assert any(n.op_type == "Sigmoid" for n in outside)  # the postprocessing
    # every Conv but the head (kept float by default) takes int8 weights through a DequantizeLinear
    producer = {o: n for n in int8.graph.node for o in n.output}
    qconvs = [n for n in int8.graph.node if n.op_type == "Conv"]
    assert len(qconvs) == len(convs)
    assert [n.name for n in qconvs if n.input[1] not in producer] == [convs[-1].name]
    assert all(producer[n.input[1]].op_type == "DequantizeLinear" for n in qconvs[:-1])
    # pre- and postprocessing nodes are all still there, unchanged and in float: they read no
    # dequantized value (the float head gives float logits), and only the standardised image
    # (the network's input) is quantized
    by_name = {n.name: n for n in int8.graph.node}
    for node in outside:
        q = by_name[node.name]
        assert (q.op_type, list(q.input), list(q.output)) == (node.op_type, list(node.input), list(node.output))
    made_outside = {o for n in outside for o in n.output}
    quantized = {n.input[0] for n in int8.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized & made_outside == {net_in}


def test_network_groups_and_exclusion(tiny_onnx, tmp_path):
    model = onnx.load(str(tiny_onnx))
    network, groups = network_nodes(model)
    names = {n.name: n.op_type for n in model.graph.node}
    assert names[groups["stem"][0]] == names[groups["head"][0]] == "Conv"
    assert not any(names[n] == "MatMul" and n in network for n in names if "pixels" in
                   next(x for x in model.graph.node if x.name == n).input)
    meta = lungseg.load(tiny_onnx).metadata
    if meta["model"]["attention"] is None:
        assert groups["attention"] == []
        return
    assert {names[n] for n in groups["attention"]} >= {"MatMul", "Conv"}
    out = quantize_onnx(tiny_onnx, tmp_path / "ex.onnx", calibration(2), exclude=["stem", "attention"])
    qmodel = onnx.load(str(out))
    producer = {o: n for n in qmodel.graph.node for o in n.output}
    float_convs = {n.name for n in qmodel.graph.node if n.op_type == "Conv"
                   and producer.get(n.input[1]) is None}
    assert set(groups["stem"]) <= float_convs
    assert {n for n in groups["attention"] if names[n] == "Conv"} <= float_convs
    assert lungseg.load(out).metadata["quantization"]["excluded_groups"] == ["stem", "attention"]


def test_refuses_bad_inputs(tiny_onnx, int8_onnx, tmp_path):
    with pytest.raises(InputError, match="no calibration images"):
        quantize_onnx(tiny_onnx, tmp_path / "a.onnx", [])
    with pytest.raises(InputError, match="float32 ONNX model"):
        quantize_onnx(int8_onnx, tmp_path / "b.onnx", calibration(1))
    with pytest.raises(InputError, match="expected"):
        quantize_onnx(tiny_onnx, tmp_path / "c.onnx", [np.zeros((2, 3, 8, 8))])
    with pytest.raises(InputError, match="exclude 'decoder'"):
        quantize_onnx(tiny_onnx, tmp_path / "d.onnx", calibration(1), exclude=["decoder"])
    with pytest.raises(InputError, match=".onnx"):
        quantize_onnx(tiny_onnx, tmp_path / "e.engine", calibration(1))


def test_export_int8_writes_a_quantized_onnx_that_loads(tiny_weights, synthetic_data, tmp_path):
    out = tmp_path / "tiny-int8.onnx"
    result = lungseg.export(tiny_weights, "onnx", out, int8=True, calibration=(synthetic_data,), check=False)
    assert result.metadata["precision"] == "int8" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    seg = lungseg.load(out)
    assert seg.metadata["precision"] == "int8"
    img = np.full((80, 96), 120, np.uint8)
    img[20:60, 10:40] = 30
    assert seg.segment(img).shape == (80, 96)
    with pytest.raises(InputError, match="calibration"):
        lungseg.export(tiny_weights, "onnx", tmp_path / "x.onnx", int8=True)
    with pytest.raises(InputError, match="onnx format only"):
        lungseg.export(tiny_weights, "torchscript", tmp_path / "x.torchscript", int8=True, calibration=(synthetic_data,))
