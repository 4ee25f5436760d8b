import gzip
from collections import Counter
from pathlib import Path

import pytest

from ssl_data.datasets import bundled_sample_root
from ssl_data.datasets.wordnet import bundled_sample_root as wordnet_sample_root
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


@pytest.fixture(scope="session")
def wordnet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller real WordNet: the first 24 synsets of each supersense (lexicographer file)
    of ssl-data's bundled sample, as uncompressed ``data.<part>`` files (~1,000 glosses)."""
    root = tmp_path_factory.mktemp("wordnet")
    for part in ("noun", "verb", "adj", "adv"):
        seen: Counter[str] = Counter()
        keep = []
        with gzip.open(wordnet_sample_root() / f"data.{part}.gz", "rt", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                lexfile = line.split(" ", 2)[1]
                seen[lexfile] += 1
                if seen[lexfile] <= 24:
                    keep.append(line)
        (root / f"data.{part}").write_text("".join(keep), encoding="utf-8")
    return root
