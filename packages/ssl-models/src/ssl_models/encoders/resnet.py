"""ResNet-18/34/50 backbones (transformers' ``ResNetModel`` built from a config), with an optional
small-image stem for 28x28-96x96 inputs."""

from __future__ import annotations

import torch
from torch import nn

# depth -> (block type, blocks per stage, output channels per stage), He et al., Table 1.
_ARCHITECTURES: dict[int, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    34: ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    50: ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
}
_STEM_WIDTH = 64


class ResNet(nn.Module):
    """A standard ImageNet ResNet with global average pooling and no classifier.

    The network is transformers' ``ResNetModel`` built from a ``ResNetConfig`` (random weights,
    nothing downloaded); bottleneck blocks stride in their 3x3 convolution (the common
    "ResNet v1.5", as in torchvision). With ``small_images=True`` the stem is the CIFAR variant
    of SimCLR (Appendix B.9) and most SSL libraries: a 3x3 stride-1 convolution and no max-pool, so
    a 32x32 input keeps 32x32 after the stem (instead of 8x8) and reaches the last stage at 4x4.

    Args:
        depth: 18, 34 (basic blocks) or 50 (bottleneck blocks).
        in_channels: Input channels, 1 (grayscale) or 3 (RGB).
        small_images: Use the 3x3 stride-1 stem without max-pool (for images of ~28-96 pixels).

    Shape:
        Input ``(B, in_channels, H, W) float32``; output ``(B, output_dim) float32`` pooled
        features (``output_dim`` is 512 for depths 18/34 and 2048 for depth 50).

    Raises:
        ValueError: ``depth`` is not 18/34/50 or ``in_channels`` not 1/3 (at construction); the
            input is not ``(B, in_channels, H, W)`` (at forward).

    Reference: He et al., "Deep Residual Learning for Image Recognition", arXiv:1512.03385;
    small-image stem: Chen et al., arXiv:2002.05709, Appendix B.9.
    """

    def __init__(self, depth: int = 18, in_channels: int = 3, small_images: bool = False) -> None:
        super().__init__()
        if depth not in _ARCHITECTURES:
            raise ValueError(f"depth must be one of {sorted(_ARCHITECTURES)}, got {depth}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        # Imported here so that `import ssl_models` stays fast for users of the losses alone.
        from transformers import ResNetConfig, ResNetModel
        from transformers.models.resnet.modeling_resnet import ResNetConvLayer

        layer_type, depths, widths = _ARCHITECTURES[depth]
        config = ResNetConfig(
            num_channels=in_channels,
            embedding_size=_STEM_WIDTH,
            hidden_sizes=list(widths),
            depths=list(depths),
            layer_type=layer_type,
            hidden_act="relu",
            downsample_in_first_stage=False,
        )
        self.resnet = ResNetModel(config)
        if small_images:
            stem = ResNetConvLayer(in_channels, _STEM_WIDTH, kernel_size=3, stride=1)
            nn.init.kaiming_normal_(stem.convolution.weight, mode="fan_out", nonlinearity="relu")
            # add_module replaces the registered 7x7 stride-2 convolution and the max-pool.
            self.resnet.embedder.add_module("embedder", stem)
            self.resnet.embedder.add_module("pooler", nn.Identity())
        self.depth = depth
        self.in_channels = in_channels
        self.small_images = small_images
        self.output_dim = int(widths[-1])

    @property
    def stem(self) -> nn.Module:
        """The stem (first convolution, batch norm, ReLU, then max-pool unless small-image)."""
        return self.resnet.embedder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        out = self.resnet(pixel_values=x, return_dict=True)
        return out.pooler_output.flatten(1)


def resnet18(in_channels: int = 3) -> ResNet:
    """ResNet-18 with the ImageNet stem (7x7 stride-2 convolution, max-pool); ``output_dim`` 512."""
    return ResNet(18, in_channels)


def resnet34(in_channels: int = 3) -> ResNet:
    """ResNet-34 with the ImageNet stem; ``output_dim`` 512."""
    return ResNet(34, in_channels)


def resnet50(in_channels: int = 3) -> ResNet:
    """ResNet-50 (bottleneck blocks) with the ImageNet stem; ``output_dim`` 2048."""
    return ResNet(50, in_channels)


def resnet18_small(in_channels: int = 3) -> ResNet:
    """ResNet-18 with the small-image stem (3x3 stride-1, no max-pool); ``output_dim`` 512."""
    return ResNet(18, in_channels, small_images=True)


def resnet34_small(in_channels: int = 3) -> ResNet:
    """ResNet-34 with the small-image stem; ``output_dim`` 512."""
    return ResNet(34, in_channels, small_images=True)


def resnet50_small(in_channels: int = 3) -> ResNet:
    """ResNet-50 with the small-image stem; ``output_dim`` 2048."""
    return ResNet(50, in_channels, small_images=True)
