"""Recipes: one YAML file that fully describes a run, validated with pydantic.

Unknown keys are errors. ``encoder`` and ``method`` are passed to ssl-models' registries, which
reject unknown names and arguments; :func:`load_recipe` checks that by building them.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ssl_train.errors import RecipeError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Keys of ``data`` that only one dataset reads; the other dataset's resolved recipe leaves them
#: out, so adding ``image_folder`` did not change the resolved recipe (nor the hash) of
#: Fashion-MNIST runs.
FASHION_MNIST_KEYS = ("root", "split")
IMAGE_FOLDER_KEYS = ("path", "eval_path", "eval_test_fraction", "on_corrupt")
#: Keys every image dataset reads (and every text dataset leaves out).
IMAGE_KEYS = ("image_size", "channels", "mean", "std")
#: Text corpora: ``wordnet`` (glosses, 45 supersense labels) and ``fortunes`` (quotations, their
#: category as label) are labelled, so online kNN and ``ssl-train evaluate`` run on them;
#: ``text_file`` (one text per line, or JSONL) is not.
TEXT_DATASETS = ("wordnet", "fortunes", "text_file")
#: Speech datasets (``ssl_train.speech_data``): ``spoken_digits`` (espeak-ng digits, labelled,
#: split by voice for kNN) and ``audio_folder`` (your clips; a labelled ``eval_path`` for kNN).
SPEECH_DATASETS = ("spoken_digits", "audio_folder", "spoken_words")
#: Keys every speech dataset reads.
SPEECH_KEYS = ("sample_rate", "crop_seconds")
#: Paired datasets (``ssl_train.paired_data``): ``spoken_words``, espeak-ng digits paired with
#: text about their word, for cross-modal (CLIP) pretraining of two encoders. They are speech
#: datasets too (speech keys); code that branches on ``is_speech`` tests ``is_paired`` first.
PAIRED_DATASETS = ("spoken_words",)
#: The keys of ``data`` each dataset reads, besides ``dataset`` and ``limit``; the resolved
#: recipe leaves the others out.
DATASET_KEYS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (*FASHION_MNIST_KEYS, *IMAGE_KEYS),
    "image_folder": (*IMAGE_FOLDER_KEYS, *IMAGE_KEYS),
    "wordnet": ("root", "eval_test_fraction", "max_length"),
    "fortunes": ("root", "eval_test_fraction", "max_length"),
    "text_file": ("path", "jsonl_field", "on_corrupt", "max_length"),
    "spoken_digits": ("root", "voices", "heldout_voices", *SPEECH_KEYS),
    "audio_folder": ("path", "eval_path", "eval_test_fraction", "on_corrupt", *SPEECH_KEYS),
    "spoken_words": ("root", "voices", "heldout_voices", "texts", "max_length", *SPEECH_KEYS),
}
#: Methods for image datasets, named in the message when a speech method meets image data.
IMAGE_METHOD_EXAMPLES = ("simclr", "byol", "moco_v2", "moco_v3", "dino", "barlow_twins",
                         "vicreg", "simsiam", "mae", "rotation", "jigsaw")  # fmt: skip
#: Speech methods and their encoder (``ssl_train.speech_data`` builds their batches).
SPEECH_METHOD_NAMES = ("wav2vec2", "hubert")
SPEECH_ENCODER = "wav2vec2"
#: The size of a ``wav2vec2`` encoder of a speech recipe, where the recipe leaves it out: a
#: small wav2vec 2.0 (4 blocks, D=128, 4 convolutions with the base model's 320-sample hop and
#: a 345-sample receptive field; about 1M parameters) that takes about a second per batch of
#: 16 one-second clips on 2 CPU cores. The registry's own defaults are the 95M base model.
SPEECH_ENCODER_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512,
    "num_conv_pos_embeddings": 32, "num_conv_pos_embedding_groups": 16, "dropout": 0.1,
}  # fmt: skip
SPEECH_CONV_DEFAULTS: dict[str, list[int]] = {
    "conv_dim": [32, 64, 128, 128],
    "conv_kernel": [10, 8, 4, 4],
    "conv_stride": [5, 4, 4, 4],
}


class DataConfig(_Section):
    """Where the images or texts come from and how they are scaled or cut.

    ``fashion_mnist`` reads the IDX files (``root``, ``split``). ``image_folder`` reads a folder
    of image files (``path``; an optional labelled ``eval_path`` for kNN evaluation), decodes
    every image once with ssl-data's :class:`~ssl_data.ImageFolder` (``on_corrupt`` policy),
    resizes its shorter side to ``image_size`` and centre-crops it, and keeps the result in
    memory as uint8, like Fashion-MNIST. Relative paths are taken from the working directory
    and stored absolute.

    Text (``ssl_train.text_data``): ``wordnet`` (WordNet glosses with their 45 supersense
    labels) and ``fortunes`` (quotations labelled by category) read ``root`` (default: Debian's
    package, else ssl-data's bundled sample) and are split per class (seed 0) into a
    pretraining/memory-bank part and ``eval_test_fraction`` of held-out kNN queries;
    ``text_file`` reads ``path`` (one text per line, or JSONL with ``jsonl_field``), unlabelled.

    Speech (``ssl_train.speech_data``): ``spoken_digits`` (ssl-data's espeak-ng digits in
    ``voices``, rendered into ``root``; ``heldout_voices`` voices are the kNN queries, the others
    the memory bank and the pretraining clips) and ``audio_folder`` (``path``; an optional
    labelled ``eval_path`` split per class as for images) decode every clip once at
    ``sample_rate``; batches are random crops of ``crop_seconds``.
    Texts are cut to ``max_length`` tokens (special tokens included). Whether the folders exist is checked when the data are loaded
    (:func:`ssl_train.data.check_data_source`), not here, so a run's saved recipe still loads
    (for ``ssl-train evaluate --eval-path``, ``ssl-serve export``) on a machine without them.
    """

    dataset: Literal[
        "fashion_mnist", "image_folder", "wordnet", "fortunes", "text_file", "spoken_digits",
        "audio_folder", "spoken_words",
    ] = "fashion_mnist"  # fmt: skip
    root: str | None = Field(
        None,
        description="fashion_mnist: folder with the IDX files; wordnet: a WordNet dict folder "
        "(data.noun, ...); fortunes: a folder of fortune files; default: Debian's or the "
        "bundled sample",
    )
    split: Literal["train", "test"] = Field("train", description="fashion_mnist: the split")
    path: str | None = Field(
        None,
        description="image_folder: folder of training images, searched recursively (class "
        "sub-folders allowed, their labels unused); text_file: a text file (one text per line, "
        "or JSONL with jsonl_field; .gz/.bz2/.xz read too); required for pretraining",
    )
    eval_path: str | None = Field(
        None,
        description="image_folder: labelled folder (one sub-folder of images per class) for "
        "kNN evaluation, split into memory bank and queries; null: online kNN off",
    )
    eval_test_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="image_folder: part of each class of eval_path held out as kNN queries "
        "(a split fixed by seed 0); the rest is the memory bank; wordnet, fortunes: the same "
        "split of the corpus, whose memory-bank part is also the pretraining text",
    )
    on_corrupt: Literal["skip", "raise"] = Field(
        "skip",
        description="image_folder, text_file: an unreadable file is skipped and counted "
        "(logged), or raises",
    )
    image_size: int = Field(
        28,
        ge=1,
        description="Side of the encoder's input, pixels (image_folder: images are resized "
        "and centre-cropped to it when loaded)",
    )
    channels: Literal[1, 3] = Field(
        1, description="1: gray, 3: RGB; encoder.in_channels defaults to it"
    )
    mean: list[float] = Field(
        default_factory=lambda: [0.2860],
        description="One per channel, of images scaled to [0, 1]",
    )
    std: list[float] = Field(
        default_factory=lambda: [0.3530], description="One per channel, each > 0"
    )
    limit: int | None = Field(
        None,
        ge=1,
        description="Use only the first N images (image_folder: in path order) or pretraining "
        "texts (wordnet, fortunes: of the shuffled memory-bank part)",
    )
    max_length: int = Field(
        64, ge=2, description="Text datasets: tokens per text at most, special tokens included"
    )
    jsonl_field: str | None = Field(
        None, description="text_file: read the file as JSONL and take this string field"
    )
    sample_rate: int = Field(
        16000, ge=1000, description="Speech datasets: clips are resampled to this rate, Hz"
    )
    crop_seconds: float = Field(
        1.0,
        gt=0,
        description="Speech datasets: length of the random crop of each clip in a batch, "
        "seconds (shorter clips are zero-padded, their real length kept)",
    )
    voices: list[str] | None = Field(
        None,
        description="spoken_digits: espeak-ng voices to render the digits in; default "
        "ssl-data's 10 voices",
    )
    texts: list[str] | None = Field(
        None,
        description="spoken_words: text templates of each clip's word, one drawn per sample "
        "({word}: seven, {digit}: 7, {gloss}: its WordNet gloss); the first renders the "
        "retrieval gallery; default ['{word}', 'the number {word}', '{gloss}']",
    )
    heldout_voices: int = Field(
        3,
        ge=1,
        description="spoken_digits: voices (chosen by seed 0) whose clips are the kNN queries; "
        "the other voices' clips are the memory bank and the pretraining clips",
    )

    @field_validator("path", "eval_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else os.path.abspath(os.path.expanduser(value))

    @model_validator(mode="after")
    def _check_stats(self) -> DataConfig:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"data.mean and data.std need one entry per channel (data.channels="
                f"{self.channels}), got mean {self.mean} ({len(self.mean)}) and std {self.std} "
                f"({len(self.std)})"
                + (
                    "; e.g. ImageNet's mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
                    if self.channels == 3
                    else ""
                )
            )
        if min(self.std) <= 0:
            raise ValueError(f"data.std entries must be > 0, got {self.std}")
        return self

    @property
    def is_text(self) -> bool:
        """Whether the dataset is a text corpus (:data:`TEXT_DATASETS`)."""
        return self.dataset in TEXT_DATASETS

    @property
    def is_paired(self) -> bool:
        """Whether the dataset pairs speech with text (:data:`PAIRED_DATASETS`)."""
        return self.dataset in PAIRED_DATASETS

    @property
    def is_speech(self) -> bool:
        """Whether the dataset is speech (:data:`SPEECH_DATASETS`)."""
        return self.dataset in SPEECH_DATASETS

    @model_validator(mode="after")
    def _keys_of_the_dataset(self) -> DataConfig:
        mine = DATASET_KEYS[self.dataset]
        fields = type(self).model_fields
        others = [k for k in fields if k not in (*mine, "dataset", "limit")]
        wrong = [
            k
            for k in others
            if getattr(self, k) != fields[k].get_default(call_default_factory=True)
        ]
        if wrong:
            keys = ", ".join(f"data.{k}" for k in wrong)
            raise ValueError(
                f"{keys} not read when data.dataset is {self.dataset}; its keys are "
                f"{', '.join(f'data.{k}' for k in mine)}"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_other_dataset_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        keep = (*DATASET_KEYS[self.dataset], "dataset", "limit")
        return {k: v for k, v in out.items() if k in keep}


class TokenizerTrainConfig(_Section):
    """A tokenizer trained at run start on the pretraining texts (ssl-data's
    :func:`~ssl_data.text.train_tokenizer`)."""

    kind: Literal["wordpiece", "bpe"] = Field(
        "wordpiece", description="wordpiece: BERT's (masked_lm, simcse); bpe: GPT-2's (causal_lm)"
    )
    vocab_size: int = Field(8000, ge=8, description="Target vocabulary size, tokens")
    min_frequency: int = Field(2, ge=1, description="Occurrences a merge needs")
    lowercase: bool | None = Field(
        None, description="Default: true for wordpiece (uncased BERT), false for bpe"
    )


class TokenizerConfig(_Section):
    """The tokenizer of a text recipe: ``train`` one on the pretraining texts at run start, or
    read ``path`` (a ``tokenizer.json``). Either way it is saved as ``tokenizer.json`` in the
    run folder, which a resume, ``ssl-train evaluate`` and the Hugging Face export read (WordPiece
    training is not bit-reproducible across runs, huggingface/tokenizers#1794: give ``path`` for
    runs that must share one vocabulary). The encoder's ``vocab_size`` is the tokenizer's."""

    path: str | None = Field(None, description="A tokenizer.json (or a folder holding one)")
    train: TokenizerTrainConfig | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else os.path.abspath(os.path.expanduser(value))

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerConfig:
        if (self.path is None) == (self.train is None):
            raise ValueError(
                "set exactly one of tokenizer.path (a tokenizer.json) and tokenizer.train "
                "(e.g. {kind: wordpiece, vocab_size: 8000})"
            )
        return self


class OptimizerConfig(_Section):
    """Optimiser (``ssl_train.optim``); biases, norm weights, weight-norm gains and ViT tokens
    get no weight decay (nor LARS adaptation)."""

    name: Literal["sgd", "adamw", "lars"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="Peak learning rate for the global batch")
    weight_decay: float = Field(1e-6, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD and LARS only")
    betas: tuple[float, float] = (0.9, 0.999)
    trust_coefficient: float = Field(
        0.001, gt=0, description="LARS only: eta in the trust ratio eta*|w|/|g + wd*w|"
    )


class ScheduleConfig(_Section):
    """Linear warm-up to the peak learning rate, then cosine decay to ``final_lr_ratio``."""

    warmup_steps: int = Field(0, ge=0)
    final_lr_ratio: float = Field(0.0, ge=0, le=1)


class BudgetConfig(_Section):
    """How long to train: steps (or epochs), with an optional wall-clock cap."""

    batch_size: int = Field(256, ge=2, description="Global batch size (images per step)")
    steps: int | None = Field(None, ge=0)
    epochs: float | None = Field(None, gt=0)
    max_minutes: float | None = Field(
        None, gt=0, description="Stop (and checkpoint) after this many minutes"
    )

    @model_validator(mode="after")
    def _one_length(self) -> BudgetConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of budget.steps and budget.epochs")
        return self


class TrainerConfig(_Section):
    """How each step runs: device, precision, accumulation, clipping, non-finite losses."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype; fp16 adds a gradient scaler"
    )
    accumulate_steps: int = Field(1, ge=1, description="Micro-batches per optimiser step")
    clip_grad_norm: float | None = Field(None, gt=0, description="Max global gradient norm")
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the method")
    nonfinite: Literal["skip", "stop"] = Field(
        "stop", description="On a NaN/inf loss: skip the step (counted) or stop"
    )


