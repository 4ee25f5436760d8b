"""ELMo's biLM and skip-gram through the trainer: the shipped recipes on real WordNet glosses,
exact resume, kNN evaluation, skip-gram's pairs and noise words, the run's word vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from tokenizers import Tokenizer

import ssl_models
from ssl_data.datasets.wordnet import bundled_sample_root
from ssl_train import recipe_from_dict
from ssl_train.cli import main
from ssl_train.recipes import shipped_recipes
from ssl_train.skip_gram_data import SkipGramPairs, SkipGramPairsView
from ssl_train.trainer import Trainer
from ssl_train.word_vectors import WORD_VECTORS_FILE, load_word_vectors

STEPS = 4
RECIPES = ("wordnet_bilm", "wordnet_skip_gram")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _recipe(name, tokenizer=None):
    tree = yaml.safe_load(shipped_recipes()[name].read_text())
    tree["tokenizer"]["train"]["vocab_size"] = 500
    if tokenizer is not None:
        tree["tokenizer"] = {"path": str(tokenizer)}
    overrides = [f"data.root={bundled_sample_root()}", "data.limit=96", "data.max_length=16",
                 "budget.batch_size=32", f"budget.steps={STEPS}", "evaluation.bank_size=100",
                 "evaluation.heldout_size=50", "threads=1", "checkpoint.every_steps=100",
                 "logging.every_steps=1", "logging.progress_bar=false", "logging.plots=false"]  # fmt: skip
    return recipe_from_dict(tree, overrides)


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _latest(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each shipped recipe, STEPS steps of 32 real glosses (3 steps an epoch: kNN at 3 and 4)."""
    torch.set_num_threads(1)
    out = {}
    for name in RECIPES:
        run = tmp_path_factory.mktemp(name)
        result = Trainer(_recipe(name), run).fit()
        out[name] = (run, result)
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_with_online_knn(runs, name):
    run, result = runs[name]
    assert result.steps == STEPS and np.isfinite(result.final_loss)
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
    assert len(knn) == 2 and all(0.0 <= k <= 1.0 for k in knn)
    if name == "wordnet_bilm":
        # Both directions start near uniform over the vocabulary: NLL ≈ 2 ln V at step 1.
        vocab = Tokenizer.from_file(str(run / "tokenizer.json")).get_vocab_size()
        assert abs(rows[0]["loss"] - 2 * np.log(vocab)) < 0.2
    else:
        # Output vectors start at zero: every score is 0, so the loss is (1 + K) ln 2.
        assert rows[0]["loss"] == pytest.approx(6 * np.log(2), abs=1e-5)
        assert (run / WORD_VECTORS_FILE).is_file()


