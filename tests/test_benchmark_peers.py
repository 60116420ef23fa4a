"""Peer replicas for the speed benchmark: pipeline contract, structure, sizes, FLOPs, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lungseg.benchmark.peers import (LUNGSEG, PEERS, AdaptiveAvgPool, PeerPipeline, PSPNet, build_pipeline,
                                     dilated_resnet, flops, parameter_count)
from lungseg.pipeline import SegmentationPipeline

ALL = {**PEERS, **LUNGSEG}
SMALL = 32  # network side in the tests (a multiple of 32): the real sizes are slow on two cores


@pytest.fixture(scope="module")
def pipelines():
    """``pipelines(name)`` -> that peer's deploy module at 32 px, built once per module."""
    done = {}

    def get(name):
        if name not in done:
            done[name] = build_pipeline(ALL[name], size=SMALL)
        return done[name]

    return get


def raw_pixels(n: int = 1, h: int = 70, w: int = 90, seed: int = 0) -> torch.Tensor:
    """uint16-valued raw pixels as float32, the deploy module's input."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 65536, (n, 1, h, w), generator=g).to(torch.float32)


def test_registry():
    assert set(PEERS) == {"plain_unet", "resnet34_unet_512", "pspnet_512"}
    assert set(LUNGSEG) == {"lungseg_sga", "lungseg_no_attention"}
    assert [(p.size, p.in_channels) for p in PEERS.values()] == [(256, 1), (512, 3), (512, 3)]
    assert all(name == p.name and p.description for name, p in ALL.items())


@pytest.mark.parametrize("name", list(ALL))
def test_pipeline_contract(name, pipelines):
    """Raw 70x90 pixels -> probability float32 and mask uint8 at 70x90 (networks at 32 px to stay fast)."""
    pipe = pipelines(name)
    assert isinstance(pipe, SegmentationPipeline) and not pipe.training
    assert pipe.preprocess.size == SMALL
    with torch.no_grad():
        prob, mask, quality = pipe(raw_pixels())
    assert prob.shape == mask.shape == (1, 1, 70, 90)
    assert quality.shape == (1, 4) and torch.isnan(quality).all()  # peers have no quality head
    assert prob.dtype == torch.float32 and mask.dtype == torch.uint8
    assert torch.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
    assert set(mask.unique().tolist()) <= {0, 1}
    assert torch.equal(mask, (prob > 0.5).to(torch.uint8))


def test_build_pipeline_defaults_and_seed():
    peer = PEERS["resnet34_unet_512"]
    state = torch.random.get_rng_state()
    a, b, c = build_pipeline(peer), build_pipeline(peer, seed=0), build_pipeline(peer, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    assert a.preprocess.size == 512 and a.in_channels == 3 and a.network.encoder.conv1.in_channels == 3
    w = "network.encoder.conv1.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_peer_pipeline_feeds_rgb_and_takes_channel_0():
    """Grey input repeated to the peer's channels; the first output channel is the lung logit."""

    class Probe(nn.Module):
        def forward(self, x):
            self.seen = x
            return torch.cat([x[:, :1], x[:, :1] + 100.0], dim=1)

    probe = Probe()
    pipe = PeerPipeline(probe, size=32, in_channels=3).eval()
    pixels = raw_pixels(2, 40, 50)
    logits = pipe.logits(pixels)
    assert probe.seen.shape == (2, 3, 32, 32)
    assert torch.equal(probe.seen[:, 1], probe.seen[:, 0]) and torch.equal(probe.seen[:, 2], probe.seen[:, 0])
    assert torch.equal(logits, pipe.preprocess(pixels))