class DistributedConfig(_Section):
    """Multi-process training under torchrun (ignored in one process).

    ``strategy``: ``ddp`` keeps a full copy of the model on every rank; ``fsdp`` shards
    parameters, gradients and optimiser state over the ranks (FSDP2, ``ssl_train.fsdp``). In
    one process both train the plain model. It is how a run is executed, like the world size,
    so it is left out of the recipe hash (a run resumes under either strategy) and out of the
    resolved recipe when it is ``ddp`` (recipes resolve as before it existed).
    """

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    sync_batchnorm: bool = Field(True, description="Batch-norm statistics over the global batch")
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: full replicas; fsdp: sharded parameters (FSDP2, large encoders)"
    )

    @model_serializer(mode="wrap")
    def _without_default_strategy(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if self.strategy == "ddp":
            out.pop("strategy", None)
        return out


class CheckpointConfig(_Section):
    every_steps: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1)


class EarlyStoppingConfig(_Section):
    """Stop when the monitored metric has not improved for ``patience`` online evaluations."""

    monitor: Literal["knn_top1", "collapse_std", "loss"] = Field(
        "knn_top1",
        description="knn_top1 and collapse_std must rise; loss (mean since the last evaluation) "
        "must fall",
    )
    patience: int | None = Field(None, ge=1, description="Evaluations; null: never stop early")
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement")


