"""MAE: masked autoencoders (He et al., 2021, arXiv:2111.06377)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import torch
from torch import nn

from ssl_models.losses.mae_loss import MAELoss, patchify
from ssl_models.methods.base import SSLMethod


class _MaskableEncoder(Protocol):
    """What MAE needs from its encoder (:class:`~ssl_models.encoders.vit.VisionTransformer`)."""

    patch_size: int
    in_channels: int

    def forward_visible(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor: ...


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings, MAE's decoder embeddings.

    The first ``dim / 2`` channels encode the column, the last ``dim / 2`` the row, each as
    ``[sin(pos * omega), cos(pos * omega)]`` with ``omega_i = 10000^(-i / (dim / 4))``.

    Args:
        dim: Embedding width (a multiple of 4).
        grid_h: Patch rows.
        grid_w: Patch columns.

    Returns:
        ``(grid_h * grid_w, dim) float32``, row-major patch order.

    Raises:
        ValueError: ``dim`` is not a positive multiple of 4.
    """
    if dim < 4 or dim % 4:
        raise ValueError(f"dim must be a positive multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )

    def embed_1d(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([embed_1d(cols), embed_1d(rows)], dim=1).float()


class MAE(SSLMethod):
    """ViT encoder on the visible patches only, a light transformer decoder that fills in mask
    tokens, and a pixel loss on the masked patches.

    How the views are read: ``[images]`` masks ``mask_ratio`` of the patches of each image at
    random (an independent shuffle per sample; exactly ``L - int(L * (1 - mask_ratio))`` patches
    masked); ``[images, mask]`` uses the given ``(B, L)`` bool mask (True = masked, e.g. from
    ssl-data's masked-patch view), which must mask the same number of patches in every row.

    Args:
        encoder: A :class:`~ssl_models.encoders.vit.VisionTransformer` (it needs
            ``forward_visible``, ``patch_size`` and ``in_channels``).
        decoder_dim: Decoder token width (512 in the paper; a multiple of 4).
        decoder_depth: Decoder blocks (8 in the paper).
        decoder_heads: Decoder attention heads (16 in the paper).
        mlp_ratio: Decoder MLP width as a multiple of ``decoder_dim``.
        mask_ratio: Fraction of patches masked when no mask is given, in (0, 1) (0.75).
        norm_pix_loss: Per-patch normalised pixel targets (see :class:`MAELoss`).

    Raises:
        TypeError: The encoder has no ``forward_visible`` (MAE needs a ViT).
        ValueError: ``mask_ratio`` outside (0, 1), or a bad decoder size.

    Reference: He et al., "Masked Autoencoders Are Scalable Vision Learners", arXiv:2111.06377.
    """

    num_views = 1

    def __init__(
        self,
        encoder: nn.Module,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mlp_ratio: float = 4.0,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__(encoder)
        if not callable(getattr(encoder, "forward_visible", None)):
            raise TypeError(
                f"MAE needs an encoder with forward_visible (a VisionTransformer, e.g. 'vit_small'), "
                f"got {type(encoder).__name__}"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if decoder_dim < 4 or decoder_dim % 4 or decoder_dim % decoder_heads or decoder_depth < 1:
            raise ValueError(
                f"decoder_dim must be a multiple of 4 and of decoder_heads and decoder_depth >= 1, "
                f"got decoder_dim={decoder_dim}, decoder_heads={decoder_heads}, "
                f"decoder_depth={decoder_depth}"
            )
        self.patch_size = int(self._vit.patch_size)
        self.in_channels = int(self._vit.in_channels)
        self.mask_ratio = mask_ratio
        self.decoder_dim = decoder_dim
        self.decoder_embed = nn.Linear(self.embedding_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder_blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                decoder_dim,
                decoder_heads,
                dim_feedforward=round(mlp_ratio * decoder_dim),
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=1e-6,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * self.in_channels)
        self.criterion = MAELoss(norm_pix_loss=norm_pix_loss)

    @property
    def _vit(self) -> _MaskableEncoder:
        return cast(_MaskableEncoder, self.encoder)

    def random_masking(
        self, batch_size: int, num_patches: int, device: torch.device | None = None
    ) -> torch.Tensor:
        """A random mask per sample with exactly ``L - int(L * (1 - mask_ratio))`` masked patches.

        Returns:
            ``(B, L) bool``, True = masked (uses the global torch RNG).
        """
        len_keep = int(num_patches * (1 - self.mask_ratio))
        ids_shuffle = torch.argsort(torch.rand(batch_size, num_patches, device=device), dim=1)
        mask = torch.ones(batch_size, num_patches, dtype=torch.bool, device=device)
        mask[:, :len_keep] = False
        return torch.gather(mask, 1, torch.argsort(ids_shuffle, dim=1))

    def forward_loss(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches, decode all patches, and score the masked ones.

        Args:
            images: ``(B, C, H, W) float32``, H and W multiples of the patch size.
            mask: ``(B, L) bool`` (True = masked) or None to draw one (see
                :meth:`random_masking`).

        Returns:
            ``(loss, pred, mask)``: scalar float32 loss, ``(B, L, p*p*C) float32`` predicted
            patches (normalised-pixel space when ``norm_pix_loss``), the ``(B, L) bool`` mask used.

        Raises:
            ValueError: A mask of the wrong shape or dtype, or with a different number of masked
                patches per row.
        """
        target = patchify(images, self.patch_size)
        b, num_patches = target.shape[:2]
        if mask is None:
            mask = self.random_masking(b, num_patches, images.device)
        elif mask.dtype != torch.bool or tuple(mask.shape) != (b, num_patches):
            raise ValueError(
                f"mask must be ({b}, {num_patches}) bool (True = masked), got "
                f"{tuple(mask.shape)} {mask.dtype}"
            )
        visible = (~mask).sum(dim=1)
        if bool((visible != visible[0]).any()):
            raise ValueError(
                f"every row of the mask must keep the same number of patches, got {visible.tolist()}"
            )
        len_keep = int(visible[0])
        # Stable sort: visible patches first, each group in image order.
        ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        latent = self._vit.forward_visible(images, ids_shuffle[:, :len_keep])
        grid = (images.shape[2] // self.patch_size, images.shape[3] // self.patch_size)
        pred = self.decode(latent, ids_restore, grid)
        return self.criterion(pred, target, mask), pred, mask

    def decode(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Decoder: project, append mask tokens, unshuffle, add position embeddings, predict.

        Args:
            latent: ``(B, 1 + K, D_enc)`` encoder output ([CLS] then the K visible patches).
            ids_restore: ``(B, L) int64``; position j of the image holds shuffled token
                ``ids_restore[:, j]`` (visible tokens first, then mask tokens).
            grid: Patch rows and columns (L = rows * columns).

        Returns:
            ``(B, L, p * p * C) float32`` predicted patches in image order.
        """
        x = self.decoder_embed(latent)
        b, n, d = x.shape
        num_patches = ids_restore.shape[1]
        tokens = torch.cat([x[:, 1:], self.mask_token.expand(b, num_patches - (n - 1), d)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        pos = sincos_pos_embed_2d(d, *grid).to(x)
        x = torch.cat([x[:, :1], tokens + pos], dim=1)  # the [CLS] position embedding is zero
        for block in self.decoder_blocks:
            x = block(x)
        pred: torch.Tensor = self.decoder_pred(self.decoder_norm(x))
        return pred[:, 1:]

    def training_loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """MAE loss on ``[images]`` (random mask) or ``[images, mask]`` (given mask).

        Args:
            views: ``images (B, C, H, W) float32``, optionally followed by ``mask (B, L) bool``.

        Returns:
            Scalar float32 loss.
        """
        if len(views) not in (1, 2):
            raise ValueError(f"MAE needs [images] or [images, mask], got {len(views)} views")
        return self.forward_loss(views[0], views[1] if len(views) == 2 else None)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's pooled output on the full image (no masking), ``(B, embedding_dim)``."""
        return self.encoder(x)
