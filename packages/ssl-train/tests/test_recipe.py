import pytest
import yaml

from ssl_train import RecipeError, load_recipe, recipe_from_dict
from ssl_train.recipes import shipped_recipes


def test_shipped_recipes_validate():
    recipes = shipped_recipes()
    assert "fashion_mnist_simclr" in recipes
    for path in recipes.values():
        r = load_recipe(path)
        assert r.budget.batch_size >= 2


def test_unknown_key_is_named(tiny_tree):
    with pytest.raises(
        RecipeError, match=r"optimiser: unknown key; allowed: name, seed, threads, data"
    ):
        recipe_from_dict({**tiny_tree, "optimiser": {"lr": 0.1}})
    with pytest.raises(RecipeError, match=r"optimizer\.lrr: unknown key"):
        recipe_from_dict({**tiny_tree, "optimizer": {"lrr": 0.1}})


def test_bad_literal_lists_allowed_values(tiny_tree):
    with pytest.raises(
        RecipeError, match=r"optimizer\.name: .*'sgd', 'adamw' or 'lars'.*got 'lamb'"
    ):
        recipe_from_dict({**tiny_tree, "optimizer": {"name": "lamb"}})


def test_impossible_value(tiny_tree):
    with pytest.raises(RecipeError, match=r"optimizer\.lr: Input should be greater than 0"):
        recipe_from_dict(tiny_tree, ["optimizer.lr=-1"])


def test_budget_needs_exactly_one_length(tiny_tree):
    both = {**tiny_tree, "budget": {**tiny_tree["budget"], "epochs": 2}}
    with pytest.raises(RecipeError, match="exactly one of budget.steps and budget.epochs"):
        recipe_from_dict(both)
    with pytest.raises(RecipeError, match="exactly one of budget.steps and budget.epochs"):
        recipe_from_dict(tiny_tree, ["budget.epochs=2", "budget.steps=3"])


def test_overriding_one_budget_length_replaces_the_other(tiny_tree):
    """A recipe budgeted in steps (tiny: 6) switches to epochs with one --set, and back."""
    assert recipe_from_dict(tiny_tree).budget.steps == 6
    epochs = recipe_from_dict(tiny_tree, ["budget.epochs=2"]).budget
    assert (epochs.steps, epochs.epochs) == (None, 2)
    in_epochs = {**tiny_tree, "budget": {"batch_size": 64, "epochs": 3}}
    steps = recipe_from_dict(in_epochs, ["budget.steps=5"]).budget
    assert (steps.steps, steps.epochs) == (5, None)
    # Clearing one without setting the other still fails, naming the override.
    with pytest.raises(RecipeError, match=r"exactly one .*\[from --set budget\.steps=null\]"):
        recipe_from_dict(tiny_tree, ["budget.steps=null"])


def test_unknown_key_from_set_names_the_override_and_the_closest_key(tiny_tree):
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(tiny_tree, ["data.pth=my_images"], source="recipe.yaml")
    msg = str(err.value)
    assert msg.startswith("invalid recipe recipe.yaml with its --set overrides:")
    assert "data.pth: unknown key; allowed: dataset, root" in msg
    assert "(did you mean 'path'?) [from --set data.pth=my_images]" in msg
    with pytest.raises(RecipeError, match=r"budgt: unknown key.*did you mean 'budget'"):
        recipe_from_dict(tiny_tree, ["budgt.steps=3"])


def test_unknown_encoder_argument_is_an_error(tiny_tree):
    with pytest.raises(
        RecipeError, match="encoder: .*depth.*accepts: in_channels, widths, stem_stride"
    ):
        recipe_from_dict(tiny_tree, ["encoder.depth=3"])


def test_channels_must_agree(tiny_tree):
    with pytest.raises(RecipeError, match="in_channels=3 but data.channels=1"):
        recipe_from_dict(tiny_tree, ["encoder.in_channels=3"])


def test_overrides_parse_yaml_values_and_round_trip(tiny_tree, tmp_path):
    r = recipe_from_dict(
        tiny_tree, ["optimizer.lr=0.3", "encoder.widths=[4, 8]", "budget.max_minutes=1.5"]
    )
    assert r.optimizer.lr == 0.3 and r.encoder["widths"] == [4, 8] and r.budget.max_minutes == 1.5
    p = tmp_path / "r.yaml"
    p.write_text(r.to_yaml())
    again = load_recipe(p)
    assert again == r and again.sha256() == r.sha256()
    assert yaml.safe_load(r.to_yaml())["schedule"] == {"warmup_steps": 2, "final_lr_ratio": 0.0}


def test_missing_file_and_bad_override(tiny_tree, tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="key.sub=value"):
        recipe_from_dict(tiny_tree, ["optimizer.lr"])
