import numpy as np
import pytest
import torch

from ssl_models import MAE, MAELoss, SmallCNN, VisionTransformer, build_method
from ssl_models.losses import patchify
from ssl_models.methods.mae import sincos_pos_embed_2d


def _tiny_vit(image_size=16, patch_size=4, channels=3):
    torch.manual_seed(0)
    return VisionTransformer(
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        in_channels=channels,
    )


def _tiny_mae(**kwargs):
    args = dict(decoder_dim=16, decoder_depth=1, decoder_heads=2)
    args.update(kwargs)
    return build_method({"name": "mae", **args}, _tiny_vit())


def _np_patchify(images, p):
    """(B, C, H, W) -> (B, L, p*p*C) with row-major patches and (row, col, channel) inside."""
    b, c, h, w = images.shape
    out = np.zeros((b, (h // p) * (w // p), p * p * c))
    for n in range(b):
        for i in range(h // p):
            for j in range(w // p):
                flat = [
                    images[n, ch, i * p + y, j * p + x]
                    for y in range(p)
                    for x in range(p)
                    for ch in range(c)
                ]
                out[n, i * (w // p) + j] = flat
    return out


def test_patchify_matches_loop_reference():
    x = torch.randn(2, 3, 8, 12)
    np.testing.assert_allclose(patchify(x, 4).numpy(), _np_patchify(x.numpy(), 4), atol=0)
    with pytest.raises(ValueError, match="multiples of patch_size=5"):
        patchify(x, 5)


def test_normalized_pixel_targets_match_numpy():
    x = torch.rand(2, 3, 8, 8) * 255
    target = patchify(x, 4)
    t = _np_patchify(x.double().numpy(), 4)
    mean = t.mean(axis=-1, keepdims=True)
    var = t.var(axis=-1, ddof=1, keepdims=True)
    expected = (t - mean) / np.sqrt(var + 1e-6)
    got = MAELoss(norm_pix_loss=True).normalized_targets(target).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # A constant patch has zero variance: eps keeps it finite (0 / 1e-3 = 0).
    flat = MAELoss().normalized_targets(torch.ones(1, 2, 6))
    assert torch.equal(flat, torch.zeros(1, 2, 6))
    raw = MAELoss(norm_pix_loss=False).normalized_targets(target)
    torch.testing.assert_close(raw, target)


def test_loss_value_and_only_masked_patches_count():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, True, False]])
    loss = MAELoss()
    value = loss(pred, target, mask)
    t = loss.normalized_targets(target).double().numpy()
    per_patch = ((pred.double().numpy() - t) ** 2).mean(-1)
    expected = per_patch[mask.numpy()].mean()
    assert value.item() == pytest.approx(expected, abs=1e-6)
    changed = target.clone()
    changed[~mask] = 100.0 * torch.randn(int((~mask).sum()), 6, generator=g)
    assert loss(pred, changed, mask).item() == pytest.approx(value.item(), abs=1e-7)
    changed_masked = target.clone()
    changed_masked[mask] += 1.0 + torch.randn(int(mask.sum()), 6, generator=g)
    assert abs(loss(pred, changed_masked, mask).item() - value.item()) > 1e-3
    with pytest.raises(ValueError, match="no patch"):
        loss(pred, target, torch.zeros(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("num_patches,ratio,masked", [(16, 0.75, 12), (64, 0.75, 48), (10, 0.6, 6)])
def test_random_mask_ratio_is_exact_and_per_sample(num_patches, ratio, masked):
    m = _tiny_mae(mask_ratio=ratio)
    torch.manual_seed(1)
    mask = m.random_masking(8, num_patches)
    assert mask.dtype == torch.bool and mask.shape == (8, num_patches)
    assert mask.sum(dim=1).tolist() == [masked] * 8
    assert len({tuple(r.tolist()) for r in mask}) > 1  # each sample has its own shuffle


def test_forward_visible_equals_full_forward_on_kept_tokens():
    enc = _tiny_vit().eval()
    x = torch.randn(2, 3, 16, 16)
    full = enc.forward_features(x)
    ids_all = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(enc.forward_visible(x, ids_all), full, atol=1e-5, rtol=1e-5)
    # Attention is permutation-equivariant once positions are added: a shuffled order gives the
    # same tokens, shuffled.
    perm = torch.stack([torch.randperm(16), torch.randperm(16)])
    out = enc.forward_visible(x, perm)
    expected = torch.gather(full[:, 1:], 1, perm.unsqueeze(-1).expand(-1, -1, 32))
    torch.testing.assert_close(out[:, 1:], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"ids_keep must lie in \[0, 16\)"):
        enc.forward_visible(x, torch.full((2, 3), 16))


def test_encoder_never_sees_masked_pixels():
    m = _tiny_mae().eval()
    x = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = True  # keep patches 1, 2, 3, 4
    ids_keep = torch.tensor([[1, 2, 3, 4]] * 2)
    latent = m.encoder.forward_visible(x, ids_keep)
    y = x.clone()
    y[:, :, 12:, :] = 50.0  # bottom patch row: patches 12..15, all masked
    torch.testing.assert_close(m.encoder.forward_visible(y, ids_keep), latent)
    loss_x, pred_x, used = m.forward_loss(x, mask)
    assert torch.equal(used, mask)
    assert pred_x.shape == (2, 16, 4 * 4 * 3)
    # Changing masked pixels changes only the targets, not the prediction.
    _, pred_y, _ = m.forward_loss(y, mask)
    torch.testing.assert_close(pred_y, pred_x)
    # The loss is the MAE loss of those predictions on the masked patches.
    expected = MAELoss()(pred_x, patchify(x, 4), mask)
    assert loss_x.item() == pytest.approx(expected.item(), abs=1e-6)


def test_given_mask_via_views_and_errors():
    m = _tiny_mae()
    x = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :12] = True
    mask[1, 4:] = True
    torch.manual_seed(0)
    via_views = m.training_loss([x, mask])
    torch.manual_seed(0)
    assert via_views.item() == pytest.approx(m.forward_loss(x, mask)[0].item(), abs=1e-6)
    bad = mask.clone()
    bad[0, 12] = True
    with pytest.raises(ValueError, match="same number of patches"):
        m.training_loss([x, bad])
    with pytest.raises(ValueError, match=r"mask must be \(2, 16\) bool"):
        m.training_loss([x, mask.float()])
    with pytest.raises(TypeError, match="forward_visible"):
        MAE(SmallCNN(in_channels=3, widths=(4,)))
    with pytest.raises(ValueError, match="mask_ratio"):
        _tiny_mae(mask_ratio=1.0)


def test_embed_is_full_image_pooled_output_and_training_reduces_loss():
    m = _tiny_mae()
    m.eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(m.embed(x), m.encoder(x))
    assert m.embed(x).shape == (4, 32)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    mask = m.random_masking(4, 16)
    first = m.training_loss([x, mask]).item()
    for _ in range(30):
        loss = m.training_loss([x, mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


def test_sincos_embedding_values():
    pe = sincos_pos_embed_2d(8, 2, 3)
    assert pe.shape == (6, 8)
    # Patch (row 1, col 2) is index 5: column half [sin(2 w), cos(2 w)], row half [sin(w), cos(w)]
    w = torch.tensor([1.0, 1.0 / 100.0], dtype=torch.float64)
    expected = torch.cat([torch.sin(2 * w), torch.cos(2 * w), torch.sin(w), torch.cos(w)]).float()
    torch.testing.assert_close(pe[5], expected)