def test_pspnet_structure(pipelines):
    net = pipelines("pspnet_512").network
    assert isinstance(net, PSPNet)
    enc = net.encoder
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 4, 4]  # output stride 8
    assert feats[-1].shape[1] == 2048
    assert [len(getattr(enc, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 23, 3]
    assert all(b.conv2.dilation == (2, 2) and b.conv2.padding == (2, 2) for b in enc.layer3)
    assert all(b.conv2.dilation == (4, 4) and b.conv2.padding == (4, 4) for b in enc.layer4)
    assert [s.stride for s in (enc.layer3[0].conv2, enc.layer3[0].downsample[0], enc.layer4[0].conv2)] == [(1, 1)] * 3
    assert [len(s) for s in (net.ppm.stages)] == [4] * 4 and [s[0].bins for s in net.ppm.stages] == [1, 2, 3, 6]
    with torch.no_grad():
        out = net(torch.randn(1, 3, 40, 40))
    assert out.shape == (1, 14, 40, 40)  # 14 classes, upsampled to the input size
    assert dilated_resnet("resnet50").layer4[2].conv2.dilation == (4, 4)


@pytest.mark.parametrize("side", [8, 64, 7])
def test_adaptive_pool_matches_torch(side):
    x = torch.randn(2, 5, side, side + 3)
    for bins in (1, 2, 3, 6):
        ours = AdaptiveAvgPool(bins)(x)
        assert torch.allclose(ours, nn.functional.adaptive_avg_pool2d(x, bins), atol=1e-5)


def test_parameter_counts():
    counts = {name: parameter_count(p) for name, p in ALL.items()}
    print("parameters:", counts)
    assert 30.5e6 < counts["plain_unet"] < 31.5e6  # 31.04M (Ronneberger U-Net, 64..1024, BN)
    assert 24.3e6 < counts["resnet34_unet_512"] < 24.6e6  # smp Unet('resnet34', classes=1): 24.44M
    assert 65e6 < counts["pspnet_512"] < 70e6  # ResNet-101 trunk 42.5M + PPM 4.2M + 3x3 head 18.9M
    assert counts["lungseg_no_attention"] < counts["lungseg_sga"] < counts["resnet34_unet_512"]
    net = PEERS["plain_unet"].build()
    assert parameter_count(net) == counts["plain_unet"]


def test_flops():
    """FLOPs of the network alone at its own size, counted on the meta device (no arithmetic)."""
    got = {name: flops(p) for name, p in ALL.items()}
    print("GFLOPs:", {k: round(v / 1e9, 2) for k, v in got.items()})
    assert all(isinstance(v, int) and v > 0 for v in got.values())
    assert got["plain_unet"] > got["lungseg_sga"] > got["lungseg_no_attention"]
    assert got["pspnet_512"] > got["plain_unet"] > got["resnet34_unet_512"] > got["lungseg_sga"]
    # convolution cost scales with the pixel count
    small = flops(PEERS["plain_unet"], size=128)
    assert abs(got["plain_unet"] / small - 4.0) < 1e-6


def test_flops_meta_equals_real_compute(pipelines):
    """The meta-device count equals a count over real tensors (checked at small sizes)."""
    from torch.utils.flop_counter import FlopCounterMode

    for name, side in (("pspnet_512", 40), ("resnet34_unet_512", 64)):
        peer, net = ALL[name], pipelines(name).network
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net(torch.randn(1, 3, side, side))
        assert counter.get_total_flops() == flops(peer, size=side) > 0


def test_torchscript_trace_matches_eager(pipelines):
    pipe = pipelines("resnet34_unet_512")
    example = raw_pixels(2, 96, 80)
    with torch.no_grad():
        traced = torch.jit.trace(pipe, example, check_trace=False)
        x = raw_pixels(1, 70, 90, seed=1)
        (tp, tm, _), (ep, em, _) = traced(x), pipe(x)
    assert tp.shape == (1, 1, 70, 90) and tm.dtype == torch.uint8
    assert torch.allclose(tp, ep, atol=1e-5) and torch.equal(tm, em)


@pytest.mark.slow  # the export alone takes 15-30 s on two cores
def test_onnx_export_runs_in_onnxruntime(pipelines):
    """A peer pipeline exports through lungseg's own ONNX path and matches eager in onnxruntime."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from lungseg.export.onnx import torch2onnx_model

    peer = PEERS["resnet34_unet_512"]  # the smallest peer (parameters and FLOPs)
    pipe = pipelines(peer.name)
    model, metadata = torch2onnx_model(pipe, {"peer": peer.name})
    assert metadata["peer"] == peer.name
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for n, h, w in ((2, 96, 80), (1, 70, 90)):
        x = raw_pixels(n, h, w, seed=h)
        prob, mask, _ = session.run(None, {"pixels": x.numpy()})
        with torch.no_grad():
            eprob, emask, _ = pipe(x)
        assert prob.shape == mask.shape == (n, 1, h, w) and mask.dtype == np.uint8
        np.testing.assert_allclose(prob, eprob.numpy(), atol=1e-5)
        np.testing.assert_array_equal(mask, emask.numpy())
