"""Speech views on real recordings, and a few wav2vec 2.0 steps on a small encoder.

1. real clips at 16 kHz: Asterisk's human prompts (``ssl_data.AsteriskSounds``: digits and
   letters, 8 kHz recordings resampled with soxr) and espeak-ng's spoken digits
   (``ssl_data.datasets.SpokenDigits``, rendered once into a cache);
2. ``ssl_data.ContrastiveAudioView`` (COLA, arXiv:2010.10915): two random 1-second crops of each
   clip with gain, noise and time shift; every parameter is a pure function of (seed, epoch,
   clip index, view), so asking again gives the same views;
3. ``ssl_data.Wav2Vec2MaskView``: a crop plus the wav2vec 2.0 span mask over the encoder's
   20 ms frames (mask_prob 0.65, spans of 10 frames, never on padding);
4. a few steps of ``ssl_models.Wav2Vec2`` (arXiv:2006.11477: contrastive loss over quantised
   latents + codebook diversity) on a small ``ssl_models.speech.SpeechEncoder`` (2 layers,
   D=64); batch contract ``[input_values (B, T), lengths (B,), mask_time_indices (B, F)]`` with
   waveforms normalised per utterance over their real samples (packages/ssl-models/README.md);
   the masked-frame loss on a fixed held-out batch (same masks, same distractors, quantiser in
   eval mode) before and after, and mean-pooled utterance embeddings.

Run (about 1.5 minutes on 2 shared CPU cores; ``--fast``: about 15 s)::

    ./dev run python examples/speech_views.py [--fast]

The last line printed is a JSON summary (the test in ``tests/test_examples.py`` reads it).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ssl_data import AsteriskSounds, ContrastiveAudioView, Wav2Vec2MaskView
from ssl_data.datasets import SpokenDigits
from ssl_models import Wav2Vec2
from ssl_models.speech import SpeechEncoder

RATE = 16000  # Hz
SEED = 0


def normalize_utterances(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each clip's real samples; padding stays 0.

    Args:
        x: ``(B, T) float32`` zero-padded waveforms.
        lengths: ``(B,) int64`` real lengths in samples.

    Returns:
        ``(B, T) float32``.
    """
    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]
    n = lengths.clamp(min=1)[:, None].to(x.dtype)
    mean = (x * real).sum(1, keepdim=True) / n
    var = (((x - mean) * real) ** 2).sum(1, keepdim=True) / n
    return torch.where(real, (x - mean) / torch.sqrt(var + 1e-7), torch.zeros_like(x))


def wav2vec2_batch(
    view: Wav2Vec2MaskView, clips: list[torch.Tensor], indices: np.ndarray, epoch: int
) -> list[torch.Tensor]:
    """The method's batch: cropped, normalised waveforms, their lengths and the span mask."""
    x, lengths, mask = view(clips, indices, epoch)
    return [normalize_utterances(x, lengths), lengths, mask]


