"""ssl-train: recipes, the trainer, checkpoints, evaluation and the ssl-train CLI."""

from ssl_train.errors import CheckpointError, RecipeError, SslTrainError
from ssl_train.finetune import Finetuner, FinetuneResult
from ssl_train.finetune_recipe import FinetuneRecipe, load_finetune_recipe
from ssl_train.lars import LARS
from ssl_train.recipe import Recipe, load_recipe, recipe_from_dict
from ssl_train.trainer import Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "CheckpointError",
    "FinetuneRecipe",
    "FinetuneResult",
    "Finetuner",
    "Recipe",
    "RecipeError",
    "SslTrainError",
    "TrainResult",
    "Trainer",
    "load_finetune_recipe",
    "load_recipe",
    "recipe_from_dict",
]
