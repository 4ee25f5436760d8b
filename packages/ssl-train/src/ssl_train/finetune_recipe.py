"""The fine-tuning recipe: one YAML file (or defaults plus ``--set``), validated with pydantic.

Unknown keys are errors that list the allowed ones, as in pretraining recipes. The encoder, its
preprocessing and the dataset come from the pretraining checkpoint's own recipe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ssl_data import FASHION_MNIST_CLASSES
from ssl_train.errors import RecipeError
from ssl_train.recipe import (
    OptimizerConfig,
    ScheduleConfig,
    _format_error,
    _Section,
    _set_dotted,
    parse_overrides,
)

#: Class names of each dataset a recipe may name (index i names label i).
LABELS: dict[str, tuple[str, ...]] = {"fashion_mnist": FASHION_MNIST_CLASSES}


class FinetuneData(_Section):
    """The labelled data: the pretraining recipe's dataset and preprocessing
    (:mod:`ssl_train.finetune_data` says where each dataset's labels come from)."""

    root: str | None = Field(None, description="Dataset folder; default: the encoder recipe's")
    path: str | None = Field(
        None,
        description="image_folder (audio_folder) runs: a folder with one sub-folder of images "
        "(clips) per class (default: the recipe's data.eval_path, else data.path); text runs: "
        "a labelled text file, one 'label<TAB>text' per line (default: the corpus's labels, "
        "wordnet/fortunes)",
    )
    limit: int | None = Field(None, ge=1, description="First N examples of each split; null: all")
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="Part of the train split held out for validation"
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1,
        description="Class folders (images, clips) and labelled text files: part of each "
        "class held out as the test split (fixed seed)",
    )  # fmt: skip


#: ``optimizer.lr`` when the recipe leaves it out: a linear head on normalised features takes a
#: larger rate than a whole pretrained network.
DEFAULT_LR = {"linear": 0.01, "full": 0.001}


class FinetuneOptimizer(OptimizerConfig):
    """As the pretraining ``optimizer`` section, with fine-tuning defaults: AdamW, weight decay
    0.05 (MAE, arXiv:2111.06377 appendix A.3), ``lr`` from :data:`DEFAULT_LR` by mode."""

    weight_decay: float = Field(0.05, ge=0)


#: ``budget.batch_size`` of a speech run when the recipe leaves it out: speech datasets are small
#: (spoken digits: 63 training clips after validation) and a whole clip costs far more per step
#: than an image.
SPEECH_BATCH_SIZE = 16


class FinetuneBudget(_Section):
    """How long to train: epochs over the training part, with an optional wall-clock cap."""

    batch_size: int = Field(
        256, ge=2,
        description=f"Examples (images, texts or clips) per step; speech runs: "
        f"{SPEECH_BATCH_SIZE} unless set",
    )  # fmt: skip
    epochs: int = Field(30, ge=1, description="Most epochs (early stopping may end sooner)")
    max_minutes: float | None = Field(None, gt=0, description="Wall-clock cap")


class FinetuneEarlyStopping(_Section):
    """Stop after ``patience`` epochs without a validation top-1 above the best + min_delta."""

    patience: int = Field(5, ge=1, description="Epochs")
    min_delta: float = Field(0.0, ge=0)


class FinetuneRecipe(_Section):
    """Everything a fine-tuning run needs besides the pretrained checkpoint."""

    name: str = "finetune"
    mode: Literal["linear", "full"] = "linear"
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="Default: the encoder recipe's")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: FinetuneData = FinetuneData()
    batch_norm: bool = Field(True, description="Parameter-free batch norm before the head")
    optimizer: FinetuneOptimizer = FinetuneOptimizer()
    layer_decay: float | None = Field(
        None, gt=0, le=1, description="Layer-wise LR decay (ViT encoders, mode full only)"
    )
    schedule: ScheduleConfig = ScheduleConfig()
    budget: FinetuneBudget = FinetuneBudget()
    early_stopping: FinetuneEarlyStopping = FinetuneEarlyStopping()
    progress_bar: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_lr(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("mode", "linear") in DEFAULT_LR:
            opt = data.get("optimizer")
            if opt is None or (isinstance(opt, dict) and "lr" not in opt):
                data = {**data, "optimizer": {**(opt or {}), "lr": DEFAULT_LR[data.get("mode", "linear")]}}  # fmt: skip
        return data

    @model_validator(mode="after")
    def _check_mode(self) -> FinetuneRecipe:
        if self.layer_decay is not None and self.mode != "full":
            raise ValueError(f"layer_decay={self.layer_decay} needs mode 'full', got {self.mode!r}")
        return self

    def to_yaml(self) -> str:
        """The resolved recipe as YAML."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def finetune_recipe(
    tree: Mapping[str, Any] | None = None, overrides: Sequence[str] = (), source: str = "<dict>"
) -> FinetuneRecipe:
    """Validate a fine-tuning recipe (a YAML file's mapping) after ``--set`` overrides.

    Raises:
        RecipeError: The message names every bad key and what is allowed.
    """
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(tree or {})))
    parsed = parse_overrides(overrides)
    for key, value in parsed:
        _set_dotted(data, key, value)
    try:
        return FinetuneRecipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_error(err, source, FinetuneRecipe, parsed)) from None


def load_finetune_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> FinetuneRecipe:
    """Read a fine-tuning recipe YAML (None: defaults) and apply ``--set`` overrides.

    Raises:
        RecipeError: Missing file, not a YAML mapping, or invalid.
    """
    if path is None:
        return finetune_recipe({}, overrides, "<defaults>")
    p = Path(path)
    try:
        tree = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise RecipeError(f"fine-tuning recipe {p} not found") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"fine-tuning recipe {p} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise RecipeError(f"fine-tuning recipe {p} must be a mapping, got {type(tree).__name__}")
    return finetune_recipe(tree, overrides, str(p))
