"""Optimisers built from a recipe: weight-decay exclusions, LARS, layer-wise LR decay for ViTs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from ssl_train.lars import LARS
from ssl_train.recipe import OptimizerConfig

#: Parameters that get no weight decay by name (their last name component): the tokens and
#: position embeddings of ViTs (DeiT, MAE and DINO exclude them), and the gain ``g`` of weight
#: normalisation (torch's ``weight_norm`` parametrisation calls it ``original0``; the old hook
#: ``weight_g``), which is ``(out, 1)``-shaped and so escapes a ``ndim <= 1`` test.
NO_DECAY_NAMES = frozenset(
    {
        "cls_token",
        "mask_token",
        "dist_token",
        "register_tokens",
        "position_embeddings",
        "pos_embed",
        "weight_g",
    }
)
_WEIGHT_NORM_GAIN = "parametrizations.weight.original0"
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_VIT_EMBEDDINGS = re.compile(r"(?:^|\.)(?:embeddings|patch_embed|pos_embed|cls_token)(?:\.|$)")
_VIT_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|blocks)\.(\d+)(?:\.|$)")


def named_trainable_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Module, nn.Parameter]]:
    """``(full name, owning module, parameter)`` of every parameter with ``requires_grad``, once."""
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                yield (f"{module_name}.{name}" if module_name else name), module, p


def excluded_from_weight_decay(name: str, module: nn.Module, param: torch.Tensor) -> bool:
    """Whether a parameter is a bias, a norm weight, a weight-norm gain, a token or an embedding.

    Args:
        name: Its full name in the model (``model.named_parameters()``).
        module: The module that owns it directly.
        param: The parameter.

    Returns:
        True for every 1-D parameter, every parameter of a normalisation layer, weight-norm
        gains and the names in :data:`NO_DECAY_NAMES`.
    """
    return (
        param.ndim <= 1
        or isinstance(module, _NORMS)
        or name.endswith(_WEIGHT_NORM_GAIN)
        or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
    )


def vit_layer_id(name: str, num_layers: int) -> int:
    """The depth of a ViT parameter for layer-wise learning-rate decay.

    Args:
        name: Parameter name, e.g. ``encoder.vit.layers.3.mlp.fc1.weight`` (transformers 5),
            ``encoder.vit.encoder.layer.3.output.dense.weight`` (transformers 4) or
            ``blocks.3.attn.qkv.weight`` (timm).
        num_layers: Transformer blocks in the encoder.

    Returns:
        0 for the patch and position embeddings and the [CLS] token, ``i + 1`` for block ``i``,
        ``num_layers + 1`` for everything after the blocks (final norm, classifier head).

    Reference: Bao et al., "BEiT", arXiv:2106.08254; He et al., "Masked Autoencoders Are
    Scalable Vision Learners", arXiv:2111.06377, appendix A.3 (``get_layer_id_for_vit``).
    """
    block = _VIT_BLOCK.search(name)
    if block is not None:
        return int(block.group(1)) + 1
    if _VIT_EMBEDDINGS.search(name):
        return 0
    return num_layers + 1


def _vit_depth(model: nn.Module) -> tuple[str, int] | None:
    """``(module prefix, number of blocks)`` of the first ViT inside ``model``, if any."""
    from ssl_models import VisionTransformer

    for prefix, module in model.named_modules():
        if isinstance(module, VisionTransformer):
            return (prefix + "." if prefix else ""), int(module.vit.config.num_hidden_layers)
    return None


def layer_decay_scales(model: nn.Module, layer_decay: float) -> dict[str, float]:
    """Learning-rate multiplier of every trainable parameter of a model that holds a ViT.

    A parameter at :func:`vit_layer_id` ``i`` gets ``layer_decay ** (num_layers + 1 - i)``: the
    embeddings the smallest rate, the last block ``layer_decay``, the final norm and the head 1.
    Parameters outside the ViT (a classifier head) get 1.

    Args:
        model: A module containing one :class:`ssl_models.VisionTransformer`.
        layer_decay: In (0, 1]; 0.75 in MAE's ViT-B fine-tuning, 0.65 in BEiT's.

    Returns:
        Parameter name -> scale.

    Raises:
        ValueError: ``layer_decay`` outside (0, 1], or the model holds no ViT.

    Reference: Clark et al., "ELECTRA", arXiv:2003.10555 (layer-wise decay); Bao et al.,
    arXiv:2106.08254; He et al., arXiv:2111.06377, appendix A.3.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    found = _vit_depth(model)
    if found is None:
        raise ValueError(
            f"layer-wise LR decay needs a ViT encoder (ssl_models.VisionTransformer); "
            f"{type(model).__name__} holds none"
        )
    prefix, depth = found
    scales = {}
    for name, _, _ in named_trainable_parameters(model):
        layer = vit_layer_id(name[len(prefix) :], depth) if name.startswith(prefix) else depth + 1
        scales[name] = layer_decay ** (depth + 1 - layer)
    return scales


