"""Prediction head (predictor): the MLP that maps one view's projection onto the other's."""

from __future__ import annotations

from ssl_models.heads.projection_head import ProjectionHead


class PredictionHead(ProjectionHead):
    """The predictor of BYOL, SimSiam and MoCo v3: ``Linear -> BatchNorm -> ReLU -> Linear``.

    Applied to the online branch only; its asymmetry with the target branch (momentum encoder or
    stop-gradient) is what keeps those methods from collapsing without negatives. The papers' sizes:
    BYOL 256 -> 4096 -> 256, MoCo v3 256 -> 4096 -> 256, SimSiam 2048 -> 512 -> 2048 (a
    bottleneck).

    Args:
        input_dim: Width of the projection it reads.
        hidden_dim: Hidden width (4096 in BYOL and MoCo v3, 512 in SimSiam).
        output_dim: Output width; ``None`` (default) means ``input_dim``.
        num_layers: Number of linear layers (2 in the papers).

    Shape:
        ``(B, input_dim) float32`` -> ``(B, output_dim) float32``.

    Raises:
        ValueError: A width or ``num_layers`` is below 1.

    Reference: Grill et al., arXiv:2006.07733, section 3.3; Chen and He, arXiv:2011.10566,
    section 3; Chen et al., arXiv:2104.02057, section 4.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 4096,
        output_dim: int | None = None,
        num_layers: int = 2,
    ) -> None:
        super().__init__(
            input_dim, hidden_dim, input_dim if output_dim is None else output_dim, num_layers
        )
