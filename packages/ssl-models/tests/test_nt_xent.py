import math

import pytest
import torch

from ssl_models import NTXentLoss


def _reference(z_a, z_b, t):
    """NT-Xent by plain loops over Python floats (arXiv:2002.05709, eq. 1)."""
    z = [list(map(float, r)) for r in torch.cat([z_a, z_b])]
    z = [[v / math.sqrt(sum(x * x for x in r)) for v in r] for r in z]
    n, b = len(z), len(z) // 2
    total = 0.0
    for i in range(n):
        p = (i + b) % n
        sims = {k: sum(x * y for x, y in zip(z[i], z[k])) / t for k in range(n)}
        denom = sum(math.exp(sims[k]) for k in range(n) if k != i)
        total += -math.log(math.exp(sims[p]) / denom)
    return total / n


def test_hand_computed_4x3_example():
    # Four 3-d embeddings (two images x two views); positives: rows 0<->2 and 1<->3.
    z_a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    z_b = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    # By hand with t=0.5: cosines: (0,2)=(1,3)=(1,2)=1/sqrt2, (0,1)=0, (0,3)=0, (2,3)=1/2.
    # s = cos/t. Anchor 0: -log(e^{sqrt2} / (e^0 + e^{sqrt2} + e^0)); anchor 1: positive 3,
    # negatives 0 and 2 -> -log(e^{sqrt2} / (1 + e^{sqrt2} + e^{sqrt2})); anchor 2: positive 0,
    # others 1 (sqrt2) and 3 (1); anchor 3: positive 1, others 0 (0) and 2 (1).
    r2 = math.sqrt(2)
    a0 = -math.log(math.exp(r2) / (2 + math.exp(r2)))
    a1 = -math.log(math.exp(r2) / (1 + 2 * math.exp(r2)))
    a2 = -math.log(math.exp(r2) / (2 * math.exp(r2) + math.e))
    a3 = -math.log(math.exp(r2) / (1 + math.exp(r2) + math.e))
    expected = (a0 + a1 + a2 + a3) / 4
    loss = NTXentLoss(temperature=0.5)(z_a, z_b)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(_reference(z_a, z_b, 0.5), abs=1e-6)


def test_random_inputs_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    for t in (0.1, 0.5, 1.0):
        assert NTXentLoss(t)(z_a, z_b).item() == pytest.approx(_reference(z_a, z_b, t), abs=1e-5)


def test_self_similarity_gets_no_gradient():
    # Gradients equal those of a loss that never computes s_ii at all.
    g = torch.Generator().manual_seed(1)
    z_a = torch.randn(4, 3, generator=g, requires_grad=True)
    z_b = torch.randn(4, 3, generator=g, requires_grad=True)
    NTXentLoss(0.2)(z_a, z_b).backward()
    ga, gb = z_a.grad.clone(), z_b.grad.clone()
    za2, zb2 = z_a.detach().clone().requires_grad_(), z_b.detach().clone().requires_grad_()
    z = torch.nn.functional.normalize(torch.cat([za2, zb2]), dim=1)
    n, b = 8, 4
    terms = []
    for i in range(n):
        others = [k for k in range(n) if k != i]
        logits = torch.stack([z[i] @ z[k] for k in others]) / 0.2
        pos = others.index((i + b) % n)
        terms.append(-torch.log_softmax(logits, 0)[pos])
    torch.stack(terms).mean().backward()
    torch.testing.assert_close(ga, za2.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(gb, zb2.grad, atol=1e-6, rtol=0)


def test_aligned_views_have_lower_loss():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=g)
    loss = NTXentLoss(0.5)
    assert loss(z, z + 0.01 * torch.randn(16, 8, generator=g)) < loss(
        z, torch.randn(16, 8, generator=g)
    )


@pytest.mark.parametrize("shapes", [((4, 3), (4, 2)), ((1, 3), (1, 3)), ((4,), (4,))])
def test_bad_shapes(shapes):
    with pytest.raises(ValueError, match="B >= 2"):
        NTXentLoss()(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(0.0)
