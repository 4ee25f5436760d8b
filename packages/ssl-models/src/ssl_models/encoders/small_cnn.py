"""A small residual CNN for 28x28 and 32x32 images that trains at a useful speed on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and an identity/1x1 shortcut.

    Reference: He et al., "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallCNN(nn.Module):
    """A 3x3-stem residual CNN (one basic block per stage) with global average pooling.

    The default (widths 32/64/128, stride-2 stem) has 0.29M parameters and, on 28x28 inputs,
    about 14M multiply-adds per image.

    Args:
        in_channels: Input channels, 1 (grayscale) or 3 (RGB).
        widths: Channels of each stage; every stage after the first halves the resolution.
        stem_stride: Stride of the 3x3 stem convolution (2 halves the cost of every stage).

    Shape:
        Input ``(B, in_channels, H, W) float32``; output ``(B, widths[-1]) float32`` (pooled
        features, not normalised). ``output_dim`` gives the output width.

    Raises:
        ValueError: ``in_channels`` is not 1 or 3, or ``widths`` is empty.
    """

    def __init__(
        self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128), stem_stride: int = 2
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if not widths:
            raise ValueError("widths must name at least one stage")
        self.in_channels = in_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        prev = widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(prev, w, stride=1 if i == 0 else 2))
            prev = w
        self.stages = nn.Sequential(*blocks)
        self.output_dim = int(widths[-1])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        return self.stages(self.stem(x)).mean(dim=(2, 3))