class EvaluationConfig(_Section):
    """kNN monitor: cosine similarity, temperature-weighted votes (Wu et al., arXiv:1805.01978).

    Online: every ``every_epochs`` epochs (and at the end), kNN top-1 of held-out labelled
    images (the test split) against a labelled memory bank (the train split), and the collapse
    monitor (std of normalised held-out embeddings, arXiv:2011.10566).
    """

    knn_k: int = Field(200, ge=1)
    knn_temperature: float = Field(0.1, gt=0)
    every_epochs: int | None = Field(1, ge=1, description="Online evaluation period; null: off")
    bank_size: int | None = Field(
        10000, ge=1, description="First N labelled train images as memory bank; null: all"
    )
    heldout_size: int | None = Field(
        2000, ge=1, description="First N test images as queries; null: all"
    )
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()

    @model_validator(mode="after")
    def _stopping_needs_evaluation(self) -> EvaluationConfig:
        if self.early_stopping.patience is not None and self.every_epochs is None:
            raise ValueError(
                "early_stopping.patience is set but every_epochs is null: early stopping "
                "decides at online evaluations; set every_epochs"
            )
        return self


class MlflowConfig(_Section):
    """MLflow tracking (needs ``pip install 'ssl-train[mlflow]'``)."""

    enabled: bool = False
    tracking_uri: str | None = Field(None, description="Default: a file store in <run>/mlruns")
    experiment: str | None = Field(None, description="Default: the recipe name")
    run_name: str | None = Field(None, description="Default: the run folder's name")


