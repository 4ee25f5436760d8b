"""Checkpoints: safetensors for tensors, JSON/YAML for the rest, written atomically.

Layout (docs/contracts.md): ``<run>/checkpoints/step-XXXXXXXX/`` with ``model.safetensors`` (the
method's state dict: encoder, heads, EMA/teacher networks, queues and centres), ``optimizer.safetensors``,
``rng_state.safetensors``, ``recipe.yaml``, ``example_inputs.safetensors`` and, written last,
``trainer_state.json`` (step, data position, scheduler, scaler, RNG states of Python and numpy,
monitors, SHA-256 of every other file). ``<run>/checkpoints/latest`` names the newest complete
folder. A folder is written under a hidden temporary name, flushed to disk and renamed into
place, so a crash (even ``kill -9``) never leaves a broken checkpoint under a ``step-*`` name.
Nothing is unpickled on load.
"""

from __future__ import annotations

import hashlib
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
from ssl_train.fsdp import shard_model_state, shard_optimizer_state
from ssl_train.rng_state import RngState

LATEST = "latest"
FORMAT_VERSION = 2
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng_state.safetensors"
STATE_FILE = "trainer_state.json"
RECIPE_FILE = "recipe.yaml"
EXAMPLES_FILE = "example_inputs.safetensors"


