import pytest
import torch

from lungseg.models import ResNetEncoder, create_model
from lungseg.models.attention import ChannelAttention, PositionAttention

SMALL = dict(decoder_channels=(32, 16, 16, 8, 8))


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("attention", ["sga", None])
def test_output_shapes(encoder, attention):
    model = create_model(encoder, attention, **SMALL)
    x = torch.randn(2, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 64, 64)
    model.train()
    out = model(x)
    if attention == "sga":
        logits, coarse = out
        assert logits.shape == (2, 1, 64, 64) and coarse.shape == (2, 1, 2, 2)
    else:
        assert out.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name, channels", [("resnet50", [1, 64, 256, 512, 1024, 2048]),
                                            ("resnet10-fast", [1, 16, 24, 48, 96, 192])])  # the fast model's
def test_encoder_channels_and_strides(name, channels):
    enc = ResNetEncoder(name)
    feats = enc(torch.randn(1, 1, 64, 64))
    assert [f.shape[1] for f in feats] == list(enc.out_channels) == channels
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4, 2]


def test_gradients_reach_every_parameter():
    model = create_model("resnet18", "sga", **SMALL).train()
    # attention gammas and residual-branch BN weights start at 0, which blocks the gradient
    # of what lies behind them at step 0; give them a non-zero value to see every path
    with torch.no_grad():
        for p in model.parameters():
            if not torch.any(p != 0):
                p.fill_(0.1)
    logits, coarse = model(torch.randn(2, 1, 64, 64))
    (logits.mean() + coarse.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_attention_residual_scale_starts_at_zero():
    pa, ca = PositionAttention(16), ChannelAttention()
    x = torch.randn(1, 16, 4, 4)
    assert torch.equal(pa(x), x) and torch.equal(ca(x), x)


def test_unknown_names_are_errors():
    with pytest.raises(ValueError, match="encoder"):
        create_model("resnet9")
    with pytest.raises(ValueError, match="attention"):
        create_model("resnet18", "cbam")
    assert create_model("resnet18", "none", **SMALL).attention is None


def test_torchvision_style_state_dict_loads():
    src = ResNetEncoder("resnet18", in_channels=3)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    enc = ResNetEncoder("resnet18", in_channels=1)
    enc.load_torchvision_state_dict(sd)
    assert torch.allclose(enc.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(enc.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_trace_and_onnx_export(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = create_model("resnet18", "sga", **SMALL).eval()
    x = torch.randn(1, 1, 64, 64)
    traced = torch.jit.trace(model, x)
    assert torch.allclose(traced(x), model(x), atol=1e-5)
    path = tmp_path / "m.onnx"
    pytest.importorskip("onnxscript")  # torch's torch.export-based exporter (the TorchScript one is deprecated)
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"], opset_version=18,
                      dynamo=True, verbose=False)
    onnx.checker.check_model(onnx.load(str(path)))
