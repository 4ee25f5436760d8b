"""Masked-language-model pretraining of a tiny BERT on real WordNet glosses.

1. load WordNet's glosses (``ssl_data.load_wordnet_glosses``: Debian's ``wordnet-base``, else the
   real sample ssl-data ships) and hold out a few hundred for evaluation;
2. train a WordPiece tokenizer on the training glosses (``ssl_data.train_tokenizer``);
3. pretrain ``ssl_models.text.bert_tiny`` (2 layers, D=128; arXiv:1908.08962) with BERT's masked
   language modelling (arXiv:1810.04805): ``ssl_data.TextCollator`` pads a batch,
   ``ssl_data.MLMMasking`` selects 15% of the real tokens (80% [MASK], 10% random, 10% kept; a
   pure function of seed, epoch and sample index), ``ssl_models.text.MaskedLM`` scores them;
4. report the held-out masked-token loss (same masks before and after) going down, and
   mean-pooled sentence embeddings: the nearest held-out gloss of a few queries, and the check
   that a gloss's embedding is the same alone as inside a padded batch.

Run (about 2 minutes on 2 shared CPU cores; ``--fast``: about 20 s)::

    ./dev run python examples/text_pretrain.py [--fast] [--save-tokenizer tokenizer.json]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ssl_data import MLMMasking, TextCollator, load_wordnet_glosses, train_tokenizer
from ssl_models.text import MaskedLM, bert_tiny

SEED = 0


def masked_batch(
    collator: TextCollator, masking: MLMMasking, texts: list[str], indices: np.ndarray, epoch: int
) -> dict[str, torch.Tensor]:
    """Tokenise, pad and mask ``texts`` (dataset ``indices``): the MaskedLM batch dict.

    Returns:
        ``input_ids``, ``attention_mask``, ``labels``: each ``(B, L) int64``; labels are -100
        except at the masked positions.
    """
    batch = collator(texts)
    input_ids, labels = masking(
        batch["input_ids"], indices, epoch,
        special_tokens_mask=batch["special_tokens_mask"], attention_mask=batch["attention_mask"],
    )  # fmt: skip
    return {"input_ids": input_ids, "attention_mask": batch["attention_mask"], "labels": labels}


@torch.no_grad()
def held_out_loss(model: MaskedLM, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean masked-token cross-entropy (nats per masked token) over fixed masked batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        loss_sum, n = model.loss_sum(batch)
        total, count = total + float(loss_sum), count + int(n)
    model.train()
    return total / count


@torch.no_grad()
def embed(model: MaskedLM, collator: TextCollator, texts: list[str]) -> torch.Tensor:
    """``(N, 128) float32`` L2-normalised mean-pooled embeddings (over real tokens only)."""
    model.eval()
    batch = collator(texts)
    emb = model.embed(batch["input_ids"], batch["attention_mask"])
    model.train()
    return torch.nn.functional.normalize(emb, dim=1)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny budget (CI): ~20 s")
    parser.add_argument("--save-tokenizer", type=Path, help="also write the tokenizer.json here")
    args = parser.parse_args(argv)
    n_train, vocab, steps, batch_size = (
        (20000, 4000, 60, 32) if args.fast else (80000, 8000, 300, 64)
    )
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # faster than 2 when another process holds a core

    glosses = load_wordnet_glosses()
    order = np.random.default_rng(SEED).permutation(len(glosses.texts))
    held_out = [glosses.texts[i] for i in order[:256]]
    train = [glosses.texts[i] for i in order[256 : 256 + n_train]]
    print(f"1. {len(glosses.texts)} WordNet glosses; {len(train)} for training, 256 held out")
    print(f"   e.g. {train[0]!r}")

    t0 = time.perf_counter()
    tokenizer = train_tokenizer(train, "wordpiece", vocab_size=vocab, output=args.save_tokenizer)
    print(
        f"2. WordPiece tokenizer: {tokenizer.get_vocab_size()} tokens in "
        f"{time.perf_counter() - t0:.1f} s; {tokenizer.encode(held_out[0]).tokens[:12]}"
    )

    collator = TextCollator(tokenizer, max_length=64)
    masking = MLMMasking.from_tokenizer(tokenizer, seed=SEED)
    model = MaskedLM(bert_tiny(tokenizer.get_vocab_size(), pooling="mean"))
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 10) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    # Fixed masks for evaluation: epoch 0 of the held-out indices, the same before and after.
    held_batches = [
        masked_batch(collator, masking, held_out[i : i + 64], np.arange(i, i + 64), epoch=0)
        for i in range(0, len(held_out), 64)
    ]
    loss_before = held_out_loss(model, held_batches)
    print(f"3. MLM on bert_tiny ({params / 1e6:.2f}M parameters), {steps} steps of {batch_size}")
    print(f"   held-out masked-token loss before: {loss_before:.3f} (ln V = {math.log(vocab):.3f})")

    t0, train_losses = time.perf_counter(), []
    per_epoch = len(train) // batch_size
    for step in range(steps):
        epoch, pos = divmod(step, per_epoch)
        epoch_order = np.random.default_rng([SEED, epoch]).permutation(len(train))
        idx = epoch_order[pos * batch_size : (pos + 1) * batch_size]
        batch = masked_batch(collator, masking, [train[i] for i in idx], idx, epoch)
        loss = model.training_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        train_losses.append(loss.item())
        if step % max(1, steps // 6) == 0 or step == steps - 1:
            print(f"   step {step:4d}  loss {train_losses[-1]:.3f}")
    seconds = time.perf_counter() - t0
    loss_after = held_out_loss(model, held_batches)
    print(f"   held-out masked-token loss after: {loss_after:.3f} ({seconds:.1f} s)")

    emb = embed(model, collator, held_out)
    alone = torch.cat([embed(model, collator, [t]) for t in held_out[:8]])
    padding_diff = float((alone - emb[:8]).abs().max())
    print(
        f"4. mean-pooled embeddings {tuple(emb.shape)}; alone vs padded batch: {padding_diff:.1e}"
    )
    sims = emb @ emb.T
    sims.fill_diagonal_(-2)
    for q in range(3):
        print(f"   {held_out[q][:60]!r}\n     -> {held_out[int(sims[q].argmax())][:60]!r}")

    summary: dict[str, object] = {
        "vocab_size": tokenizer.get_vocab_size(),
        "parameters": params,
        "steps": steps,
        "held_out_loss_before": loss_before,
        "held_out_loss_after": loss_after,
        "train_loss_first": train_losses[0],
        "train_loss_last": train_losses[-1],
        "embedding_shape": list(emb.shape),
        "padding_max_abs_diff": padding_diff,
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
