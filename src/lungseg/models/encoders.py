"""ResNet encoders (resnet18/34/50/101, and the narrow ``resnet10-fast``) for one-channel X-rays.

Encoder contract: ``forward(x)`` returns a list of feature maps by stride
``[1, 2, 4, 8, 16, 32]`` (the input itself first), and ``out_channels`` lists their
channel counts. Parameter names follow torchvision's ResNet (``conv1``, ``bn1``,
``layer1`` ... ``layer4``), so a torchvision state_dict loads with
:meth:`ResNetEncoder.load_torchvision_state_dict`.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, ch * self.expansion, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, ch * self.expansion, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int):
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


RESNET_WIDTHS = (64, 64, 128, 256, 512)  # stem, layer1 ... layer4
# name -> (block, blocks per stage, widths of the stem and the four stages)
ENCODERS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), RESNET_WIDTHS),
    "resnet34": (BasicBlock, (3, 4, 6, 3), RESNET_WIDTHS),
    "resnet50": (Bottleneck, (3, 4, 6, 3), RESNET_WIDTHS),
    "resnet101": (Bottleneck, (3, 4, 23, 3), RESNET_WIDTHS),
    # the fast model's encoder: one basic block per stage at 3/8 of ResNet-18's widths (1/4 in the stem)
    "resnet10-fast": (BasicBlock, (1, 1, 1, 1), (16, 24, 48, 96, 192)),
}


class ResNetEncoder(nn.Module):
    """A ResNet trunk without its classifier, taking ``in_channels`` (1 for X-rays)."""

    def __init__(self, name: str = "resnet18", in_channels: int = 1):
        super().__init__()
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
        block, layers, widths = ENCODERS[name]
        self.name = name
        stem = widths[0]
        self.conv1 = nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = stem
        for i, (ch, n) in enumerate(zip(widths[1:], layers)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, ch, stride if j == 0 else 1))
                in_ch = ch * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        e = block.expansion
        self.out_channels = (in_channels, stem, *(w * e for w in widths[1:]))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each residual branch: each block starts as identity.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        return [x, f1, f2, f3, f4, f5]

    def load_torchvision_state_dict(self, state_dict: dict, strict: bool = True):
        """Load torchvision ResNet weights; an RGB ``conv1`` is summed to this input's channels."""
        sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        w = sd.get("conv1.weight")
        if w is not None and w.shape[1] != self.conv1.in_channels:
            summed = w.sum(dim=1, keepdim=True)
            sd["conv1.weight"] = summed.repeat(1, self.conv1.in_channels, 1, 1) / self.conv1.in_channels
        return self.load_state_dict(sd, strict=strict)
