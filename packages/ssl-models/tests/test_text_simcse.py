import numpy as np
import pytest
import torch

from ssl_models.text import SimCSE, SimCSELoss, bert_tiny


def _numpy_simcse(h, hp, t):
    a = h / np.linalg.norm(h, axis=1, keepdims=True)
    p = hp / np.linalg.norm(hp, axis=1, keepdims=True)
    loss = 0.0
    for i in range(len(a)):
        s = np.array([a[i] @ p[j] for j in range(len(p))]) / t
        loss += -(s[i] - np.log(np.exp(s - s.max()).sum()) - s.max())
    return loss / len(a)


def test_simcse_loss_equals_numpy_reference():
    g = torch.Generator().manual_seed(0)
    h, hp = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    hp[2] = h[2] + 0.1 * hp[2]  # one clear positive
    for t in (0.05, 0.5):
        got = SimCSELoss(t)(h, hp).item()
        assert got == pytest.approx(
            _numpy_simcse(h.double().numpy(), hp.double().numpy(), t), rel=1e-5
        )
    # Not symmetric: swapping the views changes the value (NT-Xent would not).
    assert SimCSELoss(0.05)(h, hp).item() != pytest.approx(SimCSELoss(0.05)(hp, h).item())
    with pytest.raises(ValueError, match="B >= 2"):
        SimCSELoss()(h[:1], hp[:1])
    with pytest.raises(ValueError, match="temperature"):
        SimCSELoss(0.0)


def test_simcse_method_views_come_from_dropout_and_loss_matches_reference():
    torch.manual_seed(0)
    method = SimCSE(bert_tiny(100, dropout=0.1), pooling="mean")
    assert method.pooling == "mean" and method.criterion.temperature == 0.05
    ids = torch.randint(5, 100, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    method.train()
    torch.manual_seed(1)
    loss = method.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and method.pooler[0].weight.grad is not None
    # Replaying the same RNG state through the stacked (2B, L) forward gives the same value.
    torch.manual_seed(1)
    with torch.no_grad():
        hidden = method.encoder.forward_features(torch.cat([ids, ids]), torch.cat([mask, mask]))
        real = torch.cat([mask, mask]).unsqueeze(-1).double()
        pooled = (hidden.double() * real).sum(1) / real.sum(1)
        z = method.pooler.double()(pooled).numpy()
    method.pooler.float()
    assert loss.item() == pytest.approx(_numpy_simcse(z[:4], z[4:], 0.05), rel=1e-4)
    assert np.abs(z[:4] - z[4:]).max() > 1e-3  # dropout made two different views
    # embed: no dropout in eval, no MLP pooler.
    method.eval()
    e1, e2 = method.embed(ids, mask), method.embed(batch)
    torch.testing.assert_close(e1, e2)
    assert e1.shape == (4, 128)