@torch.no_grad()
def held_out_loss(method: Wav2Vec2, batch: list[torch.Tensor]) -> float:
    """The contrastive term on ``batch`` with fixed distractors and the quantiser's argmax."""
    method.eval()
    method.training_loss(batch, generator=torch.Generator().manual_seed(SEED))
    method.train()
    return float(method.last_loss_terms["contrastive"])


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="tiny budget (CI): ~15 s")
    args = parser.parse_args(argv)
    steps, batch_size = (25, 8) if args.fast else (150, 16)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # faster than 2 when another process holds a core

    asterisk = AsteriskSounds("digits", sample_rate=RATE)
    letters = AsteriskSounds("letters", sample_rate=RATE)
    espeak = SpokenDigits(sample_rate=RATE)
    clips = [d[i][0] for d in (asterisk, letters, espeak) for i in range(len(d))]
    seconds = [len(c) / RATE for c in clips]
    print(
        f"1. {len(clips)} real clips ({len(asterisk)} Asterisk digits, {len(letters)} letters, "
        f"{len(espeak)} espeak-ng digits), {min(seconds):.2f}-{max(seconds):.2f} s at {RATE} Hz"
    )

    cola = ContrastiveAudioView(sample_rate=RATE, crop_seconds=1.0, seed=SEED)
    idx = np.arange(4)
    a, b = (cola.view(clips[:4], idx, epoch=0, view=v) for v in (0, 1))
    again = cola.view(clips[:4], idx, epoch=0, view=0)
    views_differ = float((a - b).abs().max())
    print(
        f"2. ContrastiveAudioView: two views {tuple(a.shape)} per batch; max |view0 - view1| = "
        f"{views_differ:.3f}; asked again: identical = {torch.equal(a, again)}"
    )

    mask_view = Wav2Vec2MaskView(sample_rate=RATE, crop_seconds=1.0, seed=SEED)
    x, lengths, mask = mask_view(clips[:4], idx, epoch=0)
    print(
        f"3. Wav2Vec2MaskView: waveforms {tuple(x.shape)}, lengths {lengths.tolist()} samples, "
        f"mask {tuple(mask.shape)} frames, {mask.float().mean():.0%} masked"
    )

    encoder = SpeechEncoder(
        hidden_size=64, num_layers=2, num_heads=2, conv_dim=(64,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, dropout=0.0,
    )  # fmt: skip
    method = Wav2Vec2(
        encoder, num_negatives=20, num_codevector_groups=2, num_codevectors_per_group=32,
        codevector_dim=64, proj_codevector_dim=64,
    )  # fmt: skip
    params = sum(p.numel() for p in method.parameters())
    optimizer = torch.optim.AdamW(method.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(SEED)
    held = rng.permutation(len(clips))[:16]
    train = np.setdiff1d(np.arange(len(clips)), held)
    held_batch = wav2vec2_batch(mask_view, [clips[i] for i in held], held, epoch=0)
    loss_before = held_out_loss(method, held_batch)
    print(f"4. wav2vec 2.0, {params / 1e6:.2f}M parameters, {steps} steps of {batch_size} clips")
    print(f"   held-out contrastive loss before: {loss_before:.3f}")

    t0, losses = time.perf_counter(), []
    for step in range(steps):
        chosen = np.random.default_rng([SEED, step]).choice(train, batch_size, replace=False)
        batch = wav2vec2_batch(mask_view, [clips[i] for i in chosen], chosen, epoch=step)
        loss = method.training_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.parameters(), 1.0)
        optimizer.step()
        method.after_optimizer_step(step, steps)
        losses.append(loss.item())
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            terms = {k: round(float(v), 3) for k, v in method.last_loss_terms.items()}
            print(f"   step {step:3d}  loss {losses[-1]:.3f}  {terms}")
    train_seconds = time.perf_counter() - t0
    loss_after = held_out_loss(method, held_batch)
    print(f"   held-out contrastive loss after: {loss_after:.3f} ({train_seconds:.1f} s)")

    method.eval()
    with torch.no_grad():
        emb = method.embed(held_batch[0], held_batch[1])
        alone = method.embed(held_batch[0][:1, : int(held_batch[1][0])], held_batch[1][:1])
    padding_diff = float((alone[0] - emb[0]).abs().max())
    print(
        f"5. pooled utterance embeddings {tuple(emb.shape)}; alone vs in batch: {padding_diff:.1e}"
    )

    summary: dict[str, object] = {
        "clips": len(clips),
        "views_max_abs_diff": views_differ,
        "views_reproducible": torch.equal(a, again),
        "mask_shape": list(mask.shape),
        "mask_fraction": float(mask.float().mean()),
        "parameters": params,
        "steps": steps,
        "held_out_loss_before": loss_before,
        "held_out_loss_after": loss_after,
        "train_loss_first": losses[0],
        "train_loss_last": losses[-1],
        "embedding_shape": list(emb.shape),
        "padding_max_abs_diff": padding_diff,
        "seconds": round(train_seconds, 1),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
