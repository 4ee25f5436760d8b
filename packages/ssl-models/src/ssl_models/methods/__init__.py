"""Self-supervised methods and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ssl_models.cross_modal.clip import CLIP
from ssl_models.errors import UnknownNameError
from ssl_models.methods.barlow_twins import BarlowTwins
from ssl_models.methods.base import SSLMethod
from ssl_models.methods.byol import BYOL
from ssl_models.methods.dino import DINO
from ssl_models.methods.jigsaw import Jigsaw, jigsaw_permutations, make_jigsaw_puzzles
from ssl_models.methods.mae import MAE
from ssl_models.methods.moco_v2 import MoCoV2
from ssl_models.methods.moco_v3 import MoCoV3
from ssl_models.methods.momentum_base import MomentumSSLMethod
from ssl_models.methods.rotation import RotationPrediction, make_rotations
from ssl_models.methods.simclr import SimCLR
from ssl_models.methods.simsiam import SimSiam
from ssl_models.methods.vicreg import VICReg
from ssl_models.speech.hubert import HuBERT
from ssl_models.speech.wav2vec2 import Wav2Vec2
from ssl_models.text import ELECTRA, BidirectionalLM, CausalLM, MaskedLM, SimCSE, SkipGram

METHODS: dict[str, Callable[..., SSLMethod]] = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "moco_v3": MoCoV3,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
    "dino": DINO,
    "mae": MAE,
    "rotation": RotationPrediction,
    "jigsaw": Jigsaw,
    "wav2vec2": Wav2Vec2,
    "hubert": HuBERT,
    "clip": CLIP,
    "masked_lm": MaskedLM,
    "causal_lm": CausalLM,
    "simcse": SimCSE,
    "electra": ELECTRA,
    "bilm": BidirectionalLM,
    "skip_gram": SkipGram,
}


def build_method(config: Mapping[str, Any], encoder: nn.Module) -> SSLMethod:
    """Build a method around an encoder from ``{"name": ..., **kwargs}``.

    Args:
        config: ``name`` selects the method in :data:`METHODS`; other keys go to its constructor.
        encoder: The backbone (see :func:`ssl_models.build_encoder`).

    Returns:
        The method module.

    Raises:
        UnknownNameError: The name is not registered (the message lists the known names).
        TypeError: A keyword argument is not accepted by the method.
    """
    kwargs = dict(config)
    name = kwargs.pop("name", None)
    if name not in METHODS:
        raise UnknownNameError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](encoder, **kwargs)


__all__ = [
    "BYOL",
    "CLIP",
    "DINO",
    "MAE",
    "METHODS",
    "BarlowTwins",
    "HuBERT",
    "Jigsaw",
    "MoCoV2",
    "MoCoV3",
    "MomentumSSLMethod",
    "RotationPrediction",
    "SSLMethod",
    "SimCLR",
    "SimSiam",
    "VICReg",
    "Wav2Vec2",
    "build_method",
    "jigsaw_permutations",
    "make_jigsaw_puzzles",
    "make_rotations",
]
