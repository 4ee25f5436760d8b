"""Building blocks shared by encoders and heads."""

from ssl_models.layers.distributed_batch_norm import (
    DistributedBatchNorm,
    convert_to_distributed_batchnorm,
)

__all__ = ["DistributedBatchNorm", "convert_to_distributed_batchnorm"]
