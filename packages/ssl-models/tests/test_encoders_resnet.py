import pytest
import torch

from ssl_models import ResNet, build_encoder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Full-width ResNets on a shared 2-core machine: two threads that compete with another
    # process for a core run these convolutions ~20x slower than one thread (ENVIRONMENT.md).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,dim,params",
    [
        # torchvision's resnet18/34/50 parameter counts without the 1000-way fc layer.
        ("resnet18", 512, 11_176_512),
        ("resnet34", 512, 21_284_672),
        ("resnet50", 2048, 23_508_032),
    ],
)
def test_imagenet_resnets_dims_and_sizes(name, dim, params):
    torch.manual_seed(0)
    enc = build_encoder({"name": name})
    assert isinstance(enc, ResNet)
    assert enc.output_dim == dim
    assert _params(enc) == params
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, dim) and out.dtype == torch.float32


def _stem_and_last_shapes(enc, x):
    shapes = {}
    h1 = enc.stem.register_forward_hook(lambda m, i, o: shapes.__setitem__("stem", o.shape))
    last = enc.resnet.encoder.stages[-1]
    h2 = last.register_forward_hook(lambda m, i, o: shapes.__setitem__("last", o.shape))
    with torch.no_grad():
        enc(x)
    h1.remove()
    h2.remove()
    return shapes["stem"], shapes["last"]


def test_small_variant_keeps_resolution_at_stem():
    torch.manual_seed(0)
    small = build_encoder({"name": "resnet18_small"})
    stem, last = _stem_and_last_shapes(small, torch.randn(2, 3, 32, 32))
    assert tuple(stem) == (2, 64, 32, 32)
    assert tuple(last) == (2, 512, 4, 4)
    conv = small.stem.embedder.convolution
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    # Only the stem differs from the ImageNet ResNet-18: 3*64*3*3 instead of 3*64*7*7 weights.
    assert _params(small) == 11_176_512 - 3 * 64 * (49 - 9)
    big = build_encoder({"name": "resnet18"})
    stem, last = _stem_and_last_shapes(big, torch.randn(2, 3, 32, 32))
    assert tuple(stem) == (2, 64, 8, 8)
    assert tuple(last) == (2, 512, 1, 1)


@pytest.mark.parametrize("name,dim", [("resnet34_small", 512), ("resnet50_small", 2048)])
def test_other_small_variants(name, dim):
    torch.manual_seed(0)
    enc = build_encoder({"name": name, "in_channels": 1})
    assert enc.output_dim == dim
    with torch.no_grad():
        assert enc(torch.randn(2, 1, 8, 8)).shape == (2, dim)


@pytest.mark.parametrize("channels", [1, 3])
def test_one_and_three_channels(channels):
    torch.manual_seed(0)
    enc = build_encoder({"name": "resnet18_small", "in_channels": channels}).eval()
    x = torch.randn(2, channels, 12, 12)
    with torch.no_grad():
        out, first = enc(x), enc(x[:1])
    assert out.shape == (2, 512)
    # Pooled features are the mean of the last stage's (non-negative, post-ReLU) map.
    assert (out >= 0).all()
    # Each sample's features depend only on that sample in eval mode.
    torch.testing.assert_close(first, out[:1], atol=1e-5, rtol=1e-5)


def test_bad_inputs():
    enc = build_encoder({"name": "resnet18_small", "in_channels": 1})
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        enc(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="in_channels must be 1 or 3, got 2"):
        ResNet(18, in_channels=2)
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet(101)
