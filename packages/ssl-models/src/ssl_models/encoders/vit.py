"""Vision Transformer backbones (transformers' ``ViTModel`` built from a config), with pooled,
patch-token and visible-patches-only (MAE) forwards."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

_POOLINGS = ("cls", "mean")
# name -> (hidden size, layers, attention heads), Touvron et al. (DeiT) Table 1 / Dosovitskiy et al.
_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class VisionTransformer(nn.Module):
    """A ViT (pre-norm transformer on non-overlapping patches with a [CLS] token) without a
    classifier; the pooled output is the final-layer-normed [CLS] token or the mean patch token.

    The network is transformers' ``ViTModel`` built from a ``ViTConfig`` (random weights, nothing
    downloaded, no pooler layer). Inputs of another size than ``image_size`` get bicubically
    interpolated position embeddings (``interpolate_pos_encoding``), as in DINO's multi-crop; at
    ``image_size`` the learned embeddings are added as they are.

    Args:
        hidden_size: Token width D.
        num_layers: Transformer blocks.
        num_heads: Attention heads (must divide ``hidden_size``).
        image_size: Side in pixels the position embeddings are learned for.
        patch_size: Patch side in pixels (must divide ``image_size``).
        in_channels: Input channels, 1 or 3.
        pooling: ``"cls"`` ([CLS] token) or ``"mean"`` (mean of the patch tokens).
        mlp_ratio: MLP hidden width as a multiple of ``hidden_size``.
        dropout: Dropout on embeddings, attention and MLP outputs.

    Shape:
        Input ``(B, in_channels, H, W) float32`` with H and W multiples of ``patch_size``; output
        ``(B, hidden_size) float32``. ``output_dim == hidden_size``.

    Raises:
        ValueError: A bad size, channel count or pooling (at construction); an input of the wrong
            rank, channel count or a side that is not a multiple of ``patch_size`` (at forward).

    Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv:2010.11929.
    """

    def __init__(
        self,
        hidden_size: int = 384,
        num_layers: int = 12,
        num_heads: int = 6,
        image_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        pooling: str = "cls",
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if min(hidden_size, num_layers, num_heads, image_size, patch_size) < 1:
            raise ValueError(
                f"sizes must be >= 1, got hidden_size={hidden_size}, num_layers={num_layers}, "
                f"num_heads={num_heads}, image_size={image_size}, patch_size={patch_size}"
            )
        if hidden_size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")
        if image_size % patch_size:
            raise ValueError(f"patch_size={patch_size} must divide image_size={image_size}")
        # Imported here so that `import ssl_models` stays fast for users of the losses alone.
        from transformers import ViTConfig, ViTModel

        config = ViTConfig(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=round(mlp_ratio * hidden_size),
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            layer_norm_eps=1e-6,
            image_size=image_size,
            patch_size=patch_size,
            num_channels=in_channels,
        )
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.hidden_size = hidden_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.pooling = pooling
        self.output_dim = hidden_size

    def _check(self, x: torch.Tensor) -> None:
        p = self.patch_size
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % p or x.shape[3] % p:
            raise ValueError(
                f"expected (B, {self.in_channels}, H, W) input with H and W multiples of "
                f"patch_size={p}, got {tuple(x.shape)}"
            )

    def _interpolate(self, x: torch.Tensor) -> bool:
        return tuple(x.shape[2:]) != (self.image_size, self.image_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final layer norm.

        Args:
            x: ``(B, in_channels, H, W) float32``.

        Returns:
            ``(B, 1 + L, hidden_size) float32``: the [CLS] token, then the L = (H/p)(W/p) patch
            tokens in row-major order.
        """
        self._check(x)
        out = self.vit(pixel_values=x, interpolate_pos_encoding=self._interpolate(x))
        tokens: torch.Tensor = out.last_hidden_state
        return tokens

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The patch tokens only, ``(B, L, hidden_size) float32`` in row-major patch order."""
        return self.forward_features(x)[:, 1:]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool ``(B, 1 + L, D)`` tokens to ``(B, D)`` ([CLS] or mean of patch tokens)."""
        return tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))

    def forward_visible(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode only the kept patches (MAE's encoder): the other patches never enter a block.

        Position embeddings are added before the patches are dropped, so every kept token keeps
        its place in the image.

        Args:
            x: ``(B, in_channels, H, W) float32``.
            ids_keep: ``(B, K) int64`` indices in ``[0, L)`` of the patches to keep, per sample.

        Returns:
            ``(B, 1 + K, hidden_size) float32``: [CLS] then the kept patches, in ``ids_keep``
            order, after the final layer norm.

        Raises:
            ValueError: ``ids_keep`` is not ``(B, K)`` or holds an index outside ``[0, L)``.

        Reference: He et al., "Masked Autoencoders Are Scalable Vision Learners",
        arXiv:2111.06377, section 3.
        """
        self._check(x)
        emb = self.vit.embeddings
        patches = emb.patch_embeddings(x)  # (B, L, D)
        b, num_patches, d = patches.shape
        if ids_keep.ndim != 2 or ids_keep.shape[0] != b:
            raise ValueError(f"ids_keep must be ({b}, K), got {tuple(ids_keep.shape)}")
        if ids_keep.numel() and (int(ids_keep.min()) < 0 or int(ids_keep.max()) >= num_patches):
            raise ValueError(f"ids_keep must lie in [0, {num_patches}), got an index outside")
        cls = emb.cls_token.expand(b, -1, -1)
        tokens = torch.cat([cls, patches], dim=1)
        if self._interpolate(x):
            pos = emb.interpolate_pos_encoding(tokens, x.shape[2], x.shape[3])
        else:
            pos = emb.position_embeddings
        tokens = tokens + pos
        kept = torch.gather(tokens[:, 1:], 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        hidden = emb.dropout(torch.cat([tokens[:, :1], kept], dim=1))
        for layer in _blocks(self.vit):
            out = layer(hidden)
            # transformers < 4.50 returns a tuple from each block, later versions a tensor.
            hidden = out[0] if isinstance(out, tuple) else out
        normed: torch.Tensor = self.vit.layernorm(hidden)
        return normed


def _blocks(vit: nn.Module) -> nn.ModuleList:
    # transformers 5 keeps the blocks in `layers`, 4.x in `encoder.layer`.
    blocks = getattr(vit, "layers", None)
    if not isinstance(blocks, nn.ModuleList):
        blocks = vit.get_submodule("encoder.layer")
    return cast(nn.ModuleList, blocks)


def _sized(size: str, kwargs: dict[str, Any]) -> VisionTransformer:
    hidden, layers, heads = _SIZES[size]
    for key in ("hidden_size", "num_layers", "num_heads"):
        if key in kwargs:
            raise TypeError(f"vit_{size} fixes {key}; use the 'vit' encoder to choose it")
    return VisionTransformer(hidden_size=hidden, num_layers=layers, num_heads=heads, **kwargs)


def vit_tiny(**kwargs: Any) -> VisionTransformer:
    """ViT-Tiny: D=192, 12 blocks, 3 heads (5.7M parameters at patch 16). Keyword arguments as
    :class:`VisionTransformer` except the three sizes."""
    return _sized("tiny", kwargs)


def vit_small(**kwargs: Any) -> VisionTransformer:
    """ViT-Small: D=384, 12 blocks, 6 heads (22M parameters). Keyword arguments as
    :class:`VisionTransformer` except the three sizes."""
    return _sized("small", kwargs)


def vit_base(**kwargs: Any) -> VisionTransformer:
    """ViT-Base: D=768, 12 blocks, 12 heads (86M parameters). Keyword arguments as
    :class:`VisionTransformer` except the three sizes."""
    return _sized("base", kwargs)
