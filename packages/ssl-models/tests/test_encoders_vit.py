import pytest
import torch

from ssl_models import VisionTransformer, build_encoder


def _tiny(**kwargs):
    torch.manual_seed(0)
    args = dict(hidden_size=32, num_layers=2, num_heads=4, image_size=32, patch_size=8)
    args.update(kwargs)
    return build_encoder({"name": "vit", **args}).eval()


@pytest.mark.parametrize("size,patches", [(32, 16), (48, 36), (16, 4)])
def test_position_embeddings_interpolate_for_other_sizes(size, patches):
    enc = _tiny()
    x = torch.randn(2, 3, size, size)
    assert enc(x).shape == (2, 32)
    assert enc.patch_tokens(x).shape == (2, patches, 32)
    assert enc.forward_features(x).shape == (2, 1 + patches, 32)


def test_interpolated_embeddings_are_the_learned_ones_resized():
    enc = _tiny()
    emb = enc.vit.embeddings
    x = torch.randn(1, 3, 48, 48)
    tokens = torch.zeros(1, 1 + 36, 32)
    pos = emb.interpolate_pos_encoding(tokens, 48, 48)
    grid = emb.position_embeddings[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(
        grid, size=(6, 6), mode="bicubic", align_corners=False
    )
    torch.testing.assert_close(pos[:, 1:], resized.permute(0, 2, 3, 1).reshape(1, 36, 32))
    torch.testing.assert_close(pos[:, :1], emb.position_embeddings[:, :1])
    # The forward at 48 px uses those embeddings: equal to the visible-patch path with all kept.
    ids = torch.arange(36).unsqueeze(0)
    torch.testing.assert_close(
        enc.forward_visible(x, ids), enc.forward_features(x), atol=1e-5, rtol=1e-5
    )


def test_native_size_adds_learned_embeddings_unchanged():
    enc = _tiny()
    x = torch.randn(2, 3, 32, 32)
    ref = enc.vit(pixel_values=x, interpolate_pos_encoding=False).last_hidden_state
    torch.testing.assert_close(enc.forward_features(x), ref)
    torch.testing.assert_close(enc(x), ref[:, 0])


def test_mean_pooling_and_channels():
    enc = _tiny(pooling="mean", in_channels=1)
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(enc(x), enc.patch_tokens(x).mean(dim=1))
    assert enc.output_dim == 32
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        enc(torch.randn(3, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of patch_size=8"):
        enc(torch.randn(3, 1, 36, 36))


@pytest.mark.parametrize("name,dim", [("vit_tiny", 192), ("vit_small", 384)])
def test_named_sizes(name, dim):
    torch.manual_seed(0)
    enc = build_encoder({"name": name, "image_size": 32, "patch_size": 16})
    assert isinstance(enc, VisionTransformer)
    assert enc.output_dim == dim
    assert enc(torch.randn(1, 3, 32, 32)).shape == (1, dim)
    # 12 pre-norm blocks of 12 D^2 + 13 D parameters (qkv, projection, 4x MLP, two layer norms)
    # plus the final layer norm, outside the embeddings.
    body = sum(p.numel() for n, p in enc.named_parameters() if not n.startswith("vit.embeddings"))
    assert body == 12 * (12 * dim**2 + 13 * dim) + 2 * dim


def test_fixed_sizes_cannot_be_overridden():
    with pytest.raises(TypeError, match="vit_small fixes hidden_size"):
        build_encoder({"name": "vit_small", "hidden_size": 8})


def test_bad_configs():
    with pytest.raises(ValueError, match="pooling"):
        VisionTransformer(pooling="max")
    with pytest.raises(ValueError, match="num_heads=5 must divide hidden_size=32"):
        VisionTransformer(hidden_size=32, num_heads=5)
    with pytest.raises(ValueError, match="patch_size=5 must divide image_size=32"):
        VisionTransformer(hidden_size=32, num_heads=4, image_size=32, patch_size=5)
