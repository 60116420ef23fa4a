import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lungseg import preprocess
from lungseg.preprocess import Postprocess, Preprocess, resize_antialiased

# --- the reference: the dense resize the shipped weights were trained with ------------------------


def dense_weights(in_size: torch.Tensor, out_size: int) -> torch.Tensor:
    """Weights ``[out_size, in_size]`` of the antialiased linear resize along one axis (the former
    ``preprocess.resize_weights``, kept verbatim as the reference)."""
    in_f = in_size.to(torch.float32)
    scale = in_f / float(out_size)
    support = torch.clamp(scale, min=1.0)
    src = torch.arange(in_size, dtype=torch.float32)
    centre = (torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5
    dist = (centre[:, None] - src[None, :]).abs() / support
    w = torch.clamp(1.0 - dist, min=0.0)
    return w / w.sum(dim=1, keepdim=True)


def dense_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The former ``preprocess.resize_antialiased``: two dense products (~10.7 GFLOP at 4892x4020)."""
    wy = dense_weights(torch.tensor(x.shape[-2]), size[0])
    wx = dense_weights(torch.tensor(x.shape[-1]), size[1])
    return torch.matmul(wy, torch.matmul(x, wx.t()))


@pytest.fixture(params=["eager", "graph"])
def path(request, monkeypatch):
    """Run the resize as eager code (slices) or as the traced/exported graph computes it (gather)."""
    if request.param == "graph":
        monkeypatch.setattr(preprocess, "_graph_capture", lambda: True)
    return request.param


def _inputs(h: int, w: int, seed: int = 0):
    """Random 12-bit-like pixels and a smooth image, ``[2, 2, h, w]`` (batch and channels kept apart)."""
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(2, 2, h, w, generator=g) * 4095
    yy, xx = torch.linspace(0, 3, h)[:, None], torch.linspace(0, 5, w)[None, :]
    smooth = (2000 + 2000 * torch.sin(yy) * torch.cos(xx)) * torch.tensor([1.0, 0.5])[:, None, None, None]
    return rand, smooth.expand(2, 2, h, w).contiguous()


SHAPES = [(1000, 800), (37, 91), (300, 4000), (3, 5), (2, 2), (97, 1031), (512, 512), (256, 256), (255, 257)]
SIZES = [(256, 256), (64, 64), (37, 5), (300, 512), (17, 1000), (1, 1)]


def test_resize_matches_the_dense_reference(path):
    for h, w in SHAPES:
        for size in SIZES:
            for x in _inputs(h, w):
                ref, got = dense_resize(x, size), resize_antialiased(x, size)
                assert got.shape == ref.shape == (2, 2, *size)
                assert (got - ref).abs().max() <= 1e-5 * x.abs().max(), (path, h, w, size)


def test_resize_of_a_full_size_xray_matches_the_dense_reference(path):
    x = _inputs(4892, 4020)[0][:1, :1]
    ref, got = dense_resize(x, (256, 256)), resize_antialiased(x, (256, 256))
    assert (got - ref).abs().max() <= 1e-5 * 4095


def test_band_weights_are_the_dense_weights(path):
    # Resizing the identity along one axis yields the weight matrix itself: every tap of every
    # output lies inside its band, with the dense weight.
    for n in [*range(2, 40), 63, 64, 65, 127, 255, 256, 257, 511, 513, 1031, 1500]:
        eye = torch.eye(n)
        for s in (1, 3, 16, 17, 37, 64, 256, 300):
            ref = dense_weights(torch.tensor(n), s)
            rows = preprocess._resize_axis(eye, s, -2)
            cols = preprocess._resize_axis(eye, s, -1)
            assert (rows - ref).abs().max() <= 1e-6 and (cols.t() - ref).abs().max() <= 1e-6, (path, n, s)


def test_resize_rows_sum_to_one(path):
    for h, w in [(7, 64), (513, 32), (4, 300)]:
        out = resize_antialiased(torch.full((1, 1, h, w), 3.0), (32, 40))
        assert torch.allclose(out, torch.full_like(out, 3.0))


class _Resize(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, pixels):
        return resize_antialiased(pixels, self.size)


EXPORT_SHAPES = [(1, 1, 1000, 800), (3, 1, 37, 91), (1, 2, 300, 4000), (2, 1, 3, 5), (1, 1, 2, 2), (1, 1, 512, 512)]


def _example():
    example = torch.full((2, 1, 96, 80), 128.0)
    example[..., 20:60, 10:40] = 40.0
    return example


def test_torchscript_trace_has_dynamic_height_and_width():
    with torch.no_grad():
        traced = torch.jit.trace(_Resize((256, 37)).eval(), _example(), check_trace=False)
    for shape in EXPORT_SHAPES:
        x = torch.rand(shape) * 4095
        assert (traced(x) - dense_resize(x, (256, 37))).abs().max() <= 1e-5 * 4095, shape


def test_onnx_export_has_dynamic_height_and_width_and_tensorrt_ops():
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from lungseg.export.onnx import _quiet_exporter
    from lungseg.export.trt_ops import tensorrt_problems

    dims = {0: torch.export.Dim("N", min=1, max=1024), 2: torch.export.Dim("H", min=2, max=65536),
            3: torch.export.Dim("W", min=2, max=65536)}  # as lungseg.export.onnx declares them
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(_Resize((256, 37)).eval(), (_example(),), None, dynamo=True, verbose=False,
                                    input_names=["pixels"], opset_version=18, dynamic_shapes={"pixels": dims})
    model = program.model_proto
    onnx.checker.check_model(model, full_check=True)
    assert tensorrt_problems(model) == []
    assert {n.op_type for n in model.graph.node if n.op_type == "MatMul"} and not any(
        n.op_type in ("Resize", "Floor", "Ceil", "Mod", "Min", "Max", "CumSum") for n in model.graph.node)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for shape in EXPORT_SHAPES:
        shape = (shape[0], 1, *shape[2:])
        x = torch.rand(shape) * 4095
        got = torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0])
        assert (got - dense_resize(x, (256, 37))).abs().max() <= 1e-5 * 4095, shape


# --- the rest of the preprocessing ----------------------------------------------------------------


def test_downscale_matches_torch_antialias():
    x = torch.rand(1, 1, 200, 300)
    ours = resize_antialiased(x, (64, 64))
    ref = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    assert (ours - ref).abs().max() < 1e-4


def test_upscale_matches_bilinear():
    x = torch.rand(1, 1, 16, 20)
    ours = resize_antialiased(x, (64, 64))
    ref = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    assert (ours - ref).abs().max() < 1e-5


def test_bit_depth_and_linear_scaling_do_not_change_input():
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (300, 240)).astype(np.uint8)
    pre = Preprocess(64)
    a = pre(torch.from_numpy(img8)[None, None])
    b = pre(torch.from_numpy(img8.astype(np.uint16) * 257)[None, None])
    assert a.shape == (1, 1, 64, 64)
    assert (a - b).abs().max() < 1e-4
    assert abs(float(a.mean())) < 1e-4 and abs(float(a.std()) - 1) < 1e-2


def test_postprocess_returns_input_size():
    prob, mask = Postprocess(0.5)(torch.randn(2, 1, 16, 16), 50, 70)
    assert prob.shape == mask.shape == (2, 1, 50, 70) and mask.dtype == torch.uint8
    assert torch.equal(mask, (prob > 0.5).to(torch.uint8))


# --- standardisation at extreme intensity scales (issue 12) ---------------------------------------

def _former_standardize(x: torch.Tensor) -> torch.Tensor:
    """The standardisation the shipped weights were trained with, in float64 (no overflow there)."""
    x = x.to(torch.float64)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = torch.sqrt(((x - mean) ** 2).mean(dim=(-2, -1), keepdim=True) + 1e-6)
    return torch.clamp((x - mean) / std, -preprocess.CLIP, preprocess.CLIP).to(torch.float32)


def _xray(dtype):
    from conftest import synthetic_xray

    return torch.from_numpy(synthetic_xray(300, 240, dtype=dtype)[0].astype(np.int64))[None, None]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_network_input_of_ordinary_images_is_unchanged(dtype):
    x = _xray(dtype)
    resized = resize_antialiased(x.to(torch.float32), (64, 64))
    assert (Preprocess(64)(x) - _former_standardize(resized)).abs().max() < 1e-4


@pytest.mark.parametrize("scale", [1e-12, 1e-9, 1e-6, 1e-3, 1e3, 1e15, 1e20, 1e30])
def test_network_input_does_not_depend_on_the_intensity_scale(scale):
    x = _xray(np.uint8).to(torch.float64)
    ref = Preprocess(64)(x)
    got = Preprocess(64)(x * scale)  # Preprocess casts to float32 itself, as the exported graphs do
    assert torch.isfinite(got).all() and (got - ref).abs().max() < 1e-4


def test_all_zero_and_constant_images_give_finite_near_zero_input():
    assert torch.equal(Preprocess(16)(torch.zeros(1, 1, 300, 200)), torch.zeros(1, 1, 16, 16))
    for value in (1e-30, 7.0, 65535.0, 1e30, 3e38):
        x = Preprocess(64)(torch.full((1, 1, 333, 340), value))  # only the resize's rounding noise is left
        assert torch.isfinite(x).all() and x.abs().max() < 0.5, value


def _scaled_inputs():
    from conftest import synthetic_xray

    img = synthetic_xray(96, 80, seed=3)[0]
    cases = {f"float x{s:g}": img.astype(np.float64) * s for s in (1e-12, 1e-9, 1e-6, 1e-3, 1e6, 1e15, 1e20, 1e30,
                                                                   1e100, 1e300)}
    cases["float32 x1e30"] = img.astype(np.float32) * np.float32(1e30)
    cases["int64 x2^50"] = img.astype(np.int64) << 50
    cases["int64 x2^54"] = img.astype(np.int64) << 54
    cases["uint64 x2^55"] = img.astype(np.uint64) << np.uint64(55)
    cases["uint64 x2^56 rgb"] = np.dstack([img.astype(np.uint64) << np.uint64(56)] * 3)
    return img, cases


def test_mask_does_not_depend_on_the_intensity_scale(tiny_weights):
    from lungseg.api import Segmenter

    img, cases = _scaled_inputs()
    seg = Segmenter(tiny_weights, device="cpu")
    ref = seg.probability(img)
    threshold = float(np.median(ref))  # the untrained model: a threshold inside its range gives a real mask
    mask = seg.segment(img, threshold=threshold, postprocess=False)
    assert 0 < mask.mean() < 1
    certain = np.abs(ref - threshold) > 1e-4
    for name, arr in cases.items():
        prob = seg.probability(arr)
        assert np.abs(prob - ref).max() < 1e-4, name
        got = seg.segment(arr, threshold=threshold, postprocess=False)
        assert np.array_equal(got[certain], mask[certain]), name
