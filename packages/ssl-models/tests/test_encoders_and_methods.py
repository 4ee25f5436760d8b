import pytest
import torch

from ssl_models import (
    ProjectionHead,
    SimCLR,
    SmallCNN,
    UnknownNameError,
    build_encoder,
    build_method,
)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 17)])
def test_small_cnn_output_dim(channels, size):
    enc = SmallCNN(in_channels=channels, widths=(8, 16))
    out = enc(torch.zeros(3, channels, size, size))
    assert out.shape == (3, enc.output_dim) == (3, 16)


def test_small_cnn_default_size():
    enc = build_encoder({"name": "small_cnn"})
    assert enc.output_dim == 128
    assert 0.25e6 < sum(p.numel() for p in enc.parameters()) < 0.35e6


def test_wrong_channels_message():
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        SmallCNN(in_channels=1)(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="1 or 3"):
        SmallCNN(in_channels=2)


def test_registry_lists_known_names():
    with pytest.raises(
        UnknownNameError, match=r"unknown encoder 'resnet9'; known: \[.*'small_cnn'.*\]"
    ):
        build_encoder({"name": "resnet9"})
    with pytest.raises(UnknownNameError, match="unknown method 'byol0'"):
        build_method({"name": "byol0"}, SmallCNN())


def test_projection_head_layers():
    head = ProjectionHead(16, 32, 8, num_layers=2)
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 8)]
    assert head(torch.zeros(4, 16)).shape == (4, 8)


def test_simclr_embed_is_encoder_output_and_weights_under_encoder_prefix():
    torch.manual_seed(0)
    m = build_method({"name": "simclr", "projection_dim": 16}, SmallCNN(widths=(8, 16)))
    assert isinstance(m, SimCLR)
    m.eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(m.embed(x), m.encoder(x))
    enc_keys = {k for k in m.state_dict() if k.startswith("encoder.")}
    assert enc_keys == {f"encoder.{k}" for k in m.encoder.state_dict()}


def test_simclr_loss_trains_down():
    torch.manual_seed(0)
    m = build_method({"name": "simclr", "temperature": 0.5}, SmallCNN(widths=(8, 16)))
    x = torch.randn(16, 1, 28, 28)
    views = [x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = m.training_loss(views).item()
    for _ in range(20):
        loss = m.training_loss(views)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.3
    with pytest.raises(ValueError, match="needs 2 views"):
        m.training_loss([x])


def test_simclr_views_in_one_pass_or_one_pass_per_view():
    torch.manual_seed(0)
    joint = build_method({"name": "simclr", "projection_dim": 16}, SmallCNN(widths=(8, 16)))
    split = build_method({"name": "simclr", "projection_dim": 16, "views_in_one_pass": False},
                         SmallCNN(widths=(8, 16)))  # fmt: skip
    initial = {k: v.clone() for k, v in joint.state_dict().items()}
    split.load_state_dict(initial)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 1, 28, 28, generator=g) for _ in range(2)]
    # Per view: NT-Xent of each view's own pass (batch-norm statistics of that view alone).
    z0, z1 = (split.projection_head(split.encoder(v)) for v in views)
    expected = split.criterion(z0, z1)
    torch.testing.assert_close(split.training_loss(views), expected, rtol=0, atol=1e-6)
    # In train mode the joint pass normalises over both views, so the losses differ ...
    assert abs(joint.training_loss(views).item() - expected.item()) > 1e-4
    # ... and with the same running statistics (eval mode) they are the same computation.
    for m in (joint, split):
        m.load_state_dict(initial)
        m.eval()
    torch.testing.assert_close(
        joint.training_loss(views), split.training_loss(views), atol=1e-5, rtol=0
    )