@pytest.mark.parametrize("name", RECIPES)
def test_resume_in_a_new_trainer_is_exact(runs, name, tmp_path):
    full, _ = runs[name]
    recipe = _recipe(name, tokenizer=full / "tokenizer.json")
    assert Trainer(recipe, tmp_path / "half").fit(stop_at_step=STEPS // 2).steps == STEPS // 2
    assert Trainer(recipe, tmp_path / "half", resume=True).fit().steps == STEPS
    want = [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(full)]
    assert [(r["step"], r["loss"], r.get("knn_top1")) for r in _rows(tmp_path / "half")] == want
    a = load_file(str(_latest(full) / "model.safetensors"))
    b = load_file(str(_latest(tmp_path / "half") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_offline_knn_embeds_skip_gram_texts_as_mean_word_vectors(runs, capsys):
    run, _ = runs["wordnet_skip_gram"]
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--k", "20", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["knn_top1_k20"] <= 1.0 and result["queries"] > 0

    # A gloss's embedding is the mean of its real tokens' word vectors (file = checkpoint).
    recipe = _recipe("wordnet_skip_gram")
    method = ssl_models.build_method(recipe.method, ssl_models.build_encoder(
        {**recipe.encoder, "vocab_size": 500}))  # fmt: skip
    method.load_state_dict(load_file(str(_latest(run) / "model.safetensors")))
    wv = load_word_vectors(run)
    assert torch.equal(wv.vectors, method.encoder.word_embeddings.weight.detach())
    tokenizer = Tokenizer.from_file(str(run / "tokenizer.json"))
    enc = tokenizer.encode("a tall perennial woody plant having a main trunk")
    ids = torch.tensor([[*enc.ids, 0, 0]])
    mask = torch.tensor([[1] * len(enc.ids) + [0, 0]])
    expected = torch.stack([wv[t] for t in enc.tokens]).mean(0)
    assert torch.allclose(method.embed(ids, mask)[0], expected, atol=1e-6)


def test_word_vector_nearest_neighbour_is_itself(runs):
    run, _ = runs["wordnet_skip_gram"]
    wv = load_word_vectors(run)
    assert len(wv) == 500
    for word in ("tree", "plant", "[UNK]"):
        if word not in wv:
            continue
        (nearest, cosine), *_ = wv.most_similar(wv[word], topn=3)
        assert nearest == word and cosine == pytest.approx(1.0, abs=1e-6)
        assert wv.similarity(word, word) == pytest.approx(1.0, abs=1e-6)
    # word2vec's text format: header "V D", then the token and D floats a line.
    lines = (run / WORD_VECTORS_FILE).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "500 100" and len(lines[1].split(" ")) == 101


TOY = [
    np.array(t) for t in ([5, 6, 7, 5, 8, 5, 6, 9, 5, 5], [6, 5, 7, 7, 5, 1], [8, 9, 5, 6, 5, 5, 7])
]


def _pairs(**view):
    return SkipGramPairs(TOY, 10, SkipGramPairsView(**view), window=2, num_negatives=20,
                         seed=3, special_ids=(0, 1))  # fmt: skip


def test_pairs_match_the_window_and_skip_special_tokens():
    # Full window, no subsampling: exactly ssl-models' skip_gram_pairs on the non-special ids.
    data = _pairs(subsample_threshold=None, dynamic_window=False)
    batch = data.batch(np.array([0, 1, 2]), epoch=0)
    centers, contexts = [], []
    for t in TOY:
        real = torch.from_numpy(t[t > 1])[None]
        c, o = ssl_models.text.skip_gram_pairs(real, None, 2)
        centers.append(c)
        contexts.append(o)
    assert torch.equal(batch["center"], torch.cat(centers))
    assert torch.equal(batch["context"], torch.cat(contexts))
    assert batch["negatives"].shape == (len(batch["center"]), 20)
    assert int(data.counts[1]) == 0 and int(data.counts[5]) == 10


def test_negatives_never_equal_the_context_and_are_keyed_by_epoch_and_index():
    data = _pairs(subsample_threshold=0.1)  # keeps about 0.69 of id 5, every other word
    for epoch in range(5):
        b = data.batch(np.array([2, 0, 1]), epoch)
        assert b["negatives"].numel() > 0
        assert not (b["negatives"] == b["context"][:, None]).any()
        assert not np.isin(b["negatives"].numpy(), [0, 1]).any()  # special tokens
    one = data.batch(np.array([1]), 4)
    # Another instance (another process), another batch composition: the same draws for text 1.
    again = _pairs(subsample_threshold=0.1).batch(np.array([0, 1]), 4)
    n0 = len(data.batch(np.array([0]), 4)["center"])
    for k in ("center", "context", "negatives"):
        assert torch.equal(one[k], again[k][n0:])
    assert not torch.equal(data.batch(np.array([1]), 3)["negatives"], one["negatives"])


def test_noise_follows_the_unigram_to_the_three_quarters():
    # Counts 10, 4, 4, 2, 2 of ids 5, 6, 7, 8, 9: P_n(w) ∝ count ** 0.75, by frequency and chi².
    data = _pairs()
    expected = np.zeros(10)
    for w, c in {5: 10, 6: 4, 7: 4, 8: 2, 9: 2}.items():
        expected[w] = c**0.75
    expected /= expected.sum()
    assert np.allclose(data.noise, expected)
    n = 200_000
    draws = data.sample_noise(np.random.default_rng(0), (n,))
    freq = np.bincount(draws, minlength=10) / n
    assert np.abs(freq - expected).max() < 0.005
    seen = expected > 0
    chi2 = float((((freq[seen] - expected[seen]) * n) ** 2 / (expected[seen] * n)).sum())
    assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001
    assert freq[~seen].sum() == 0