@dataclass
class TrainerState:
    """What a resume needs besides the model and optimiser tensors.

    Attributes:
        step: Optimiser steps done.
        epoch: Epoch of the next batch (``step // batches_per_epoch``).
        batch_in_epoch: Index of the next batch within its epoch: the data position. The epoch
            order and every augmentation are functions of (seed, epoch, index), so the position
            alone restores the data stream, under any world size (batches are global).
        recipe_sha256: Hash of the resolved recipe that wrote the checkpoint.
        skipped_steps: Steps skipped for a non-finite loss so far.
        scaler: ``torch.amp.GradScaler.state_dict()`` (empty without fp16).
        world_size: Processes of the run that wrote the checkpoint.
        dataset_size: Training images; a resume with another dataset is refused.
        schedule: The learning-rate schedule (:meth:`WarmupCosine.state_dict`).
        monitor: Online evaluation and early-stopping state (:class:`ssl_train.monitor.Monitor`).
        elapsed_s: Training seconds before this checkpoint, over all resumed segments.
        loggers: Logger state to continue, e.g. ``{"mlflow_run_id": ...}``.
        rng: Global generator states (None in checkpoints written without them).
    """

    step: int
    epoch: int
    batch_in_epoch: int
    recipe_sha256: str
    skipped_steps: int = 0
    scaler: dict[str, Any] = field(default_factory=dict)
    world_size: int = 1
    dataset_size: int | None = None
    schedule: dict[str, Any] = field(default_factory=dict)
    monitor: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    loggers: dict[str, Any] = field(default_factory=dict)
    rng: RngState | None = None

    def to_json(self) -> dict[str, Any]:
        """Everything but the RNG tensors, JSON-serialisable."""
        out = {k: v for k, v in self.__dict__.items() if k != "rng"}
        out["rng"] = self.rng.to_json() if self.rng is not None else None
        return out


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so a rename after it never exposes missing bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the hidden half-written folders a killed writer left in ``run_dir/checkpoints``.

    Returns:
        The folders removed.
    """
    root = Path(run_dir) / "checkpoints"
    stale = [p for p in root.glob(".step-*") if p.is_dir()] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def save_checkpoint(
    run_dir: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainerState,
    recipe_yaml: str,
    example_inputs: dict[str, torch.Tensor],
    keep_last: int = 2,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> Path:
    """Write one checkpoint folder atomically, point ``latest`` at it, prune old ones.

    Files are written into a hidden temporary folder, fsync'd, and the folder is renamed to
    ``step-XXXXXXXX``; ``trainer_state.json`` (written last) records every other file's SHA-256
    so a damaged file is detected on load. An existing folder of the same step is set aside
    before the rename and deleted after, so some complete folder exists at every instant.

    Args:
        run_dir: The run folder; checkpoints go to ``run_dir/checkpoints``.
        model: The method module (encoder weights under ``encoder.``).
        optimizer: Its optimiser.
        state: Step, data position, scheduler, scaler, RNG and monitor state.
        recipe_yaml: The resolved recipe.
        example_inputs: Real inputs for export validation (docs/contracts.md).
        keep_last: How many step folders to keep (>= 1; the new one is always kept).
        model_state: Full weights to write instead of ``model.state_dict()`` (an FSDP run
            gathers them on every rank first, :func:`ssl_train.fsdp.full_model_state`).
        optimizer_state: Likewise for ``optimizer.state_dict()``
            (:func:`ssl_train.fsdp.full_optimizer_state`).

    Returns:
        The new checkpoint folder.

    Raises:
        OSError: The folder cannot be written (the temporary folder is removed).
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:08d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is meant to be shared
    aside: Path | None = None
    try:
        own = model_state if model_state is not None else model.state_dict()
        weights = {k: v.detach().cpu().contiguous() for k, v in own.items()}
        save_file(weights, str(tmp / MODEL_FILE))
        opt_sd = optimizer_state if optimizer_state is not None else optimizer.state_dict()
        opt_tensors, opt_meta = _flatten_optimizer(opt_sd)
        save_file(opt_tensors, str(tmp / OPTIMIZER_FILE))
        rng_tensors = state.rng.tensors() if state.rng is not None else {}
        save_file(rng_tensors, str(tmp / RNG_FILE))
        (tmp / RECIPE_FILE).write_text(recipe_yaml)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in example_inputs.items()},
            str(tmp / EXAMPLES_FILE),
        )
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        meta = {"format_version": FORMAT_VERSION, **state.to_json(), "optimizer": opt_meta,
                "files": files}  # fmt: skip
        (tmp / STATE_FILE).write_text(json.dumps(meta, indent=2))
        for p in tmp.iterdir():
            _fsync(p)
        _fsync(tmp)
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
            os.replace(final, aside / name)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and not final.exists():
            os.replace(aside / name, final)
        raise
    pointer_tmp = root / f".{LATEST}.tmp"
    pointer_tmp.write_text(name + "\n")
    _fsync(pointer_tmp)
    os.replace(pointer_tmp, root / LATEST)
    _fsync(root)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    # Keep the newest folders by step, and always the one just written.
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and p != final)
    for old in steps[: max(0, len(steps) - (keep_last - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """Find a checkpoint folder from a run folder, its ``checkpoints/`` folder or a step folder.

    ``latest`` names the folder; if it is missing (a writer was killed between setting a
    folder aside and renaming its replacement) the newest complete ``step-*`` folder is used.

    Raises:
        CheckpointError: No complete checkpoint is there.
    """
    p = Path(path)
    for root in (p / "checkpoints", p):
        pointer = root / LATEST
        if pointer.is_file():
            named = root / pointer.read_text().strip()
            if (named / MODEL_FILE).is_file():
                return named
            complete = sorted(q for q in root.glob("step-*") if (q / STATE_FILE).is_file())
            if complete:
                return complete[-1]
            raise CheckpointError(
                f"{pointer} names {named.name!r}, which is missing, and {root} holds no other "
                "complete step-* folder"
            )
    if not (p / MODEL_FILE).is_file():
        raise CheckpointError(f"{path}: no checkpoint (no {MODEL_FILE}, no checkpoints/latest)")
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


def _read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({STATE_FILE}: {err})") from None
    required = ("step", "epoch", "batch_in_epoch", "recipe_sha256")
    missing = [k for k in required if k not in meta] if isinstance(meta, dict) else list(required)
    if missing:
        raise CheckpointError(
            f"{folder}: corrupt checkpoint ({STATE_FILE} lacks {', '.join(missing)})"
        )
    for name, digest in meta.get("files", {}).items():
        f = folder / name
        if not f.is_file():
            raise CheckpointError(f"{folder}: corrupt checkpoint ({name} is missing)")
        if _sha256(f) != digest:
            raise CheckpointError(
                f"{folder}: corrupt checkpoint ({name}: SHA-256 differs from the one "
                f"{STATE_FILE} recorded; the file was damaged or replaced)"
            )
    return meta


def _load_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(folder / name))
    except (OSError, SafetensorError) as err:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({name}: {err})") from None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    recipe_sha256: str,
    recipe_yaml: str | None = None,
) -> TrainerState:
    """Load weights (strict) and optimiser state into existing objects; return the rest.

    Only JSON, YAML and safetensors are read: nothing is unpickled. ``recipe_yaml`` (the
    current resolved recipe) lets a recipe mismatch name the changed keys. The RNG state is
    returned in ``state.rng``, not applied (the caller restores it right before training).
    Checkpoints hold full tensors whatever wrote them; into an FSDP-sharded model and its
    optimiser each rank loads its own shards (:mod:`ssl_train.fsdp`), so a checkpoint moves
    freely between one process, DDP and FSDP on any world size.

    Args:
        path: Run folder, ``checkpoints/`` folder or step folder.
        model: Receives ``model.safetensors`` (every key must match, shapes included).
        optimizer: Receives ``optimizer.safetensors``; None to skip (evaluation).
        recipe_sha256: Hash the checkpoint's recipe must have.
        recipe_yaml: The current resolved recipe, for the mismatch message.

    Returns:
        The trainer state.

    Raises:
        CheckpointError: A file is missing, truncated, not valid JSON/safetensors or does not
            match its recorded SHA-256; the recipe differs; or the weights or optimiser state
            do not fit (the message names the file and the mismatch).
    """
    folder = resolve_checkpoint(path)
    meta = _read_state(folder)
    if meta["recipe_sha256"] != recipe_sha256:
        changed = _recipe_changes(folder / RECIPE_FILE, recipe_yaml) if recipe_yaml else ""
        raise CheckpointError(
            f"{folder}: written by a different recipe{changed}; resume with the recipe saved "
            f"beside it ({folder / RECIPE_FILE}), or start a new run with --overwrite"
        )
    weights = _load_tensors(folder, MODEL_FILE)
    try:
        missing, unexpected = model.load_state_dict(shard_model_state(model, weights), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{folder}/{MODEL_FILE} does not fit the model: {err}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}/{MODEL_FILE} does not fit: missing {missing}, unexpected {unexpected}"
        )
    if optimizer is not None:
        opt_tensors = _load_tensors(folder, OPTIMIZER_FILE)
        try:
            full = _unflatten_optimizer(opt_tensors, meta["optimizer"])
            optimizer.load_state_dict(shard_optimizer_state(optimizer, full))
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"{folder}/{OPTIMIZER_FILE} does not fit the optimiser: {err}"
            ) from None
    rng = None
    if meta.get("rng") is not None:
        rng = RngState.from_parts(
            meta["rng"], _load_tensors(folder, RNG_FILE), str(folder / RNG_FILE)
        )
    return TrainerState(
        step=meta["step"], epoch=meta["epoch"], batch_in_epoch=meta["batch_in_epoch"],
        recipe_sha256=meta["recipe_sha256"], skipped_steps=meta.get("skipped_steps", 0),
        scaler=meta.get("scaler", {}), world_size=meta.get("world_size", 1),
        dataset_size=meta.get("dataset_size"), schedule=meta.get("schedule", {}),
        monitor=meta.get("monitor", {}), elapsed_s=meta.get("elapsed_s", 0.0),
        loggers=meta.get("loggers", {}), rng=rng,
    )  # fmt: skip
