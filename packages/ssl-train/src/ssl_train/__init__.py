"""ssl-train: recipes, the trainer, checkpoints, evaluation and the ssl-train CLI."""

from ssl_train.errors import CheckpointError, RecipeError, SslTrainError
from ssl_train.recipe import Recipe, load_recipe, recipe_from_dict

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Recipe",
    "RecipeError",
    "SslTrainError",
    "load_recipe",
    "recipe_from_dict",
]
