"""The ``ssl-train`` command line: pretrain, finetune, evaluate, recipes."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssl_data import SslDataError
from ssl_models import SslModelsError
from ssl_train.errors import SslTrainError
from ssl_train.evaluation.linear_probe import WEIGHT_DECAYS
from ssl_train.recipes import shipped_recipes

if TYPE_CHECKING:
    from ssl_train.recipe import Recipe


def _recipe_path(arg: str) -> Path:
    p = Path(arg)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    shipped = shipped_recipes()
    if arg in shipped:
        return shipped[arg]
    raise SslTrainError(
        f"recipe {arg!r} is neither a file nor a shipped recipe ({', '.join(sorted(shipped))})"
    )


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line minus ``--nproc N`` / ``--nproc=N`` (what each torchrun rank runs)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _pretrain(args: argparse.Namespace) -> int:
    from ssl_train.distributed import launch_with_torchrun, shutdown_distributed
    from ssl_train.recipe import load_recipe
    from ssl_train.trainer import Trainer

    recipe = load_recipe(_recipe_path(args.recipe), args.set)  # validate before launching ranks
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return launch_with_torchrun(args.nproc, _without_nproc(args.argv))
    output = Path(args.output) if args.output else Path("runs") / recipe.name
    try:
        result = Trainer(
            recipe,
            output,
            resume=args.resume,
            overwrite=args.overwrite,
            profile_steps=args.profile_steps,
        ).fit()
    finally:
        shutdown_distributed()
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps(
                {
                    "run": str(output),
                    "steps": result.steps,
                    "final_loss": round(result.final_loss, 4)
                    if math.isfinite(result.final_loss)
                    else None,
                    f"{_unit(recipe)}_per_s": round(result.images_per_s, 1),
                    **(
                        {"tokens_per_s": round(result.tokens_per_s, 1)}
                        if result.tokens_per_s is not None
                        else {}
                    ),
                    "seconds": round(result.seconds, 1),
                    "checkpoint": str(result.checkpoint),
                    "stopped_early": result.stopped_early,
                    "skipped_steps": result.skipped_steps,
                    "evaluation": result.evaluation,
                    **({"hf_model": str(result.hf_model)} if result.hf_model else {}),
                }
            )
        )
    return 0


def _unit(recipe: Recipe) -> str:
    """What one sample of the recipe's dataset is: images, texts or clips."""
    if recipe.data.is_paired:
        return "pairs"
    return "texts" if recipe.data.is_text else "clips" if recipe.data.is_speech else "images"


