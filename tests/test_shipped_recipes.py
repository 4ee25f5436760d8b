"""Every shipped recipe trains (a few steps on real data) and exports a valid bundle.

Image recipes: real Fashion-MNIST, exported by ``export_checkpoint``. Text recipes: ssl-data's
real WordNet sample, exported from the run's Hugging Face folder by ``export_hf_model``.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from PIL import Image

from ssl_data import load_fashion_mnist
from ssl_data.datasets import bundled_sample_root
from ssl_data.datasets.wordnet import bundled_sample_root as wordnet_sample_root
from ssl_serve.export import export_checkpoint, export_hf_model
from ssl_train import recipe_from_dict
from ssl_train.recipes import shipped_recipes
from ssl_train.trainer import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_recipe_trains_and_exports(name, tmp_path):
    tree = yaml.safe_load(shipped_recipes()[name].read_text())
    tree["budget"].pop("epochs", None)  # two steps instead
    overrides = ["data.limit=96", "budget.batch_size=32", "budget.steps=2",
                 "logging.progress_bar=false", "logging.plots=false"]  # fmt: skip
    if tree["data"]["dataset"] in ("spoken_digits", "audio_folder", "spoken_words"):
        _speech_recipe_trains_and_exports(name, tree, tmp_path)
        return
    if tree["data"]["dataset"] in ("wordnet", "fortunes", "text_file"):
        _text_recipe_trains_and_exports(name, tree, overrides, tmp_path)
        return
    if tree["data"]["dataset"] == "image_folder":  # real Fashion-MNIST images as PNG files
        images, _ = load_fashion_mnist("train", root=bundled_sample_root())
        (tmp_path / "images").mkdir()
        for i, image in enumerate(images[:96]):
            Image.fromarray(image).save(tmp_path / "images" / f"{i:03d}.png")
        overrides.append(f"data.path={tmp_path / 'images'}")
    else:
        overrides.append(f"data.root={bundled_sample_root()}")
    recipe = recipe_from_dict(tree, overrides)
    result = Trainer(recipe, tmp_path / "run").fit()
    assert result.steps == 2 and math.isfinite(result.final_loss)

    bundle = export_checkpoint(tmp_path / "run", tmp_path / "bundle", name=name.replace("_", "-"))
    assert bundle["validation"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(
        str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    size = recipe.data.image_size
    x = np.zeros((3, recipe.data.channels, size, size), dtype=np.float32)
    out = session.run(None, {"pixel_values": x})[0]
    assert out.shape == (3, bundle["embedding_dim"])


def _text_recipe_trains_and_exports(name, tree, overrides, tmp_path):
    overrides.append("tokenizer.train.vocab_size=500")
    if tree["data"]["dataset"] == "wordnet":
        overrides += [f"data.root={wordnet_sample_root()}", "evaluation.bank_size=100",
                      "evaluation.heldout_size=50"]  # fmt: skip
    recipe = recipe_from_dict(tree, overrides)
    result = Trainer(recipe, tmp_path / "run").fit()
    assert result.steps == 2 and math.isfinite(result.final_loss)

    # `ssl-serve export RUN` on the checkpoint itself, for every text method.
    bundle = export_checkpoint(tmp_path / "run", tmp_path / "bundle", name=name.replace("_", "-"))
    assert bundle["modality"] == "text" and bundle["validation"]["max_abs_diff"] <= 1e-4
    if result.hf_model is not None:  # encoders with a Hugging Face twin also write RUN/hf
        assert result.hf_model == tmp_path / "run" / "hf"
        texts = ["A cat sat on the mat.", "a tall perennial woody plant having a main trunk"]
        hf = export_hf_model(result.hf_model, tmp_path / "hf-bundle", name="hf",
                             validation_texts=texts)  # fmt: skip
        assert hf["validation"]["max_abs_diff"] <= 1e-4
        assert hf["validation"]["tokenizer_mismatches"] == 0

    session = ort.InferenceSession(
        str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feeds = {i.name: np.array([[2, 10, 3]], dtype=np.int64) for i in session.get_inputs()}
    if "attention_mask" in feeds:
        feeds["attention_mask"] = np.ones((1, 3), dtype=np.int64)
    if "token_type_ids" in feeds:
        feeds["token_type_ids"] = np.zeros((1, 3), dtype=np.int64)
    out = session.run(None, feeds)[0]
    assert out.shape == (1, bundle["embedding_dim"])


def _speech_recipe_trains_and_exports(name, tree, tmp_path):
    # Real spoken digits (espeak-ng renders, cached), a 2-block encoder, two steps.
    overrides = ["budget.batch_size=16", "budget.steps=2", "encoder.num_layers=2",
                 "logging.progress_bar=false", "logging.plots=false"]  # fmt: skip
    if tree["method"]["name"] == "hubert":
        overrides.append("method.num_clusters=16")
    recipe = recipe_from_dict(tree, overrides)
    result = Trainer(recipe, tmp_path / "run").fit()
    assert result.steps == 2 and math.isfinite(result.final_loss)

    # `ssl-serve export RUN` dispatches on data.dataset to the audio exporter.
    bundle = export_checkpoint(tmp_path / "run", tmp_path / "bundle", name=name.replace("_", "-"))
    assert bundle["modality"] == "audio" and bundle["validation"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(
        str(tmp_path / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feeds = {"input_values": rng.standard_normal((3, 16000)).astype(np.float32),
             "attention_mask": np.ones((3, 16000), dtype=np.int64)}  # fmt: skip
    out = session.run(None, feeds)[0]
    assert out.shape == (3, bundle["embedding_dim"])
