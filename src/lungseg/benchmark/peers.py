"""Architecture replicas of the lung-segmentation models users would otherwise pick, for speed only.

The peers' trained weights cannot be downloaded here, so each replica is built with random
weights and written in this package (no code is taken from the original projects). Only
their speed (latency, throughput, FLOPs, parameter count) is compared with lungseg's, never
their accuracy. Each replica follows a published structure:

* ``plain_unet``: the classic U-Net of the published lung baselines (Ronneberger et al.,
  MICCAI 2015): four down-steps of two 3x3 conv + BN + ReLU with 64-128-256-512-1024
  channels, 2x2 max-pool down, 2x2 transposed convolution up, concatenated skips and a 1x1
  head to one logit. ``padding=1`` (not the paper's valid convolutions), so the output has
  the input's size, as in the lung baselines. 256x256, one channel.
* ``resnet34_unet_512``: the architecture of the ``lungs-segmentation`` PyPI package, which
  is segmentation_models_pytorch's ``Unet("resnet34")``: a ResNet-34 encoder and a decoder
  with (256, 128, 64, 32, 16) channels, 512x512, 3-channel input. Built with
  :func:`lungseg.models.create_model` (``attention=None``). One small difference to smp:
  lungseg's decoder also concatenates the network input as a skip in its last block
  (3 more input channels in one 3x3 convolution, under 0.01 % of the FLOPs).
* ``pspnet_512``: torchxrayvision's chest-X-ray PSPNet
  (``xrv.baseline_models.chestx_det.PSPNet``, from ChestX-Det; Zhao et al., CVPR 2017): a
  ResNet-101 with layers 3 and 4 dilated (2 and 4) instead of strided, so the features have
  output stride 8; a pyramid pooling module with bins (1, 2, 3, 6); a 3x3 conv to 512, a 1x1
  conv to 14 classes, bilinear upsampling to the input size. 512x512, 3-channel input.
  The trunk is torchvision-style (one 7x7 stem conv). torchxrayvision's network (ptsemseg's
  PSPNet) has a three-conv 3x3 stem (3-64-64-128) and evaluates its auxiliary head
  (3x3 conv 1024->256 on layer 3) even in eval mode: about 34 GFLOPs (~7 %) more than this
  replica at 512 px, so the replica errs in the peer's favour.

The grey image goes through lungseg's own :class:`~lungseg.preprocess.Preprocess` (resize to
the peer's size, standardisation), is repeated to three channels where the peer takes RGB,
and channel 0 of the peer's output goes through lungseg's
:class:`~lungseg.preprocess.Postprocess`. So every row of the benchmark runs the same pre- and
postprocessing and differs only in the network (:func:`build_pipeline`).

:data:`LUNGSEG` holds lungseg's own architecture (``resnet18`` UNet at 256, with and without
semantic-guided attention) as :class:`Peer` entries, so both sides go through the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ResNetEncoder, create_model
from ..pipeline import SegmentationPipeline


@dataclass(frozen=True)
class Peer:
    """One network to time: its name, what it replicates, its input size and channels, and a builder."""

    name: str
    description: str
    size: int
    in_channels: int
    build: Callable[[], nn.Module]


# ---------------------------------------------------------------------------- plain U-Net


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU (``padding=1``)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        )


class PlainUNet(nn.Module):
    """Ronneberger et al. 2015 U-Net with BN and same-padding; input sides divisible by 16."""

    def __init__(self, in_channels: int = 1, classes: int = 1, widths=(64, 128, 256, 512, 1024)):
        super().__init__()
        ins = (in_channels, *widths[:-1])
        self.down = nn.ModuleList(DoubleConv(i, o) for i, o in zip(ins, widths))
        self.pool = nn.MaxPool2d(2)
        deep = widths[::-1]  # 1024, 512, 256, 128, 64
        self.up = nn.ModuleList(nn.ConvTranspose2d(i, o, 2, stride=2) for i, o in zip(deep[:-1], deep[1:]))
        self.decode = nn.ModuleList(DoubleConv(2 * o, o) for o in deep[1:])
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decode):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


# ---------------------------------------------------------------------------- PSPNet


def dilated_resnet(name: str = "resnet101", in_channels: int = 3) -> ResNetEncoder:
    """A lungseg :class:`ResNetEncoder` turned into the dilated (output stride 8) trunk of PSPNet.

    Layers 3 and 4 keep the resolution of layer 2: the stride of their first block (its 3x3
    conv and its shortcut) becomes 1 and every 3x3 conv in them gets dilation and padding 2
    (layer 3) or 4 (layer 4). The encoder's features then have strides 1, 2, 4, 8, 8, 8.
    """
    encoder = ResNetEncoder(name, in_channels)
    for layer, d in ((encoder.layer3, 2), (encoder.layer4, 4)):
        for i, block in enumerate(layer):
            if i == 0:
                block.conv2.stride = (1, 1)
                if block.downsample is not None:
                    block.downsample[0].stride = (1, 1)
            block.conv2.dilation = (d, d)
            block.conv2.padding = (d, d)
    return encoder


def _pool_matrix(n: int, bins: int, device=None) -> torch.Tensor:
    """``[bins, n]`` averaging weights of adaptive average pooling along one axis (torch's bins:
    ``floor(i * n / bins)`` to ``ceil((i + 1) * n / bins)``)."""
    i = torch.arange(bins, device=device)
    start = (i * n) // bins
    end = ((i + 1) * n + bins - 1) // bins
    j = torch.arange(n, device=device)
    m = ((j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])).to(torch.float32)
    return m / m.sum(dim=1, keepdim=True)


class AdaptiveAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d(bins)`` written as two matrix products.

    Same result as torch's adaptive pooling. Where the side is not a multiple of ``bins``
    (64 / 3 and 64 / 6 at 512 px), torch's ONNX exporter unrolls adaptive pooling into some
    150 Gather/Add nodes, about 9x slower in onnxruntime than two MatMuls and outside what
    lungseg checks TensorRT parses; as MatMuls it runs alike in every runtime.
    """

    def __init__(self, bins: int):
        super().__init__()
        self.bins = int(bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _pool_matrix(x.shape[-2], self.bins, x.device)
        cols = _pool_matrix(x.shape[-1], self.bins, x.device)
        return torch.matmul(rows, torch.matmul(x, cols.t()))

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: pool to each bin, 1x1 conv + BN + ReLU, upsample, concatenate."""

    def __init__(self, in_ch: int = 2048, bins=(1, 2, 3, 6), ch: int = 512):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool(b), nn.Conv2d(in_ch, ch, 1, bias=False), nn.BatchNorm2d(ch),
                          nn.ReLU(inplace=True))
            for b in bins
        )
        self.out_channels = in_ch + len(bins) * ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages]
        return torch.cat([x, *pooled], dim=1)


class PSPNet(nn.Module):
    """PSPNet on a dilated ResNet (output stride 8); logits ``[N, classes, H, W]`` at the input size."""

    def __init__(self, classes: int = 14, in_channels: int = 3, encoder: str = "resnet101", bins=(1, 2, 3, 6)):
        super().__init__()
        self.encoder = dilated_resnet(encoder, in_channels)
        self.ppm = PyramidPooling(self.encoder.out_channels[-1], bins, 512)
        self.head = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512),
            nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(512, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[-1]
        out = self.head(self.ppm(features))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------- the registry


def lungseg_model(attention: str | None = "sga") -> nn.Module:
    """lungseg's shipped architecture (``resnet18`` UNet, default decoder) with or without SGA."""
    return create_model("resnet18", attention)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("plain_unet", "classic U-Net (Ronneberger et al. 2015, 64-1024 channels, BN), the published lung "
             "baselines' network", 256, 1, PlainUNet),
        Peer("resnet34_unet_512", "ResNet-34 U-Net, the architecture of the lungs-segmentation PyPI package "
             "(segmentation_models_pytorch Unet('resnet34'))", 512, 3,
             partial(create_model, "resnet34", attention=None, in_channels=3)),
        Peer("pspnet_512", "PSPNet on a dilated ResNet-101, 14 classes, the architecture of torchxrayvision's "
             "chest X-ray PSPNet (ChestX-Det)", 512, 3, PSPNet),
    )
}