class LoggingConfig(_Section):
    """Where metrics go: metrics.jsonl always; progress bar, TensorBoard, MLflow, plots."""

    progress_bar: bool = True
    every_steps: int = Field(10, ge=1, description="Steps between lines of metrics.jsonl")
    tensorboard: bool = Field(True, description="Event files in <run>/tensorboard")
    mlflow: MlflowConfig = MlflowConfig()
    plots: bool = Field(True, description="PNG curves of loss, LR and kNN top-1 in <run>/plots")
    embedding_map: bool = Field(
        True, description="t-SNE map of held-out embeddings coloured by label, at the end"
    )
    embedding_map_samples: int = Field(1000, ge=10, description="Held-out images in the map")


#: Text view generators (``ssl_train.text_data``) and their default for each text method: MLM
#: masks tokens on the data side; SimCSE's two views are two dropout masks of the same tokens
#: and causal LM predicts every next token, so both take the tokens as they are (so does ELMo's
#: biLM); skip-gram trains on word pairs made on the data side.
TEXT_VIEW_DEFAULTS = {
    "masked_lm": "mlm_masking",
    "electra": "mlm_masking",
    "skip_gram": "skip_gram_pairs",
}


class Recipe(_Section):
    """A whole run. Every section has defaults except ``encoder``, ``method`` and the budget.

    ``tokenizer`` is for text datasets only (required there, left out of image recipes). A text
    recipe's ``views`` defaults by method: ``mlm_masking`` for ``masked_lm`` (BERT's 15%,
    80/10/10), ``tokens`` otherwise.
    """

    name: str = "run"
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's")
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig | None = Field(
        None,
        description="Text datasets only (required there): {path: tokenizer.json} or {train: "
        "{kind: wordpiece | bpe, vocab_size: 8000, min_frequency: 2, lowercase: null}}; saved "
        "as <run>/tokenizer.json",
    )
    views: dict[str, Any] = Field(
        default_factory=lambda: {"name": "simclr"},
        description="View generator: name (see ssl_train.data.VIEWS; text: "
        "ssl_train.text_data.TEXT_VIEWS) and its arguments",
    )
    encoder: dict[str, Any]
    text_encoder: dict[str, Any] | None = Field(
        None,
        description="Paired datasets only (required there): the text tower, e.g. {name: "
        "bert_tiny} (vocab_size from the tokenizer); encoder is the speech tower",
    )
    method: dict[str, Any]
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    budget: BudgetConfig
    trainer: TrainerConfig = TrainerConfig()
    distributed: DistributedConfig = DistributedConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="before")
    @classmethod
    def _text_views_by_method(cls, tree: Any) -> Any:
        if not isinstance(tree, dict) or "views" in tree:
            return tree
        data, method = tree.get("data"), tree.get("method")
        if not (isinstance(data, dict) and data.get("dataset") in TEXT_DATASETS):
            return tree
        name = method.get("name") if isinstance(method, dict) else None
        return {**tree, "views": {"name": TEXT_VIEW_DEFAULTS.get(str(name), "tokens")}}

    @model_validator(mode="before")
    @classmethod
    def _speech_views_by_method(cls, tree: Any) -> Any:
        if not isinstance(tree, dict) or "views" in tree:
            return tree
        data, method = tree.get("data"), tree.get("method")
        if isinstance(data, dict) and data.get("dataset") in PAIRED_DATASETS:
            return {**tree, "views": {"name": "random_crop"}}
        if not (isinstance(data, dict) and data.get("dataset") in SPEECH_DATASETS):
            return tree
        name = method.get("name") if isinstance(method, dict) else None
        mask_prob = 0.8 if name == "hubert" else 0.65  # the papers' span-mask share
        return {**tree, "views": {"name": "span_mask", "mask_prob": mask_prob}}

    @model_validator(mode="after")
    def _early_stopping_needs_labels(self) -> Recipe:
        d, es = self.data, self.evaluation.early_stopping
        if d.dataset == "image_folder" and d.eval_path is None and es.patience is not None:
            raise ValueError(
                "evaluation.early_stopping.patience is set but data.eval_path is not: early "
                "stopping decides at online evaluations, which an image_folder run makes only "
                "with a labelled data.eval_path (one sub-folder per class)"
            )
        if d.dataset == "audio_folder" and d.eval_path is None and es.patience is not None:
            raise ValueError(
                "evaluation.early_stopping.patience is set but data.eval_path is not: early "
                "stopping decides at online kNN evaluations, which an audio_folder run makes "
                "only with a labelled data.eval_path (one sub-folder of clips per class)"
            )
        if d.dataset == "text_file" and es.patience is not None:
            raise ValueError(
                "evaluation.early_stopping.patience is set but data.dataset text_file has no "
                "labels: early stopping decides at online kNN evaluations, which need a "
                "labelled corpus (wordnet, fortunes)"
            )
        return self

    @model_validator(mode="after")
    def _tokenizer_for_text(self) -> Recipe:
        if (self.data.is_text or self.data.is_paired) and self.tokenizer is None:
            raise ValueError(
                f"tokenizer: data.dataset {self.data.dataset} "
                f"{'has' if self.data.is_paired else 'is'} text and needs a tokenizer: "
                "tokenizer.train {kind: wordpiece, vocab_size: 8000} (trained on the "
                "pretraining texts at run start) or tokenizer.path (a tokenizer.json)"
            )
        if self.data.is_paired and self.text_encoder is None:
            raise ValueError(
                f"text_encoder: data.dataset {self.data.dataset} pairs speech with text and "
                "needs a text tower, e.g. text_encoder: {name: bert_tiny} (encoder is the "
                "speech tower)"
            )
        if not self.data.is_paired and self.text_encoder is not None:
            raise ValueError(
                f"text_encoder: data.dataset {self.data.dataset} trains one encoder; "
                f"text_encoder is for paired datasets ({', '.join(PAIRED_DATASETS)})"
            )
        if not (self.data.is_text or self.data.is_paired) and self.tokenizer is not None:
            kind = "speech" if self.data.is_speech else "images"
            raise ValueError(
                f"tokenizer: data.dataset {self.data.dataset} is {kind}; tokenizer is for "
                f"text datasets ({', '.join(TEXT_DATASETS)})"
            )
        return self

    @model_validator(mode="after")
    def _fsdp_options(self) -> Recipe:
        if self.distributed.strategy == "fsdp" and self.trainer.precision == "fp16":
            raise ValueError(
                "distributed.strategy=fsdp does not support trainer.precision=fp16 (its "
                "gradient scaler is not FSDP-aware here); use precision bf16 or fp32"
            )
        if self.distributed.strategy == "fsdp" and self.trainer.compile:
            raise ValueError(
                "distributed.strategy=fsdp does not support trainer.compile=true yet; set "
                "trainer.compile=false or distributed.strategy=ddp"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_tokenizer_for_images(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if self.tokenizer is None:  # image recipes resolve (and hash) as before text existed
            out.pop("tokenizer", None)
        if self.text_encoder is None:  # and as before paired (CLIP) recipes existed
            out.pop("text_encoder", None)
        return out

    def to_yaml(self) -> str:
        """The resolved recipe as YAML (every default written out)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def sha256(self) -> str:
        """Hash of the resolved recipe (provenance), independent of key order.

        Free-form sections (``encoder``, ``method``, ``views``) keep their keys in the order
        given, which differs between ``--set method={...}`` and the same recipe read back from
        its saved YAML; sorting keys makes both hash alike, so such a run resumes.
        ``distributed.strategy`` is left out: like the world size, it changes how the run is
        executed, not what it computes, so a checkpoint resumes under DDP or FSDP alike.
        """
        tree = self.model_dump(mode="json")
        tree["distributed"].pop("strategy", None)
        canonical = yaml.safe_dump(tree, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise RecipeError(f"--set {key}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings; values are YAML scalars or lists (``lr=0.3``, ``widths=[16,32]``).

    Raises:
        RecipeError: An override has no ``=`` or an empty key.
    """
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} must look like key.sub=value")
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def _allowed_keys(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> list[str]:
    """The keys of the section at ``loc`` of ``root`` (default :class:`Recipe`; empty when it
    is not a fixed section)."""
    model: Any = root or Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        # An optional section (``tokenizer: TokenizerConfig | None``): its model's keys.
        annotation = next(
            (a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
            annotation,
        )
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_error(
    err: ValidationError,
    source: str,
    root: type[BaseModel] | None = None,
    overrides: Sequence[tuple[str, Any]] = (),
) -> str:
    """One line per error: the dotted key, what is wrong and what is allowed (an unknown key:
    the section's keys and the closest one; a key set by ``--set``: which override it was)."""
    given = {key: value for key, value in overrides}
    lines = [f"invalid recipe {source}{' with its --set overrides' if given else ''}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"][:-1], root)
            msg = f"unknown key; allowed: {', '.join(allowed)}" if allowed else "unknown key"
            close = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif e["type"] == "literal_error":
            msg = f"{msg}, got {e.get('input')!r}"
        from_set = next((k for k in given if k == loc or k.startswith(loc + ".")), None)
        if from_set is not None:
            msg += f" [from --set {from_set}={yaml.safe_dump(given[from_set]).splitlines()[0]}]"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def recipe_from_dict(
    tree: Mapping[str, Any], overrides: Sequence[str] = (), source: str = "<dict>"
) -> Recipe:
    """Validate a recipe tree (after applying ``overrides``) and check encoder/method build.

    An override of ``budget.steps`` (or ``budget.epochs``) to a value replaces the other one,
    which the recipe may set, unless the overrides set both.

    Raises:
        RecipeError: The message lists every bad key with what is allowed.
    """
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(tree)))  # deep copy, plain types
    parsed = parse_overrides(overrides)
    for key, value in parsed:
        _set_dotted(data, key, value)
    # The budget is steps or epochs: overriding one replaces the other the recipe may set.
    keys = {key for key, _ in parsed}
    budget = data.get("budget")
    for length, other in (("steps", "epochs"), ("epochs", "steps")):
        replaced = f"budget.{length}" in keys and f"budget.{other}" not in keys
        if replaced and isinstance(budget, dict) and budget.get(length) is not None:
            budget[other] = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(_format_error(err, source, overrides=parsed)) from None
    if recipe.data.is_speech:
        recipe = _default_speech_encoder(recipe)
    else:
        recipe = _default_in_channels(recipe)
    _check_builds(recipe, source)
    return recipe


