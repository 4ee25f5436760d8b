"""Sampled augmentation policies (RandAugment, TrivialAugment), usable in any view generator."""

from ssl_data.policies.augment_ops import IDENTITY_AT_ZERO, OP_NAMES, magnitude_table
from ssl_data.policies.rand_augment import RandAugment
from ssl_data.policies.trivial_augment import TrivialAugment

__all__ = ["IDENTITY_AT_ZERO", "OP_NAMES", "RandAugment", "TrivialAugment", "magnitude_table"]