LUNGSEG: dict[str, Peer] = {
    "lungseg_sga": Peer("lungseg_sga", "lungseg: ResNet-18 UNet with semantic-guided attention (shipped)",
                        256, 1, partial(lungseg_model, "sga")),
    "lungseg_no_attention": Peer("lungseg_no_attention", "lungseg: ResNet-18 UNet without attention",
                                 256, 1, partial(lungseg_model, None)),
}


# ---------------------------------------------------------------------------- deploy module


class PeerPipeline(SegmentationPipeline):
    """lungseg's deploy module around a peer network: raw pixels -> Preprocess(size) -> repeat to
    ``in_channels`` -> network -> output channel 0 -> Postprocess. Same contract as
    :class:`~lungseg.pipeline.SegmentationPipeline`: ``forward(pixels [N, 1, H, W])`` ->
    ``(probability float32, mask uint8, quality)``: ``[N, 1, H, W]`` x2, and ``[N, 4]`` NaN (no quality head)."""

    def __init__(self, network: nn.Module, size: int, in_channels: int = 1, threshold: float = 0.5):
        super().__init__(network, size, threshold)
        self.in_channels = int(in_channels)

    def run_network(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels != 1:  # grey -> RGB; expand, not repeat: an Expand node, not Tile, in ONNX
            x = x.expand(-1, self.in_channels, -1, -1)
        out = self.network(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out[:, :1]


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under ``seed`` without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_pipeline(peer: Peer, seed: int = 0, size: int | None = None, threshold: float = 0.5) -> PeerPipeline:
    """The eval-mode deploy module of ``peer`` with random weights drawn from ``seed``.

    ``size`` overrides the peer's network input size (tests use small ones); the benchmark
    leaves it at the peer's own. Export it like lungseg's pipeline
    (:func:`lungseg.export.onnx.torch2onnx_model`, ``torch.jit.trace``).
    """
    network = _seeded(seed, peer.build)
    return PeerPipeline(network, peer.size if size is None else size, peer.in_channels, threshold).eval()


# ---------------------------------------------------------------------------- cost


def _meta_network(peer: Peer) -> nn.Module:
    """The peer's network on the meta device: shapes only, no memory, no arithmetic."""
    with torch.device("meta"):
        return peer.build().eval()


def parameter_count(peer_or_module: Peer | nn.Module) -> int:
    """Number of parameters (weights and biases; BN running statistics are buffers, not counted)."""
    module = _meta_network(peer_or_module) if isinstance(peer_or_module, Peer) else peer_or_module
    return sum(p.numel() for p in module.parameters())


def flops(peer: Peer, size: int | None = None, batch: int = 1) -> int:
    """FLOPs of the network alone (no pre/postprocessing) at ``size`` (default: the peer's), batch 1.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device: a multiply-add
    is 2 FLOPs; convolutions, transposed convolutions and matrix products are counted,
    elementwise operations (BN, ReLU, pooling, interpolation) are not.
    """
    size = peer.size if size is None else int(size)
    return count_flops(_meta_network(peer), (batch, peer.in_channels, size, size))


def count_flops(network: nn.Module, shape) -> int:
    """FLOPs of ``network`` on an input of ``shape``, counted on the meta device (no arithmetic runs).

    The network is moved to the meta device: pass a copy you no longer need.
    """
    from torch.utils.flop_counter import FlopCounterMode

    network = network.to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.empty(*shape, device="meta"))
    return int(counter.get_total_flops())