def _default_speech_encoder(recipe: Recipe) -> Recipe:
    """Fill a speech recipe's ``wav2vec2`` encoder with :data:`SPEECH_ENCODER_DEFAULTS` (and
    :data:`SPEECH_CONV_DEFAULTS` when no convolution key is given), so the resolved recipe
    names the small encoder it trains."""
    if recipe.encoder.get("name") != SPEECH_ENCODER:
        return recipe
    encoder = {**recipe.encoder}
    for key, value in SPEECH_ENCODER_DEFAULTS.items():
        encoder.setdefault(key, value)
    if not any(k in encoder for k in SPEECH_CONV_DEFAULTS):
        encoder.update({k: list(v) for k, v in SPEECH_CONV_DEFAULTS.items()})
    return recipe.model_copy(update={"encoder": encoder})


def _encoder_in_channels(encoder: Mapping[str, Any]) -> int | None:
    """``encoder.in_channels``, else the encoder's own default (None: it takes no such argument
    or its name is unknown, which :func:`_check_builds` reports)."""
    if "in_channels" in encoder:
        return int(encoder["in_channels"])
    import ssl_models

    build = ssl_models.ENCODERS.get(encoder.get("name"))  # type: ignore[arg-type]
    param = inspect.signature(build).parameters.get("in_channels") if build else None
    if param is None or not isinstance(param.default, int):
        return None
    return param.default


