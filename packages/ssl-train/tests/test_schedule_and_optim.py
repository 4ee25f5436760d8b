import math

import pytest
import torch

from ssl_train.optim import parameter_groups
from ssl_train.schedule import warmup_cosine


def test_warmup_then_cosine():
    lrs = [warmup_cosine(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[0] > 0
    assert lrs[9] == pytest.approx(1.0)  # peak at the end of warm-up
    assert max(lrs) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # monotone decay after the peak
    mid = 10 + 45
    assert lrs[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_no_weight_decay_on_1d_parameters():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(2, 3)
    )
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and len(decay["params"]) == 2
    assert all(p.ndim == 1 for p in no_decay["params"]) and len(no_decay["params"]) == 4
