"""Base classes of the text methods: dict batches, pooled embeddings, token-normalised losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, cast

import torch
from torch import nn

from ssl_models.methods.base import SSLMethod
from ssl_models.text.padding import check_token_batch
from ssl_models.text.pooling import check_pooling, pool_tokens

IGNORE_INDEX = -100  # label of positions a loss skips (torch cross_entropy's ignore_index)
TextBatch = Mapping[str, torch.Tensor]


class TextEncoder(Protocol):
    """What the text methods need from an encoder (:class:`~ssl_models.text.BertEncoder`,
    :class:`~ssl_models.text.GPT2Decoder`, :class:`~ssl_models.text.RecurrentEncoder`)."""

    output_dim: int
    pooling: str

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class TextSSLMethod(SSLMethod):
    """An :class:`~ssl_models.methods.SSLMethod` whose batches are dicts of token tensors.

    A batch holds ``input_ids (B, L) int64`` and ``attention_mask (B, L)`` (1 = real token,
    either padding side), plus ``labels (B, L) int64`` where the objective needs them. The
    sentence-embedding pooling is part of the method's config (``pooling``): it is written onto
    the encoder, so :meth:`embed`, the encoder's own forward and the export all use one choice.

    Args:
        encoder: A text encoder with ``output_dim``, ``pooling`` and ``forward_features``.
        pooling: ``"cls"``, ``"mean"``, ``"max"`` or ``"last"``; None keeps the encoder's.

    Raises:
        TypeError: The encoder has no ``forward_features``.
        ValueError: Unknown pooling, or the encoder has no integer ``output_dim``.
    """

    num_views = 1

    def __init__(self, encoder: nn.Module, pooling: str | None = None) -> None:
        super().__init__(encoder)
        if not callable(getattr(encoder, "forward_features", None)):
            raise TypeError(
                f"{type(self).__name__} needs a text encoder with forward_features (e.g. "
                f"'bert_tiny'), got {type(encoder).__name__}"
            )
        if pooling is not None:
            setattr(encoder, "pooling", check_pooling(pooling))  # noqa: B010

    @property
    def text_encoder(self) -> TextEncoder:
        """The encoder, typed as a :class:`TextEncoder`."""
        return cast(TextEncoder, self.encoder)

    @property
    def pooling(self) -> str:
        """The sentence-embedding pooling used by :meth:`embed` (and the export)."""
        return self.text_encoder.pooling

    @staticmethod
    def batch_tensors(
        batch: TextBatch | Sequence[torch.Tensor], *, labels: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``input_ids``, the ``(B, L) bool`` real-token mask and ``labels`` of a batch.

        Raises:
            TypeError: ``batch`` is not a mapping.
            KeyError: ``input_ids`` (or ``labels`` when ``labels=True``) is missing.
            ValueError: Malformed tensors (see :func:`~ssl_models.text.check_token_batch`).
        """
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"text methods take a dict batch {{'input_ids', 'attention_mask', ...}}, got "
                f"{type(batch).__name__}"
            )
        if "input_ids" not in batch:
            raise KeyError(f"batch has no 'input_ids'; keys: {sorted(batch)}")
        input_ids = batch["input_ids"]
        mask = check_token_batch(input_ids, batch.get("attention_mask"))
        target = batch.get("labels")
        if labels and target is None:
            raise KeyError(f"batch has no 'labels'; keys: {sorted(batch)}")
        if target is not None and target.shape != input_ids.shape:
            raise ValueError(
                f"labels must have input_ids' shape {tuple(input_ids.shape)}, got "
                f"{tuple(target.shape)}"
            )
        return input_ids, mask, target

    def training_loss(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """The objective on a batch dict (see the class docstring)."""
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same as :meth:`training_loss`; lets DistributedDataParallel wrap the method."""
        return self.training_loss(batch, num_items_in_batch)

    def embed(
        self, x: torch.Tensor | TextBatch, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sentence embeddings for downstream use, pooled over real tokens (:attr:`pooling`).

        Args:
            x: ``input_ids (B, L) int64`` or a batch dict holding ``input_ids`` and
                ``attention_mask``.
            attention_mask: ``(B, L)``, 1 = real token (when ``x`` is a tensor; None: all real).

        Returns:
            ``(B, embedding_dim) float32``, before any projection head.
        """
        if isinstance(x, Mapping):
            input_ids, mask, _ = self.batch_tensors(x)
        else:
            input_ids, mask = x, check_token_batch(x, attention_mask)
        hidden = self.text_encoder.forward_features(input_ids, mask)
        return pool_tokens(hidden, mask, self.pooling)


class TokenLevelLM(TextSSLMethod):
    """A language-model objective whose loss is a sum over predicted tokens ÷ their number.

    Subclasses implement :meth:`loss_sum`. :meth:`training_loss` divides by the number of
    predicted tokens in this batch, or by ``num_items_in_batch`` when given: pass the number of
    predicted tokens of the whole optimiser step (all micro-batches, all ranks) to make gradient
    accumulation exact (see :func:`~ssl_models.text.accumulate_gradients`).
    """

    def loss_sum(self, batch: TextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed per-token loss and the number of predicted tokens.

        Returns:
            ``(sum, count)``: scalar float32 sum of the per-token negative log-likelihoods, and
            scalar int64 count of the tokens it sums over.
        """
        raise NotImplementedError

    def num_loss_tokens(self, batch: TextBatch) -> int:
        """How many tokens :meth:`loss_sum` sums over for ``batch`` (no forward pass)."""
        raise NotImplementedError

    def training_loss(  # type: ignore[override]
        self, batch: TextBatch, num_items_in_batch: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean per-token loss: ``loss_sum / (num_items_in_batch or count)``.

        Args:
            batch: Dict of ``(B, L)`` tensors (see the subclass).
            num_items_in_batch: Predicted tokens over the whole accumulated (and, under DDP,
                global) batch; None = this batch's count.

        Returns:
            Scalar float32 loss (0 with a zero gradient when nothing is predicted).
        """
        total, count = self.loss_sum(batch)
        denominator = count if num_items_in_batch is None else num_items_in_batch
        if isinstance(denominator, torch.Tensor):
            denominator = denominator.to(total.device)
        return total / (denominator if int(denominator) > 0 else 1)