def _default_in_channels(recipe: Recipe) -> Recipe:
    """Fill in ``encoder.in_channels = data.channels`` where the encoder's own default differs.

    Only then, so recipes that already built the right encoder (every Fashion-MNIST recipe)
    resolve, and hash, as before.
    """
    if "in_channels" in recipe.encoder:
        return recipe
    default = _encoder_in_channels(recipe.encoder)
    if default is None or default == recipe.data.channels:
        return recipe
    encoder = {**recipe.encoder, "in_channels": recipe.data.channels}
    return recipe.model_copy(update={"encoder": encoder})


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a YAML recipe.

    Args:
        path: YAML file.
        overrides: ``key.sub=value`` strings applied before validation (``--set``).

    Raises:
        RecipeError: The file is missing, not YAML, not a mapping, or invalid.
    """
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} not found") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise RecipeError(f"recipe {path} must be a mapping of sections, got {type(tree).__name__}")
    return recipe_from_dict(tree, overrides, source=str(path))


def _build_encoder_and_method(
    encoder_config: Mapping[str, Any], method_config: Mapping[str, Any], fail: Any
) -> Any:
    """Build the encoder, then the method on it (checking both); returns the encoder.

    Raises:
        RecipeError: ``fail(section, error, registry)``'s error for the section that fails.
    """
    import ssl_models

    try:
        encoder = ssl_models.build_encoder(encoder_config)
    except (ssl_models.SslModelsError, TypeError, ValueError) as err:
        raise fail("encoder", err, ssl_models.ENCODERS) from None
    try:
        ssl_models.build_method(method_config, encoder)
    except (ssl_models.SslModelsError, TypeError, ValueError) as err:
        raise fail("method", err, ssl_models.METHODS) from None
    return encoder


def _check_builds(recipe: Recipe, source: str) -> None:
    from ssl_train.data import VIEWS, build_views

    def fail(section: str, err: Exception, registry: Mapping[str, Any]) -> RecipeError:
        name = getattr(recipe, section).get("name", "simclr" if section == "views" else None)
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        if isinstance(err, TypeError) and name in registry:
            accepted = [
                p
                for p in inspect.signature(registry[name]).parameters
                if p not in ("self", "encoder")
            ]
            msg = f"{msg}; {section} {name!r} accepts: {', '.join(accepted)}"
        return RecipeError(f"invalid recipe {source}: {section}: {msg}")

    if recipe.data.is_text:
        _check_text_builds(recipe, source, fail)
        return
    if recipe.data.is_paired:
        from ssl_train.paired_data import check_paired_builds

        check_paired_builds(recipe, source)
        return
    if recipe.data.is_speech:
        _check_speech_builds(recipe, source, fail)
        return
    method, encoder_name = recipe.method.get("name"), recipe.encoder.get("name")
    if method in SPEECH_METHOD_NAMES or encoder_name == SPEECH_ENCODER:
        what = f"method {method!r}" if method in SPEECH_METHOD_NAMES else "encoder 'wav2vec2'"
        raise RecipeError(
            f"invalid recipe {source}: {what} is for speech (data.dataset "
            f"{' or '.join(SPEECH_DATASETS)}), but data.dataset {recipe.data.dataset} is "
            f"images: use an image method ({', '.join(IMAGE_METHOD_EXAMPLES)}) and encoder, or "
            "a speech dataset"
        )
    try:
        build_views(recipe)
    except (KeyError, TypeError, ValueError) as err:
        raise fail("views", err, VIEWS) from None
    _build_encoder_and_method(recipe.encoder, recipe.method, fail)
    in_ch = _encoder_in_channels(recipe.encoder)
    if in_ch is not None and in_ch != recipe.data.channels:
        raise RecipeError(
            f"invalid recipe {source}: encoder.in_channels={in_ch} but data.channels="
            f"{recipe.data.channels}; leave encoder.in_channels out to follow data.channels"
        )


def _check_text_builds(recipe: Recipe, source: str, fail: Any) -> None:
    """:func:`_check_builds` for a text recipe: a text method, a text view the method takes, and
    the encoder built with the tokenizer's vocabulary size (or its target, before training)."""
    from ssl_data.text import load_tokenizer
    from ssl_train.text_data import TEXT_VIEWS, build_text_views, check_text_method

    try:
        check_text_method(recipe)
    except ValueError as err:
        raise fail("method", err, {}) from None
    try:
        build_text_views(recipe)
    except (KeyError, TypeError, ValueError) as err:
        raise fail("views", err, TEXT_VIEWS) from None
    cfg = recipe.tokenizer
    assert cfg is not None  # Recipe._tokenizer_for_text
    vocab = cfg.train.vocab_size if cfg.train is not None else None
    if cfg.path is not None and Path(cfg.path).exists():
        vocab = load_tokenizer(cfg.path).get_vocab_size()
    config = {"vocab_size": vocab or 1000, **recipe.encoder}
    encoder = _build_encoder_and_method(config, recipe.method, fail)
    longest = getattr(encoder, "max_position_embeddings", None)
    if isinstance(longest, int) and recipe.data.max_length > longest:
        raise RecipeError(
            f"invalid recipe {source}: data.max_length={recipe.data.max_length} tokens exceeds "
            f"encoder max_position_embeddings={longest}"
        )