def parameter_groups(
    model: nn.Module, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: weight decay only on weight matrices and kernels.

    Every group has ``params``, ``weight_decay``, ``lr_scale`` (multiplies the scheduled rate;
    see :func:`set_learning_rate`) and ``exclude_from_decay`` (True for the group of biases,
    norm weights, weight-norm gains, tokens and position embeddings, see
    :func:`excluded_from_weight_decay`; LARS skips its adaptation there). Frozen parameters are
    left out.

    Args:
        model: The module to optimise.
        weight_decay: Coefficient of the decayed group (>= 0).
        layer_decay: None: two groups (decayed, excluded), always in that order. A value in
            (0, 1]: one pair per ViT depth with ``lr_scale`` from :func:`layer_decay_scales`,
            empty groups left out.

    Returns:
        The groups, for any ``torch.optim.Optimizer``.

    Raises:
        ValueError: ``weight_decay`` < 0, or ``layer_decay`` is invalid (see
            :func:`layer_decay_scales`).
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    scales = layer_decay_scales(model, layer_decay) if layer_decay is not None else {}
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    if layer_decay is None:  # keep both groups, even when one is empty
        for excluded in (False, True):
            groups[(1.0, excluded)] = _group(weight_decay, 1.0, excluded)
    for name, module, p in named_trainable_parameters(model):
        excluded = excluded_from_weight_decay(name, module, p)
        scale = scales.get(name, 1.0)
        key = (scale, excluded)
        if key not in groups:
            groups[key] = _group(weight_decay, scale, excluded)
        groups[key]["params"].append(p)
    return list(groups.values())


def _group(weight_decay: float, scale: float, excluded: bool) -> dict[str, Any]:
    return {
        "params": [],
        "weight_decay": 0.0 if excluded else weight_decay,
        "lr_scale": scale,
        "exclude_from_decay": excluded,
    }


def build_optimizer(
    model: nn.Module | Iterable[dict[str, Any]],
    config: OptimizerConfig,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """SGD (momentum, no Nesterov), AdamW or LARS over :func:`parameter_groups`.

    Args:
        model: The module to optimise, or ready parameter groups.
        config: The recipe's ``optimizer`` section.
        layer_decay: Layer-wise learning-rate decay for ViT fine-tuning (None: off).

    Returns:
        The optimiser; set its rate with :func:`set_learning_rate`.

    Raises:
        ValueError: See :func:`parameter_groups`.
    """
    groups = (
        parameter_groups(model, config.weight_decay, layer_decay)
        if isinstance(model, nn.Module)
        else list(model)
    )
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.name == "lars":
        for g in groups:
            g["lars_adaptation"] = not g.get("exclude_from_decay", False)
        return LARS(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            trust_coefficient=config.trust_coefficient,
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` times its ``lr_scale`` (1 when absent)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
