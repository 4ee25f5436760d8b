"""Checkpoints: safetensors for tensors, JSON/YAML for the rest, written atomically.

Layout (docs/contracts.md): ``<run>/checkpoints/step-XXXXXXXX/`` with ``model.safetensors``,
``optimizer.safetensors``, ``trainer_state.json``, ``recipe.yaml``, ``example_inputs.safetensors``,
and ``<run>/checkpoints/latest`` naming the newest complete folder. Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssl_train.errors import CheckpointError

LATEST = "latest"


@dataclass
class TrainerState:
    """What a resume needs besides tensors: the step, the data position and loop counters.

    Augmentation parameters and the epoch order are functions of (seed, epoch, index), so the
    data position alone restores the data stream exactly; no RNG state needs saving.
    """

    step: int
    epoch: int
    batch_in_epoch: int
    recipe_sha256: str
    skipped_steps: int = 0
    scaler: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _flatten_optimizer(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"state.{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    recipe_yaml: str,
    example_inputs: dict[str, torch.Tensor],
    keep_last: int = 2,
) -> Path:
    """Write one checkpoint folder atomically, point ``latest`` at it, prune old ones.

    Args:
        run_dir: The run folder; checkpoints go to ``run_dir/checkpoints``.
        model: The method module (encoder weights under ``encoder.``).
        optimizer: Its optimiser.
        state: Step and data position.
        recipe_yaml: The resolved recipe.
        example_inputs: Real inputs for export validation (docs/contracts.md).
        keep_last: How many step folders to keep.

    Returns:
        The new checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "trainer_state.json").write_text(
            json.dumps({**state.to_json(), "optimizer": opt_meta}, indent=2)
        )
        (tmp / "recipe.yaml").write_text(recipe_yaml)
        save_file(
            {k: v.contiguous() for k, v in example_inputs.items()},
            str(tmp / "example_inputs.safetensors"),
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = root / f".{LATEST}.tmp"
    pointer_tmp.write_text(name + "\n")
    os.replace(pointer_tmp, root / LATEST)
    # Keep the newest folders by step, and always the one just written.
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
    for old in steps[: max(0, len(steps) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """Find a checkpoint folder from a run folder, its ``checkpoints/`` folder or a step folder.

    Raises:
        CheckpointError: No complete checkpoint is there.
    """
    p = Path(path)
    for root in (p / "checkpoints", p):
        pointer = root / LATEST
        if pointer.is_file():
            p = root / pointer.read_text().strip()
            break
    if not (p / "model.safetensors").is_file():
        raise CheckpointError(
            f"{path}: no checkpoint (no model.safetensors, no checkpoints/latest)"
        )
    return p


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _recipe_changes(saved: Path, current_yaml: str, most: int = 8) -> str:
    """`` (budget.steps: 6 -> 10, ...)``: the keys where two resolved recipes differ."""
    try:
        old = _flatten(yaml.safe_load(saved.read_text()))
    except (OSError, yaml.YAMLError):
        return ""
    new = _flatten(yaml.safe_load(current_yaml))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:most]]
    more = f", and {len(keys) - most} more" if len(keys) > most else ""
    return f" ({', '.join(parts)}{more})" if parts else ""


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    recipe_sha256: str,
    recipe_yaml: str | None = None,
) -> TrainerState:
    """Load weights (strict) and optimiser state into existing objects.

    ``recipe_yaml`` (the current resolved recipe) lets a recipe mismatch name the changed keys.

    Raises:
        CheckpointError: A file is missing or corrupt, the recipe differs, or the weights do not
            fit the model (the message names the file and the mismatch).
    """
    folder = resolve_checkpoint(path)
    try:
        meta = json.loads((folder / "trainer_state.json").read_text())
        weights = load_file(str(folder / "model.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors")) if optimizer else {}
    except (OSError, json.JSONDecodeError, SafetensorError) as err:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({err})") from None
    if meta.get("recipe_sha256") != recipe_sha256:
        changed = _recipe_changes(folder / "recipe.yaml", recipe_yaml) if recipe_yaml else ""
        raise CheckpointError(
            f"{folder}: written by a different recipe{changed}; resume with the recipe saved "
            f"beside it ({folder / 'recipe.yaml'}), or start a new run with --overwrite"
        )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}/model.safetensors does not fit: missing {missing}, unexpected {unexpected}"
        )
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, meta["optimizer"]))
    return TrainerState(
        meta["step"], meta["epoch"], meta["batch_in_epoch"], meta["recipe_sha256"],
        meta.get("skipped_steps", 0), meta.get("scaler", {}),
    )  # fmt: skip