def _check_speech_builds(recipe: Recipe, source: str, fail: Any) -> None:
    """:func:`_check_builds` for a speech recipe: a speech method on the ``wav2vec2`` encoder,
    and the span-mask view for the recipe's crop."""
    from ssl_train.speech_data import (
        SPEECH_VIEWS,
        build_speech_views,
        check_speech_method,
        receptive_field,
    )

    try:
        check_speech_method(recipe)
    except ValueError as err:
        raise fail("method", err, {}) from None
    if recipe.encoder.get("name") != SPEECH_ENCODER:
        raise RecipeError(
            f"invalid recipe {source}: encoder: {recipe.encoder.get('name')!r} is not a speech "
            f"encoder; data.dataset {recipe.data.dataset} is speech: use {SPEECH_ENCODER!r}"
        )
    try:
        build_speech_views(recipe)
    except (KeyError, TypeError, ValueError) as err:
        raise fail("views", err, SPEECH_VIEWS) from None
    _build_encoder_and_method(recipe.encoder, recipe.method, fail)
    field = receptive_field(recipe.encoder)
    crop = round(recipe.data.crop_seconds * recipe.data.sample_rate)
    if crop < field:
        raise RecipeError(
            f"invalid recipe {source}: data.crop_seconds={recipe.data.crop_seconds} is "
            f"{crop} samples at {recipe.data.sample_rate} Hz, shorter than one encoder frame "
            f"({field} samples)"
        )
