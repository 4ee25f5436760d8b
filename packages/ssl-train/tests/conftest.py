import pytest

from ssl_data.datasets import bundled_sample_root
from ssl_train import recipe_from_dict

TINY = {
    "name": "tiny",
    "threads": 2,
    "data": {"root": str(bundled_sample_root()), "limit": 256},
    "encoder": {"name": "small_cnn", "widths": [8, 16]},
    "method": {
        "name": "simclr",
        "projection_hidden_dim": 32,
        "projection_dim": 16,
        "temperature": 0.5,
    },
    "optimizer": {"name": "sgd", "lr": 0.05},
    "schedule": {"warmup_steps": 2},
    "budget": {"batch_size": 64, "steps": 6},
    "checkpoint": {"every_steps": 3, "keep_last": 2},
    "logging": {"progress_bar": False, "every_steps": 1, "plots": False},
}


@pytest.fixture
def tiny_tree():
    return dict(TINY)


@pytest.fixture
def tiny_recipe():
    return recipe_from_dict(TINY)