def _load_embeddings(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keys = ("train_embeddings", "train_labels", "test_embeddings", "test_labels")
    need = f"need an .npz with {', '.join(keys)}"
    try:
        loaded = np.load(path)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone array (ssl-serve embed's .npy)
            raise SslTrainError(f"{path}: {need}; this file holds one {type(loaded).__name__}")
        with loaded as f:
            train_x, train_y, test_x, test_y = (f[k] for k in keys)
    except (OSError, KeyError, ValueError) as err:
        raise SslTrainError(f"{path}: {need} ({err})") from None
    return train_x, train_y, test_x, test_y


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from ssl_train.evaluation import knn_accuracy, linear_probe

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.embeddings and (args.eval_path or args.eval_test_path):
        raise SslTrainError(
            "--eval-path and --eval-test-path go with --checkpoint, not --embeddings"
        )
    retrieval: dict[str, object] = {}
    if args.save_embeddings and not args.checkpoint:
        raise SslTrainError("--save-embeddings goes with --checkpoint of a spoken_words run")
    if args.embeddings:
        train_x, train_y, test_x, test_y = _load_embeddings(args.embeddings)
    else:
        from ssl_train.checkpoint import load_checkpoint, resolve_checkpoint
        from ssl_train.data import labelled_eval_images
        from ssl_train.evaluation import embed_images
        from ssl_train.recipe import load_recipe
        from ssl_train.trainer import build_model

        folder = resolve_checkpoint(args.checkpoint)
        recipe = load_recipe(folder / "recipe.yaml")
        if args.save_embeddings and not recipe.data.is_paired:
            raise SslTrainError(
                f"--save-embeddings is for spoken_words (CLIP) runs, not {recipe.data.dataset}"
            )
        if recipe.data.is_paired:
            train_x, train_y, test_x, test_y, retrieval = _embed_paired_run(args, folder, recipe)
        elif recipe.data.is_text:
            train_x, train_y, test_x, test_y = _embed_text_run(args, folder, recipe)
        elif recipe.data.is_speech:
            train_x, train_y, test_x, test_y = _embed_speech_run(args, folder, recipe)
        else:
            model = build_model(recipe)
            load_checkpoint(folder, model, None, recipe.sha256())
            train_images, train_y, test_images, test_y = labelled_eval_images(
                recipe, args.eval_path, args.eval_test_path
            )
            if not args.threads:
                torch.set_num_threads(recipe.threads or torch.get_num_threads())
            train_x = embed_images(model, recipe, train_images)
            test_x = embed_images(model, recipe, test_images)
    result: dict[str, object] = {
        "memory_bank": len(train_y),
        "queries": len(test_y),
        "temperature": args.temperature,
        **retrieval,
    }
    try:
        for k in args.k:
            top1, top5 = knn_accuracy(
                train_x, train_y, test_x, test_y, k=k, temperature=args.temperature
            )
            result[f"knn_top1_k{k}"], result[f"knn_top5_k{k}"] = top1, top5
        if args.linear_probe:
            probe = linear_probe(
                train_x, train_y, test_x, test_y, weight_decays=args.weight_decays, seed=args.seed
            )
            result.update(
                linear_probe_top1=probe.top1,
                linear_probe_top5=probe.top5,
                linear_probe_weight_decay=probe.weight_decay,
                linear_probe_val_top1={f"{wd:g}": acc for wd, acc in probe.val_top1.items()},
                linear_probe_seed=args.seed,
                linear_probe_seconds=round(probe.seconds, 2),
            )
    except ValueError as err:
        source = args.embeddings or args.checkpoint
        raise SslTrainError(f"cannot evaluate {source}: {err}") from None
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


def _embed_text_run(
    args: argparse.Namespace, folder: Path, recipe: Recipe
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of a text run's whole memory bank and held-out queries (its recipe's split)."""
    import torch

    from ssl_models.text import TextSSLMethod
    from ssl_train.checkpoint import load_checkpoint
    from ssl_train.evaluation import embed_texts
    from ssl_train.text_data import load_text_corpus, run_tokenizer
    from ssl_train.trainer import build_model

    if args.eval_path or args.eval_test_path:
        raise SslTrainError(
            "--eval-path and --eval-test-path are image folders; a text run is evaluated on its "
            "recipe's labelled split"
        )
    corpus = load_text_corpus(recipe)
    if not corpus.labelled:
        logging.getLogger("ssl_train").warning(
            "evaluation skipped: data.dataset %s has no labels (kNN needs a labelled corpus: "
            "wordnet, fortunes)", recipe.data.dataset,
        )  # fmt: skip
        raise SslTrainError(
            f"nothing to evaluate: data.dataset {recipe.data.dataset} is unlabelled"
        )
    tokenizer = run_tokenizer(folder)
    model = build_model(recipe, tokenizer.get_vocab_size())
    assert isinstance(model, TextSSLMethod)  # the recipe's check allows text methods only
    load_checkpoint(folder, model, None, recipe.sha256())
    if not args.threads:
        torch.set_num_threads(recipe.threads or torch.get_num_threads())
    length = recipe.data.max_length
    train_x = embed_texts(model, tokenizer, corpus.bank, length)
    test_x = embed_texts(model, tokenizer, corpus.queries, length)
    return train_x, corpus.bank_labels, test_x, corpus.query_labels


def _embed_paired_run(
    args: argparse.Namespace, folder: Path, recipe: Recipe
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, object]]:
    """A spoken_words (CLIP) run: the speech tower's embeddings of the training voices' clips
    (memory bank) and the held-out voices' clips (queries), and cross-modal retrieval top-1 of
    the held-out clips against the gallery of words in the joint space (written to
    ``--save-embeddings`` as .npz when given)."""
    import torch

    from ssl_train.checkpoint import load_checkpoint
    from ssl_train.paired_data import load_paired_corpus, retrieval_metrics
    from ssl_train.speech_data import embed_clips
    from ssl_train.text_data import run_tokenizer
    from ssl_train.trainer import build_model

    if args.eval_path or args.eval_test_path:
        raise SslTrainError(
            "a spoken_words run is evaluated on its recipe's split by voice "
            "(data.heldout_voices); --eval-path and --eval-test-path do not apply"
        )
    corpus = load_paired_corpus(recipe)
    tokenizer = run_tokenizer(folder)
    model = build_model(recipe, tokenizer.get_vocab_size())
    load_checkpoint(folder, model, None, recipe.sha256())
    if not args.threads:
        torch.set_num_threads(recipe.threads or torch.get_num_threads())
    r = retrieval_metrics(model, recipe, corpus, tokenizer)
    if args.save_embeddings:
        np.savez(args.save_embeddings, audio=r["audio"], audio_labels=r["audio_labels"],
                 text=r["text"], text_labels=r["text_labels"])  # fmt: skip
    retrieval = {k: r[k] for k in ("retrieval_a2t_top1", "retrieval_t2a_top1",
                                   "retrieval_chance_a2t", "retrieval_chance_t2a")}  # fmt: skip
    retrieval["retrieval_queries"] = len(corpus.queries)
    retrieval["retrieval_gallery"] = len(r["text_labels"])
    train_x = embed_clips(model, corpus.train)
    test_x = embed_clips(model, corpus.queries)
    return train_x, corpus.train_labels, test_x, corpus.query_labels, retrieval


def _embed_speech_run(
    args: argparse.Namespace, folder: Path, recipe: Recipe
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Embeddings of a speech run's whole memory bank and queries: spoken digits split by
    voice as the recipe says, or an audio folder's labelled ``data.eval_path`` (or
    ``--eval-path``) split per class."""
    import torch

    from ssl_train.checkpoint import load_checkpoint
    from ssl_train.speech_data import embed_clips, load_speech_corpus
    from ssl_train.trainer import build_model

    if args.eval_test_path or (args.eval_path and recipe.data.dataset != "audio_folder"):
        raise SslTrainError(
            "a spoken_digits run is evaluated on its recipe's split by voice "
            "(data.heldout_voices); --eval-path DIR (one sub-folder of clips per class) goes "
            "with an audio_folder run; --eval-test-path is for image folders"
        )
    corpus = load_speech_corpus(recipe, args.eval_path, pretraining=False)
    if not corpus.labelled:
        raise SslTrainError(
            "nothing to evaluate: the audio_folder run has no data.eval_path; pass --eval-path "
            "DIR (a folder with one sub-folder of clips per class, split "
            f"{1 - recipe.data.eval_test_fraction:g}/{recipe.data.eval_test_fraction:g} into "
            "memory bank and queries)"
        )
    model = build_model(recipe)
    load_checkpoint(folder, model, None, recipe.sha256())
    if not args.threads:
        torch.set_num_threads(recipe.threads or torch.get_num_threads())
    train_x = embed_clips(model, corpus.bank)
    test_x = embed_clips(model, corpus.queries)
    return train_x, corpus.bank_labels, test_x, corpus.query_labels


def _finetune(args: argparse.Namespace) -> int:
    from ssl_train.finetune import Finetuner, default_output, load_finetune_recipe

    overrides = [*args.set, *([f"mode={args.mode}"] if args.mode else [])]
    recipe = load_finetune_recipe(args.recipe, overrides)
    output = Path(args.output) if args.output else default_output(args.checkpoint, recipe.mode)
    result = Finetuner(args.checkpoint, recipe, output, overwrite=args.overwrite).fit()
    print(
        json.dumps(
            {
                "run": str(output),
                "mode": recipe.mode,
                "best_epoch": result.best_epoch,
                "epochs": result.epochs,
                "val_top1": round(result.val_top1, 4),
                "val_top5": round(result.val_top5, 4),
                "test_top1": round(result.test_top1, 4),
                "test_top5": round(result.test_top5, 4),
                "checkpoint": str(result.checkpoint),
                "stopped_early": result.stopped_early,
                "seconds": round(result.seconds, 1),
            }
        )
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _summary(recipe_text: str) -> str:
    """The first sentence of a recipe file's leading comment block (which may span lines)."""
    lines = []
    for line in recipe_text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    paragraph = " ".join(lines)
    depth = 0  # a full stop inside parentheses ("(Radford et al. 2019: ...)") ends nothing
    for i, char in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth <= 0 and paragraph[i + 1 : i + 2] in ("", " "):
            return paragraph[: i + 1]
    return paragraph


def _recipes(args: argparse.Namespace) -> int:
    shipped = shipped_recipes()
    if args.name is None:
        for name, path in sorted(shipped.items()):
            print(f"{name:<28} {_summary(path.read_text())}")
        return 0
    if args.name not in shipped:
        raise SslTrainError(f"no shipped recipe {args.name!r}; known: {', '.join(sorted(shipped))}")
    sys.stdout.write(shipped[args.name].read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-train",
        description="Pretrain self-supervised encoders from YAML recipes, fine-tune and "
        "evaluate them.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder from a recipe",
        description="Pretrain an encoder from a YAML recipe; writes checkpoints, metrics.jsonl "
        "and the resolved recipe to the run folder.",
    )
    p.add_argument(
        "recipe",
        help=f"a recipe YAML file, or a shipped recipe name ({', '.join(sorted(shipped_recipes()))})",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set optimizer.lr=0.3 --set budget.steps=100 (repeatable)",
    )
    p.add_argument("--output", help="run folder (default: runs/<recipe name>)")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume", action="store_true", help="continue from the run folder's latest checkpoint"
    )
    start.add_argument(
        "--overwrite", action="store_true", help="delete a previous run in the output folder first"
    )
    p.add_argument(
        "--profile-steps",
        type=_positive_int,
        metavar="N",
        help="record a torch.profiler trace of N steps after the first and log where step time "
        "goes (data, forward, backward, optimizer); written to RUN/profile/ (trace.json for "
        "Perfetto or chrome://tracing, tensorboard/ for TensorBoard's profiler, summary.json)",
    )
    p.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N processes on this machine with DDP (shortcut for torchrun --standalone "
        "--nproc_per_node N); the recipe's batch size stays global",
    )
    p.set_defaults(func=_pretrain)

    r = sub.add_parser(
        "recipes",
        help="list the shipped recipes, or print one to start your own",
        description="Without NAME: list the shipped recipes. With NAME: print that recipe's YAML "
        "(e.g. ssl-train recipes fashion_mnist_simclr > my.yaml).",
    )
    r.add_argument("name", nargs="?", help="a shipped recipe name")
    r.set_defaults(func=_recipes)

    e = sub.add_parser(
        "evaluate",
        help="kNN top-1/top-5 and linear probe of an encoder or of precomputed embeddings",
        description="kNN top-1/top-5 (cosine, temperature-weighted votes) with the labelled train "
        "split as memory bank and the test split as queries; with --linear-probe also a "
        "logistic-regression probe on standardised embeddings (L-BFGS, weight decay chosen on "
        "10% of the train split, refitted on all of it; deterministic for a --seed). "
        "Labelled images of a --checkpoint: Fashion-MNIST's train/test splits; for an "
        "image_folder run, the recipe's data.eval_path (or --eval-path) split per class into "
        "memory bank and queries (data.eval_test_fraction, default 20%, a split fixed by seed "
        "0), or --eval-path as bank and --eval-test-path as queries. A text run (wordnet, "
        "fortunes): its recipe's split, the memory-bank texts (also the pretraining texts) as "
        "bank and the held-out texts as queries, embedded with the method's pooling over real "
        "tokens; an unlabelled text_file run has nothing to evaluate. A speech run: spoken_digits "
        "split by voice (data.heldout_voices voices are the queries, the others the memory "
        "bank), an audio_folder run its data.eval_path (or --eval-path) split per class; clips "
        "embedded whole with the method's pooling over real frames. A spoken_words (CLIP) "
        "run: kNN of its speech tower by voice as spoken_digits, plus cross-modal retrieval "
        "top-1 (audio->text, text->audio) of the held-out voices' clips against the ten words.",
    )
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--checkpoint",
        help="run folder or checkpoint folder: embed the recipe's dataset in-process",
    )
    src.add_argument(
        "--embeddings",
        help=".npz with train_embeddings, train_labels, test_embeddings, test_labels",
    )
    e.add_argument(
        "--eval-path",
        metavar="DIR",
        help="with --checkpoint: a labelled folder (one sub-folder of images per class) to "
        "evaluate on instead of the recipe's data (split into memory bank and queries as "
        "data.eval_path is); needed for an image_folder run without data.eval_path",
    )
    e.add_argument(
        "--eval-test-path",
        metavar="DIR",
        help="with --checkpoint: a labelled folder of queries (classes matched by sub-folder "
        "name); the --eval-path (or data.eval_path) folder is then the whole memory bank",
    )
    e.add_argument(
        "--k",
        type=_positive_int,
        nargs="+",
        default=[20, 200],
        help="neighbour counts (default: 20 200)",
    )
    e.add_argument(
        "--temperature", type=_positive_float, default=0.1, help="vote temperature (default: 0.1)"
    )
    e.add_argument("--linear-probe", action="store_true", help="also fit and score a linear probe")
    e.add_argument(
        "--weight-decays",
        type=_non_negative_float,
        nargs="+",
        default=list(WEIGHT_DECAYS),
        metavar="WD",
        help=f"linear-probe sweep (default: {' '.join(f'{w:g}' for w in WEIGHT_DECAYS)})",
    )
    e.add_argument(
        "--seed", type=int, default=0, help="linear probe: fixes the held-out split (default: 0)"
    )
    e.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's)")
    e.add_argument("--output", help="also write the result as JSON here")
    e.add_argument(
        "--save-embeddings",
        metavar="NPZ",
        help="spoken_words (CLIP) runs: write the held-out clips' and the gallery texts' "
        "joint-space embeddings and labels (audio, audio_labels, text, text_labels) here",
    )
    e.set_defaults(func=_evaluate)

    f = sub.add_parser(
        "finetune",
        help="train a classifier head on a pretrained encoder (linear probe or full fine-tune)",
        description="Train a linear classifier on a pretrained encoder with the labels of the "
        "encoder recipe's dataset (Fashion-MNIST classes, an image_folder run's class "
        "sub-folders, WordNet supersenses, fortune categories, spoken digits by held-out voice, "
        "an audio_folder run's class sub-folders) or of --set data.path=FILE (a text run: one "
        "'label<TAB>text' per line; an image_folder or audio_folder run: a folder of class "
        "sub-folders): --mode linear freezes the encoder, --mode full trains it too "
        "(optionally with layer_decay for ViTs). A seeded part of the train split is held out; "
        "training stops when its top-1 has not improved for early_stopping.patience epochs, and "
        "the best epoch is saved (safetensors + classifier.json with the label names, beside "
        "the encoder's recipe). Prints validation and test top-1/top-5.",
    )
    f.add_argument("checkpoint", help="pretraining run folder or checkpoint folder")
    f.add_argument(
        "--recipe",
        help="fine-tuning recipe YAML (keys: name, mode, seed, threads, device, data, "
        "batch_norm, optimizer, layer_decay, schedule, budget, early_stopping, progress_bar); "
        "default: built-in defaults",
    )
    f.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a fine-tuning recipe value, e.g. --set budget.epochs=20 "
        "--set optimizer.name=lars (repeatable)",
    )
    f.add_argument(
        "--mode",
        choices=["linear", "full"],
        help="linear: frozen encoder; full: train the encoder too (shortcut for --set mode=...)",
    )
    f.add_argument("--output", help="run folder (default: <pretraining run>/finetune-<mode>)")
    f.add_argument(
        "--overwrite", action="store_true", help="replace a previous fine-tuning run in --output"
    )
    f.set_defaults(func=_finetune)
    return parser


def _log_to_stderr() -> None:
    """Show ssl-train's INFO messages (data loaded, online kNN off) on stderr, once."""
    log = logging.getLogger("ssl_train")
    if not any(getattr(h, "_ssl_train_cli", False) for h in log.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ssl-train: %(message)s"))
        handler._ssl_train_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _log_to_stderr()
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return int(args.func(args))
    except (SslTrainError, SslDataError, SslModelsError) as err:
        print(f"ssl-train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
