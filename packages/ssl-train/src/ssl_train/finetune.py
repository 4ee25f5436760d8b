"""Fine-tuning: a linear classifier head on a pretrained encoder, trained with labels.

``mode: linear`` freezes the encoder (a linear probe trained by SGD/AdamW/LARS: the encoder's
features are computed once, in eval mode, and the head trains on them); ``mode: full`` trains
encoder and head together, optionally with layer-wise learning-rate decay for ViTs. A seeded
part of the labelled train split is held out for validation; training stops early when the
validation top-1 has not improved for ``early_stopping.patience`` epochs, and the best epoch's
weights are kept as the run's checkpoint (:mod:`ssl_train.classifier`). Images and clips
are not augmented. Image runs (Fashion-MNIST, image folders), text runs (WordNet supersenses,
fortune categories, or a ``label<TAB>text`` file) and speech runs (spoken digits by voice, audio
folders) are fine-tuned alike; where the labels come from is :mod:`ssl_train.finetune_data`'s.
Speech clips are whole, zero-padded per batch with their lengths, so the encoder pools over
each clip's real frames only (as ``ssl-train evaluate`` embeds them).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ssl_train.checkpoint import load_checkpoint, resolve_checkpoint
from ssl_train.classifier import EncoderClassifier, save_classifier_checkpoint
from ssl_train.data import epoch_order
from ssl_train.early_stopping import EarlyStopping
from ssl_train.errors import SslTrainError
from ssl_train.evaluation.metrics import topk_accuracy
from ssl_train.finetune_data import LabelledSplits, check_single_encoder, load_labelled_splits
from ssl_train.finetune_recipe import (
    SPEECH_BATCH_SIZE,
    FinetuneRecipe,
    finetune_recipe,
    load_finetune_recipe,
)
from ssl_train.optim import build_optimizer, set_learning_rate
from ssl_train.recipe import Recipe, load_recipe
from ssl_train.schedule import warmup_cosine

#: Examples per forward pass when embedding (linear mode) or scoring, by ``LabelledSplits.unit``:
#: whole clips padded to the longest of a batch cost far more than images.
EVAL_CHUNK = {"images": 1024, "texts": 256, "clips": 32}

__all__ = [
    "FinetuneRecipe",
    "FinetuneResult",
    "Finetuner",
    "default_output",
    "finetune_recipe",
    "load_finetune_recipe",
]


@dataclass
class FinetuneResult:
    """What a fine-tuning run reports (accuracies in [0, 1])."""

    best_epoch: int
    epochs: int
    val_top1: float
    val_top5: float
    test_top1: float
    test_top5: float
    checkpoint: Path
    stopped_early: str | None
    seconds: float


def _pretrained(checkpoint: str | Path) -> tuple[Path, Recipe, torch.nn.Module]:
    from ssl_train.trainer import build_model

    folder = resolve_checkpoint(checkpoint)
    recipe = load_recipe(folder / "recipe.yaml")
    check_single_encoder(recipe)
    vocab = None
    if recipe.data.is_text:
        from ssl_train.text_data import run_tokenizer

        vocab = run_tokenizer(folder).get_vocab_size()
    # A text method writes its pooling onto the encoder, so the encoder pools as pretrained.
    method = build_model(recipe, vocab)
    load_checkpoint(folder, method, None, recipe.sha256())
    return folder, recipe, method.encoder


class Finetuner:
    """Fine-tunes the encoder of one pretraining checkpoint into a run folder.

    The folder gets ``finetune.yaml``, ``metrics.jsonl`` (one line per epoch: train loss,
    validation top-1/top-5, learning rate), ``checkpoints/`` (the best epoch, see
    :mod:`ssl_train.classifier`) and ``finetune_summary.json`` (with test top-1/top-5 of the
    best epoch).

    Args:
        checkpoint: A pretraining run folder or checkpoint folder.
        recipe: The fine-tuning recipe.
        output: The run folder (created).
        overwrite: Replace a previous fine-tuning run in ``output``.

    Raises:
        CheckpointError: No usable checkpoint at ``checkpoint``.
        SslTrainError: ``output`` holds files (without ``overwrite``), the train part is smaller
            than one batch, ``layer_decay`` is set for an encoder that is not a ViT, or a loss
            is not finite.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        recipe: FinetuneRecipe,
        output: str | Path,
        overwrite: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.recipe = recipe
        self.output = Path(output)
        self.overwrite = overwrite

    def fit(self) -> FinetuneResult:
        """Train until the epoch budget, early stopping or the wall-clock cap."""
        r = self.recipe
        source, enc_recipe, encoder = _pretrained(self.checkpoint)
        if r.threads or enc_recipe.threads:
            torch.set_num_threads(r.threads or enc_recipe.threads or 1)
        device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if r.device == "auto" else r.device
        )
        data = enc_recipe.data.model_copy(
            update={"root": r.data.root or enc_recipe.data.root, "limit": r.data.limit}
        )
        data_recipe = enc_recipe.model_copy(update={"data": data})
        splits = load_labelled_splits(
            data_recipe, path=r.data.path, test_fraction=r.data.test_fraction,
            limit=r.data.limit, checkpoint=source,
        )  # fmt: skip
        labels, test_labels, names = splits.train_labels, splits.test_labels, splits.names
        if splits.unit == "clips" and "batch_size" not in r.budget.model_fields_set:
            # Speech datasets are small (spoken digits: 63 training clips), and whole clips
            # cost far more than an image per step.
            budget = r.budget.model_copy(update={"batch_size": SPEECH_BATCH_SIZE})
            r = r.model_copy(update={"budget": budget})
        n = len(labels)
        perm = np.random.default_rng(r.seed).permutation(n)
        n_val = max(1, round(n * r.data.val_fraction))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        batch = r.budget.batch_size
        if len(train_idx) < batch:
            raise SslTrainError(
                f"{len(train_idx)} training {splits.unit} after holding out {n_val} for validation, "
                f"fewer than budget.batch_size={batch}; lower it"
            )
        self._prepare_output()
        (self.output / "finetune.yaml").write_text(r.to_yaml())

        torch.manual_seed(r.seed)
        model = EncoderClassifier(encoder, len(names), batch_norm=r.batch_norm).to(device)
        y_all = torch.from_numpy(labels).to(device)
        linear = r.mode == "linear"
        # Scoring head-only logits of precomputed features is cheap whatever the modality.
        chunk = 1024 if linear or splits.unit != "clips" else EVAL_CHUNK["clips"]
        if linear:
            model.encoder.requires_grad_(False)
            feats = self._features(model, splits, "train", len(labels), device)
            test_feats = self._features(model, splits, "test", len(test_labels), device)
            trained: torch.nn.Module = model.head

            def logits_of(idx: np.ndarray) -> torch.Tensor:
                out: torch.Tensor = model.head(feats[torch.from_numpy(idx).to(device)])
                return out
        else:
            trained = model

            def logits_of(idx: np.ndarray) -> torch.Tensor:
                return model(*(x.to(device) for x in splits.inputs("train", idx)))

        try:
            optimizer = build_optimizer(trained, r.optimizer, r.layer_decay)
        except ValueError as err:
            raise SslTrainError(f"layer_decay={r.layer_decay}: {err}") from None

        per_epoch = len(train_idx) // batch
        total = per_epoch * r.budget.epochs
        stopper = EarlyStopping("val_top1", r.early_stopping.patience, r.early_stopping.min_delta)
        info: dict[str, Any] = {"mode": r.mode, "source": {"checkpoint": str(source),
                                "recipe_sha256": enc_recipe.sha256()},
                                "labels_from": splits.source}  # fmt: skip
        examples = splits.examples
        enc_yaml = (source / "recipe.yaml").read_text()
        bar = tqdm(total=total, desc=f"finetune {r.mode}", unit="step",
                   disable=not r.progress_bar, dynamic_ncols=True)  # fmt: skip
        start, step, stopped = time.perf_counter(), 0, None
        best_state: dict[str, torch.Tensor] = {}
        best: dict[str, float] = {}
        best_epoch, ckpt, epoch = -1, source, -1
        with (self.output / "metrics.jsonl").open("w") as metrics:
            for epoch in range(r.budget.epochs):
                trained.train()
                order = train_idx[epoch_order(r.seed, epoch, len(train_idx))]
                losses = []
                for b in range(per_epoch):
                    idx = order[b * batch : (b + 1) * batch]
                    lr = warmup_cosine(step, total, r.optimizer.lr, r.schedule.warmup_steps,
                                       r.schedule.final_lr_ratio)  # fmt: skip
                    set_learning_rate(optimizer, lr)
                    loss = torch.nn.functional.cross_entropy(
                        logits_of(idx), y_all[torch.from_numpy(idx).to(device)]
                    )
                    if not torch.isfinite(loss):
                        raise SslTrainError(
                            f"loss is {loss.item()} at step {step}; lower optimizer.lr (now "
                            f"{r.optimizer.lr}) or add schedule.warmup_steps"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    losses.append(loss.item())
                    bar.update(1)
                    ips = batch * step / max(1e-9, time.perf_counter() - start)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", per_s=f"{ips:.0f}",
                                    best_val_top1=f"{best.get('val_top1', 0):.4f}")  # fmt: skip
                val_top1, val_top5 = self._accuracy(model, logits_of, val_idx, labels, chunk)
                row = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                       "val_top1": val_top1, "val_top5": val_top5, "lr": lr,
                       "elapsed_s": time.perf_counter() - start}  # fmt: skip
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                stop = stopper.update(val_top1, epoch)
                if stopper.best_step == epoch:
                    best_epoch, best = epoch, row
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    ckpt = save_classifier_checkpoint(
                        self.output, model=model, step=step, labels=names,
                        info={**info, "epoch": epoch, "metrics": {k: row[k] for k in
                              ("train_loss", "val_top1", "val_top5")}},
                        encoder_recipe_yaml=enc_yaml, finetune_recipe_yaml=r.to_yaml(),
                        example_inputs=examples, files=splits.files,
                    )  # fmt: skip
                if stop:
                    stopped = (
                        f"early stopping: val_top1 did not rise above {stopper.best} "
                        f"(+{r.early_stopping.min_delta}) for {stopper.bad_evaluations} epochs"
                    )
                    break
                cap = r.budget.max_minutes
                if cap is not None and time.perf_counter() - start > 60 * cap:
                    stopped = f"max_minutes={cap}"
                    break
        bar.close()
        model.load_state_dict(best_state)
        if linear:

            def logits_of(idx: np.ndarray) -> torch.Tensor:
                out: torch.Tensor = model.head(test_feats[torch.from_numpy(idx).to(device)])
                return out
        else:

            def logits_of(idx: np.ndarray) -> torch.Tensor:
                return model(*(x.to(device) for x in splits.inputs("test", idx)))

        test_top1, test_top5 = self._accuracy(
            model, logits_of, np.arange(len(test_labels)), test_labels, chunk
        )
        result = FinetuneResult(best_epoch, epoch + 1, best["val_top1"], best["val_top5"],
                                test_top1, test_top5, ckpt, stopped,
                                time.perf_counter() - start)  # fmt: skip
        u = splits.unit
        summary = {**asdict(result), "checkpoint": str(ckpt), "mode": r.mode,
                   f"train_{u}": len(train_idx), f"val_{u}": n_val,
                   f"test_{u}": len(test_labels), "source": str(source),
                   "labels_from": splits.source, "classes": len(names)}  # fmt: skip
        (self.output / "finetune_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return result

    @staticmethod
    @torch.no_grad()
    def _features(
        model: EncoderClassifier,
        splits: LabelledSplits,
        split: str,
        n: int,
        device: torch.device,
    ) -> torch.Tensor:
        model.encoder.eval()
        chunk = EVAL_CHUNK[splits.unit]
        return torch.cat(
            [
                model.encoder(
                    *(x.to(device) for x in splits.inputs(split, np.arange(i, min(n, i + chunk))))
                )
                for i in range(0, n, chunk)
            ]
        )

    @staticmethod
    @torch.no_grad()
    def _accuracy(
        model: EncoderClassifier,
        logits_of: Callable[[np.ndarray], torch.Tensor],
        idx: np.ndarray,
        labels: np.ndarray,
        chunk: int,
    ) -> tuple[float, float]:
        was_training = model.training
        model.eval()
        try:
            scores = torch.cat([logits_of(idx[i : i + chunk]).float().cpu()
                                for i in range(0, len(idx), chunk)])  # fmt: skip
        finally:
            model.train(was_training)
        top1, top5 = topk_accuracy(scores, labels[idx], (1, 5))
        return top1, top5

    def _prepare_output(self) -> None:
        out = self.output
        if out.exists() and any(out.iterdir()):
            is_run = (out / "finetune.yaml").is_file()
            if not (self.overwrite and is_run):
                raise SslTrainError(
                    f"{out} already holds {'a fine-tuning run' if is_run else 'files'}; "
                    f"{'pass --overwrite to replace it, or ' if is_run else ''}choose another "
                    "--output"
                )
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)


def default_output(checkpoint: str | Path, mode: str) -> Path:
    """``<pretraining run folder>/finetune-<mode>`` for a run, ``checkpoints/`` or step folder."""
    p = Path(checkpoint)
    if (p / "checkpoints").is_dir():
        run = p
    elif p.name == "checkpoints":
        run = p.parent
    else:
        run = p.parent.parent
    return run / f"finetune-{mode}"
