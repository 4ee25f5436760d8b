import pytest
import torch
from torch import nn

from ssl_models import LinearClassifier, PredictionHead, ProjectionHead


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _layout(head):
    return [type(m).__name__ for m in head.layers]


def test_default_projection_head_keeps_its_state_dict_layout():
    # SimCLR checkpoints written before these options existed must still load.
    head = ProjectionHead(16, 32, 8)
    assert list(head.state_dict()) == [
        "layers.0.weight",
        "layers.1.weight",
        "layers.1.bias",
        "layers.1.running_mean",
        "layers.1.running_var",
        "layers.1.num_batches_tracked",
        "layers.3.weight",
        "layers.3.bias",
    ]


def test_paper_configurations():
    simsiam = ProjectionHead(16, 32, 24, num_layers=3, batch_norm_last=True)
    assert _layout(simsiam) == [
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "BatchNorm1d",
    ]
    assert simsiam.layers[6].bias is None and not simsiam.layers[7].affine
    moco_v2 = ProjectionHead(16, 16, 8, num_layers=2, batch_norm=False)
    assert _layout(moco_v2) == ["Linear", "ReLU", "Linear"]
    assert moco_v2.layers[0].bias is not None
    barlow = ProjectionHead(16, 32, 32, num_layers=3, bias_last=False)
    linears = [m for m in barlow.layers if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 32), (32, 32)]
    assert linears[-1].bias is None
    single = ProjectionHead(16, 1, 8, num_layers=1)
    assert _layout(single) == ["Linear"]
    # batch norm on the output: every output dimension has zero mean, unit variance in training
    out = simsiam(torch.randn(64, 16))
    torch.testing.assert_close(out.mean(0), torch.zeros(24), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(24), atol=1e-3, rtol=0)


def test_prediction_head():
    p = PredictionHead(8, 32)
    assert p(torch.randn(4, 8)).shape == (4, 8)
    assert _layout(p) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert PredictionHead(8, 4, output_dim=6)(torch.randn(3, 8)).shape == (3, 6)
    with pytest.raises(ValueError, match=">= 1"):
        PredictionHead(8, 0)


def test_linear_classifier():
    torch.manual_seed(0)
    clf = LinearClassifier(5, 3)
    assert clf.linear.bias.abs().sum() == 0 and 0.002 < clf.linear.weight.std() < 0.03
    x = torch.randn(7, 5)
    torch.testing.assert_close(clf(x), x @ clf.linear.weight.T + clf.linear.bias)
    bn = LinearClassifier(5, 3, batch_norm=True)
    x = 10 + 4 * torch.randn(32, 5)
    normed = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(bn(x), normed @ bn.linear.weight.T, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"expected \(B, 5\)"):
        clf(torch.randn(2, 4))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        LinearClassifier(5, 1)
