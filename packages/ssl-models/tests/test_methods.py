"""Every two-view method on a tiny SmallCNN: finite loss, gradients where they belong, training
lowers the loss, and the export contract (embed = encoder output, weights under ``encoder.``)."""

import copy
import inspect

import pytest
import torch

from ssl_models import (
    BYOL,
    METHODS,
    BarlowTwins,
    MoCoV2,
    MoCoV3,
    MomentumSSLMethod,
    SimCLR,
    SimSiam,
    SmallCNN,
    VICReg,
    build_method,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Small ops run many times slower with 2 threads when another process holds a core.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = {
    "simclr": {"projection_hidden_dim": 32, "projection_dim": 16},
    "moco_v2": {"projection_dim": 16, "queue_size": 64},
    "moco_v3": {"projection_hidden_dim": 32, "projection_dim": 16, "prediction_hidden_dim": 32},
    "byol": {"projection_hidden_dim": 32, "projection_dim": 16, "prediction_hidden_dim": 32},
    "simsiam": {"projection_hidden_dim": 32, "projection_dim": 32, "prediction_hidden_dim": 8},
    "barlow_twins": {"projection_hidden_dim": 32, "projection_dim": 32},
    "vicreg": {"projection_hidden_dim": 32, "projection_dim": 32},
}
CLASSES = {
    "simclr": SimCLR,
    "moco_v2": MoCoV2,
    "moco_v3": MoCoV3,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
}


def _method(name, seed=0):
    torch.manual_seed(seed)
    return build_method({"name": name, **SMALL[name]}, SmallCNN(widths=(8, 16)))


def _views(seed=0, b=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, 16, 16, generator=g)
    return [
        x + 0.1 * torch.randn(x.shape, generator=g),
        x + 0.1 * torch.randn(x.shape, generator=g),
    ]


@pytest.mark.parametrize("name", list(SMALL))
def test_registered(name):
    assert METHODS[name] is CLASSES[name]
    assert isinstance(_method(name), CLASSES[name])


@pytest.mark.parametrize("name", list(SMALL))
def test_loss_and_gradients(name):
    m = _method(name)
    loss = m.training_loss(_views())
    assert loss.ndim == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    if isinstance(m, MomentumSSLMethod):
        for module in (m.momentum_encoder, m.momentum_projection_head):
            assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    with pytest.raises(ValueError, match="needs 2 views"):
        m.training_loss(_views()[:1])


@pytest.mark.parametrize("name", list(SMALL))
def test_embed_is_the_encoder_and_weights_sit_under_encoder_prefix(name):
    m = _method(name).eval()
    x = _views()[0]
    torch.testing.assert_close(m.embed(x), m.encoder(x))
    keys = {k for k in m.state_dict() if k.startswith("encoder.")}
    assert keys == {f"encoder.{k}" for k in m.encoder.state_dict()}


@pytest.mark.parametrize("name", list(SMALL))
def test_a_few_steps_lower_the_loss(name):
    m = _method(name)
    views = _views(1)
    # MoCo v2 on one fixed batch would fill its queue with that batch's own keys (its positives);
    # it trains and is scored against the initial queue of random negatives instead.
    queue = copy.deepcopy(m.criterion.state_dict())

    def loss_of(model):
        if isinstance(model, MoCoV2):
            model.criterion.load_state_dict(queue)
        return model.training_loss(views)

    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    before = loss_of(copy.deepcopy(m)).item()
    steps = 12
    for step in range(1, steps + 1):
        loss = loss_of(m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.after_optimizer_step(step, steps)
    after = loss_of(copy.deepcopy(m)).item()
    assert after < before - 0.02 * abs(before) - 1e-3, (before, after)


@pytest.mark.parametrize("name", list(SMALL))
def test_training_loss_under_bfloat16_autocast_is_finite(name):
    m = _method(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.training_loss(_views())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.encoder.parameters())


def test_moco_v2_enqueues_the_momentum_keys():
    m = _method("moco_v2").train()
    views = _views()
    ptr = int(m.criterion.queue_ptr)
    probe = copy.deepcopy(m)
    m.training_loss(views)
    keys = torch.nn.functional.normalize(probe.momentum_forward(views[1]), dim=1)
    torch.testing.assert_close(m.criterion.queue[ptr : ptr + 16], keys)
    assert int(m.criterion.queue_ptr) == (ptr + 16) % 64


def _defaults(cls):
    return {k: v.default for k, v in inspect.signature(cls).parameters.items() if k != "encoder"}


def test_paper_defaults():
    assert _defaults(BYOL) == {
        "projection_hidden_dim": 4096,
        "projection_dim": 256,
        "prediction_hidden_dim": 4096,
        "base_momentum": 0.996,
        "momentum_schedule": "cosine",
    }
    assert _defaults(MoCoV3) == {
        "projection_hidden_dim": 4096,
        "projection_dim": 256,
        "projection_layers": 3,
        "prediction_hidden_dim": 4096,
        "temperature": 0.2,
        "base_momentum": 0.99,
        "momentum_schedule": "cosine",
        "gather_distributed": False,
    }
    assert _defaults(MoCoV2) == {
        "projection_hidden_dim": None,
        "projection_dim": 128,
        "queue_size": 65536,
        "temperature": 0.2,
        "base_momentum": 0.999,
        "momentum_schedule": "constant",
        "gather_distributed": False,
        "shuffle_batch_norm": True,
    }
    assert _defaults(SimSiam) == {
        "projection_hidden_dim": 2048,
        "projection_dim": 2048,
        "prediction_hidden_dim": 512,
    }
    assert _defaults(BarlowTwins) == {
        "projection_hidden_dim": 8192,
        "projection_dim": 8192,
        "lambda_param": 5e-3,
        "gather_distributed": False,
    }
    assert _defaults(VICReg) == {
        "projection_hidden_dim": 8192,
        "projection_dim": 8192,
        "lambda_param": 25.0,
        "mu_param": 25.0,
        "nu_param": 1.0,
        "gather_distributed": False,
    }
    # the loss defaults the methods pass on
    assert _method("moco_v3").criterion.temperature == 0.2
    assert _method("barlow_twins").criterion.lambda_param == 5e-3
    vic = _method("vicreg").criterion
    assert (vic.lambda_param, vic.mu_param, vic.nu_param, vic.eps) == (25.0, 25.0, 1.0, 1e-4)
    # MoCo v2's head has its hidden width equal to the encoder's, and no batch norm
    v2 = _method("moco_v2")
    assert [type(m).__name__ for m in v2.projection_head.layers] == ["Linear", "ReLU", "Linear"]
    assert v2.projection_head.layers[0].out_features == 16
