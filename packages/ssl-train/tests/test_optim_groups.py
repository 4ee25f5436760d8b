"""Weight-decay groups on ssl_models' real encoders and heads; layer-wise LR decay on ViT names."""

import pytest
import torch

import ssl_models
from ssl_train import RecipeError, recipe_from_dict
from ssl_train.classifier import EncoderClassifier
from ssl_train.optim import (
    build_optimizer,
    layer_decay_scales,
    parameter_groups,
    set_learning_rate,
    vit_layer_id,
)
from ssl_train.recipe import OptimizerConfig


def _split(model, **kwargs):
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, excluded = parameter_groups(model, 0.05, **kwargs)
    return {names[id(p)] for p in decayed["params"]}, {names[id(p)] for p in excluded["params"]}


@pytest.fixture(scope="module")
def vit():
    return ssl_models.build_encoder(
        {"name": "vit_tiny", "image_size": 28, "patch_size": 7, "in_channels": 1}
    )


def test_cnn_and_resnet_decay_exactly_their_kernels():
    for config in ({"name": "small_cnn"}, {"name": "resnet18_small", "in_channels": 1}):
        enc = ssl_models.build_encoder(config)
        decayed, excluded = _split(enc)
        kernels = {
            f"{m_name}.weight"
            for m_name, m in enc.named_modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        }
        assert decayed == kernels, config
        assert len(decayed) + len(excluded) == len(list(enc.parameters()))
    assert len(kernels) == 20  # ResNet-18: stem + 16 block convs + 3 shortcut convs


def test_vit_excludes_tokens_position_embeddings_norms_and_biases(vit):
    decayed, excluded = _split(vit)
    matrices = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj",
                "mlp.fc1", "mlp.fc2")  # fmt: skip
    expected = {"vit.embeddings.patch_embeddings.projection.weight"} | {
        f"vit.layers.{i}.{m}.weight" for i in range(12) for m in matrices
    }
    assert decayed == expected and len(decayed) == 73
    assert {"vit.embeddings.cls_token", "vit.embeddings.position_embeddings",
            "vit.layernorm.weight", "vit.layers.5.layernorm_before.weight",
            "vit.layers.5.mlp.fc1.bias"} <= excluded  # fmt: skip
    # cls_token (1, 1, D) and position_embeddings (1, L + 1, D) are not 1-D: named exclusions.
    assert vit.vit.embeddings.position_embeddings.ndim == 3


def test_dino_weight_norm_gain_is_excluded_and_frozen_parameters_are_left_out():
    head = ssl_models.DINOHead(16, output_dim=32, hidden_dim=24, bottleneck_dim=8,
                               norm_last_layer=False)  # fmt: skip
    gain = head.last_layer.parametrizations.weight.original0
    assert gain.shape == (32, 1)  # 2-D: a ndim test alone would decay it
    decayed, excluded = _split(head)
    assert "last_layer.parametrizations.weight.original0" in excluded
    assert "last_layer.parametrizations.weight.original1" in decayed
    frozen = ssl_models.DINOHead(16, output_dim=32, hidden_dim=24, bottleneck_dim=8)
    decayed, excluded = _split(frozen)
    assert "last_layer.parametrizations.weight.original0" not in decayed | excluded


def test_linear_classifier_head():
    head = ssl_models.LinearClassifier(16, 10, batch_norm=True)
    decayed, excluded = _split(head)
    assert decayed == {"linear.weight"} and excluded == {"linear.bias"}


def test_vit_layer_ids_follow_beit_mae():
    assert vit_layer_id("vit.embeddings.cls_token", 12) == 0
    assert vit_layer_id("vit.embeddings.patch_embeddings.projection.weight", 12) == 0
    assert vit_layer_id("vit.layers.0.attention.q_proj.weight", 12) == 1
    assert vit_layer_id("vit.layers.11.mlp.fc2.bias", 12) == 12
    assert vit_layer_id("vit.encoder.layer.3.output.dense.weight", 12) == 4  # transformers 4
    assert vit_layer_id("blocks.3.attn.qkv.weight", 12) == 4  # timm / MAE
    assert vit_layer_id("pos_embed", 12) == 0
    assert vit_layer_id("vit.layernorm.weight", 12) == 13
    assert vit_layer_id("head.weight", 12) == 13


def test_layer_decay_groups_on_a_vit_tiny_classifier(vit):
    model = EncoderClassifier(vit, 10)
    d = 0.75
    scales = layer_decay_scales(model, d)
    expected = {
        "encoder.vit.embeddings.patch_embeddings.projection.weight": d**13,
        "encoder.vit.embeddings.cls_token": d**13,
        "encoder.vit.layers.0.mlp.fc1.weight": d**12,
        "encoder.vit.layers.6.attention.k_proj.bias": d**6,
        "encoder.vit.layers.11.attention.q_proj.weight": d,
        "encoder.vit.layernorm.weight": 1.0,
        "head.linear.weight": 1.0,
    }
    for name, scale in expected.items():
        assert scales[name] == pytest.approx(scale), name
    groups = parameter_groups(model, 0.05, layer_decay=d)
    assert len(groups) == 28  # 14 depths x (decayed, excluded)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            assert g["lr_scale"] == pytest.approx(scales[names[id(p)]])
            assert (g["weight_decay"] == 0.0) == g["exclude_from_decay"]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    opt = build_optimizer(model, OptimizerConfig(name="adamw", weight_decay=0.05), layer_decay=d)
    set_learning_rate(opt, 1e-3)
    by_scale = sorted({g["lr"] for g in opt.param_groups})
    assert by_scale == pytest.approx([1e-3 * d**k for k in range(13, -1, -1)])


def test_layer_decay_needs_a_vit_and_a_valid_value():
    with pytest.raises(ValueError, match="needs a ViT encoder"):
        parameter_groups(ssl_models.build_encoder({"name": "small_cnn"}), 0.05, layer_decay=0.7)
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\], got 1.5"):
        layer_decay_scales(torch.nn.Linear(2, 2), 1.5)


def test_recipe_accepts_lars_and_names_allowed_values(tiny_tree):
    with pytest.raises(
        RecipeError, match=r"optimizer\.name: .*'sgd', 'adamw' or 'lars'.*got 'lamb'"
    ):
        recipe_from_dict(tiny_tree, ["optimizer.name=lamb"])
    with pytest.raises(RecipeError, match=r"optimizer\.trust_coefficient: Input should be greater"):
        recipe_from_dict(tiny_tree, ["optimizer.name=lars", "optimizer.trust_coefficient=0"])
