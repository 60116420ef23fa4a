import numpy as np
import torch
import torch.nn.functional as F

from lungseg.preprocess import Postprocess, Preprocess, resize_antialiased, resize_weights


def test_resize_weights_rows_sum_to_one():
    for n_in in (7, 64, 513):
        w = resize_weights(torch.tensor(n_in), 32)
        assert w.shape == (32, n_in)
        assert torch.allclose(w.sum(1), torch.ones(32))


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
