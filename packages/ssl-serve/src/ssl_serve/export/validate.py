"""Export validation: onnxruntime against PyTorch, and server preprocessing against training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_serve.bundle import PROBABILITIES_OUTPUT, ImagePreprocessing, TextPreprocessing
from ssl_serve.errors import ExportValidationError
from ssl_serve.export.onnx_graph import INPUT_NAME, OUTPUT_NAME
from ssl_serve.preprocess import normalize_pixels, pad_audio
from ssl_serve.preprocess.text import (
    TextTokenizer,
    TokenizedTexts,
    length_sorted_batches,
    pad_sequences,
)
from ssl_serve.runtime import OnnxEmbedder, OnnxTextEmbedder, create_session


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Agreement of two embedding matrices.

    Args:
        reference: ``(N, D) float32``, e.g. PyTorch's output.
        candidate: ``(N, D) float32``, e.g. onnxruntime's output.

    Returns:
        ``max_abs_diff`` (largest elementwise difference), ``min_cosine`` (smallest row-wise
        cosine similarity) and ``max_norm_error`` (largest | ||candidate row||_2 - 1 |).
    """
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    norms = np.linalg.norm(cand, axis=1)
    cosine = (ref * cand).sum(axis=1) / np.maximum(np.linalg.norm(ref, axis=1) * norms, 1e-30)
    return {
        "max_abs_diff": float(np.abs(ref - cand).max()),
        "min_cosine": float(cosine.min()),
        "max_norm_error": float(np.abs(norms - 1.0).max()),
    }


def validate_export(
    onnx_path: Path,
    model: nn.Module,
    pixel_values: np.ndarray,
    images: np.ndarray,
    preprocessing: ImagePreprocessing,
    *,
    batch_sizes: Sequence[int],
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check an exported bundle against the PyTorch model on real example inputs.

    Two checks: (1) the server's preprocessing of the raw ``images`` reproduces the
    ``pixel_values`` training fed the encoder (so bundle.json's preprocessing matches
    training); (2) onnxruntime, run on ``pixel_values`` in chunks of each batch size, matches
    PyTorch run on all of them at once, and its rows have unit norm.

    Args:
        onnx_path: The exported ``model.onnx``.
        model: The exported PyTorch module (encoder + normalisation), eval mode.
        pixel_values: ``(N, C, H, W) float32`` preprocessed example inputs.
        images: ``(N, H, W, C) uint8`` the same images before preprocessing.
        preprocessing: The bundle's preprocessing parameters.
        batch_sizes: Chunk sizes for onnxruntime; choose ones that differ from the export's.
        tolerance: Largest accepted max_abs_diff, 1 - min_cosine and norm error.

    Returns:
        The bundle's ``validation`` figures: ``max_abs_diff``, ``min_cosine``,
        ``max_norm_error``, ``preprocessing_max_abs_diff``, ``tolerance``, ``num_inputs``,
        ``batch_sizes``.

    Raises:
        ExportValidationError: A figure is beyond ``tolerance`` (the message names it; the
            figures are in ``error.figures``).
    """
    served = normalize_pixels(images, preprocessing)
    figures: dict[str, Any] = {
        "preprocessing_max_abs_diff": float(np.abs(served - pixel_values).max()),
    }
    with torch.inference_mode():
        reference = model.eval()(torch.from_numpy(pixel_values)).numpy()
    embedder = OnnxEmbedder(onnx_path, input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    worst: dict[str, float] = {"max_abs_diff": 0.0, "min_cosine": 1.0, "max_norm_error": 0.0}
    for size in batch_sizes:
        embedder.max_batch_size = size
        f = compare_embeddings(reference, embedder.embed(pixel_values))
        worst["max_abs_diff"] = max(worst["max_abs_diff"], f["max_abs_diff"])
        worst["min_cosine"] = min(worst["min_cosine"], f["min_cosine"])
        worst["max_norm_error"] = max(worst["max_norm_error"], f["max_norm_error"])
    figures = {
        **worst,
        **figures,
        "tolerance": tolerance,
        "num_inputs": len(pixel_values),
        "batch_sizes": list(batch_sizes),
    }
    failures = [
        f"{k} = {figures[k]:.3g} > tolerance {tolerance:g}"
        for k in ("max_abs_diff", "max_norm_error", "preprocessing_max_abs_diff")
        if not figures[k] <= tolerance
    ]
    if not figures["min_cosine"] >= 1.0 - tolerance:
        failures.append(f"min_cosine = {figures['min_cosine']:.8f} < 1 - tolerance")
    if failures:
        hint = (
            " (preprocessing: the recipe's data.mean/std/channels do not reproduce the "
            "checkpoint's pixel_values)"
            if "preprocessing_max_abs_diff" in " ".join(failures)
            else ""
        )
        raise ExportValidationError(
            f"{onnx_path} failed validation: {'; '.join(failures)}{hint}", figures
        )
    return figures


def validate_probabilities(
    onnx_path: Path,
    encoder: nn.Module,
    head: nn.Module,
    pixel_values: np.ndarray,
    *,
    batch_sizes: Sequence[int],
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check a classifier bundle's ``probabilities`` output against the PyTorch classifier.

    The reference is ``softmax(head(encoder(x)))`` with the checkpoint's own head module (its
    batch norm unfolded), so the check also covers folding the batch norm into the graph's
    linear layer. onnxruntime runs on ``pixel_values`` in chunks of each batch size.

    Args:
        onnx_path: The exported ``model.onnx`` (outputs ``embedding`` and ``probabilities``).
        encoder: The encoder, eval mode: ``(N, C, H, W) float32`` -> ``(N, D)`` features.
        head: The classifier head, eval mode: ``(N, D)`` features -> ``(N, K)`` logits.
        pixel_values: ``(N, C, H, W) float32`` preprocessed real example inputs.
        batch_sizes: Chunk sizes for onnxruntime.
        tolerance: Largest accepted max abs difference and row-sum error.

    Returns:
        The figures of :func:`compare_probabilities`.

    Raises:
        ExportValidationError: See :func:`compare_probabilities`.
    """
    with torch.inference_mode():
        x = torch.from_numpy(pixel_values)
        reference = torch.softmax(head.eval()(encoder.eval()(x)), dim=1).numpy()
    embedder = OnnxEmbedder(onnx_path, input_name=INPUT_NAME, output_name=PROBABILITIES_OUTPUT)

    def run_at(size: int) -> np.ndarray:
        embedder.max_batch_size = size
        return embedder.embed(pixel_values)

    return compare_probabilities(onnx_path, reference, run_at, batch_sizes, tolerance)


def compare_probabilities(
    onnx_path: Path,
    reference: np.ndarray,
    run_at: Callable[[int], np.ndarray],
    batch_sizes: Sequence[int],
    tolerance: float,
) -> dict[str, Any]:
    """Compare a classifier bundle's ``probabilities`` with PyTorch's at each batch size.

    Args:
        onnx_path: The exported ``model.onnx``, named in errors.
        reference: ``(N, K)`` PyTorch probabilities of the N real inputs.
        run_at: onnxruntime's ``(N, K)`` probabilities of the same inputs, run in chunks of
            the given batch size.
        batch_sizes: The chunk sizes to try.
        tolerance: Largest accepted max abs difference and row-sum error.

    Returns:
        ``max_abs_diff`` (onnxruntime vs PyTorch), ``max_sum_error`` (largest |row sum - 1|
        of onnxruntime's), ``top1_agreement`` (fraction of inputs with the same most probable
        class, worst batch size), ``num_classes``, ``num_inputs``, ``batch_sizes``.

    Raises:
        ExportValidationError: ``max_abs_diff`` or ``max_sum_error`` is above ``tolerance``, or
            a top-1 class differs where PyTorch's top two are more than ``tolerance`` apart.
    """
    reference = reference.astype(np.float64)
    ref_top = reference.argmax(axis=1)
    sorted_ref = np.sort(reference, axis=1)
    clear = sorted_ref[:, -1] - sorted_ref[:, -2] > tolerance
    max_diff, max_sum_error, agree = 0.0, 0.0, 1.0
    for size in batch_sizes:
        probs = run_at(size).astype(np.float64)
        max_diff = max(max_diff, float(np.abs(probs - reference).max()))
        max_sum_error = max(max_sum_error, float(np.abs(probs.sum(axis=1) - 1.0).max()))
        same = probs.argmax(axis=1) == ref_top
        agree = min(agree, float(same.mean()))
        if not same[clear].all():
            raise ExportValidationError(
                f"{onnx_path}: the top-1 class differs from PyTorch's on "
                f"{int((~same[clear]).sum())} inputs at batch size {size}"
            )
    figures: dict[str, Any] = {
        "max_abs_diff": max_diff,
        "max_sum_error": max_sum_error,
        "top1_agreement": agree,
        "num_classes": int(reference.shape[1]),
        "num_inputs": len(reference),
        "batch_sizes": list(batch_sizes),
    }
    failures = [
        f"probabilities {k} = {figures[k]:.3g} > tolerance {tolerance:g}"
        for k in ("max_abs_diff", "max_sum_error")
        if not figures[k] <= tolerance
    ]
    if failures:
        raise ExportValidationError(
            f"{onnx_path} failed validation: {'; '.join(failures)}", figures
        )
    return figures


def pytorch_text_embeddings(model: nn.Module, tokens: TokenizedTexts, pad_id: int) -> np.ndarray:
    """The PyTorch reference of a text export: length-sorted, padded sub-batches of 8.

    Args:
        model: The exported PyTorch module (transformer + pooling + normalisation); it takes
            ``input_ids``, ``attention_mask`` and ``token_type_ids``, each ``(B, L) int64``.
        tokens: N tokenised texts (special tokens in).
        pad_id: Token id at padded positions.

    Returns:
        ``(N, D) float32`` embeddings, in input order.
    """
    lengths = [len(x) for x in tokens.ids]
    reference = np.empty((len(lengths), 0), dtype=np.float32)
    with torch.inference_mode():
        for idx in length_sorted_batches(lengths, max_batch_size=8, max_batch_tokens=1 << 30):
            ids, mask = pad_sequences([tokens.ids[i] for i in idx], pad_id)
            types, _ = pad_sequences([tokens.type_ids[i] for i in idx], 0)
            args = [torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)]
            out = model.eval()(*args).numpy()
            if reference.shape[1] == 0:
                reference = np.empty((len(lengths), out.shape[1]), dtype=np.float32)
            reference[idx] = out
    return reference


def validate_text_export(
    onnx_path: Path,
    model: nn.Module,
    tokenizer_path: Path,
    texts: Sequence[str],
    preprocessing: TextPreprocessing,
    *,
    hf_tokenizer_dir: Path | None = None,
    export_batch: int = 2,
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check an exported text bundle against the PyTorch model on real texts.

    Tokenises ``texts`` as the server does (:class:`~ssl_serve.preprocess.TextTokenizer`);
    when ``hf_tokenizer_dir`` is given, checks that transformers' ``AutoTokenizer`` (what
    sentence-transformers uses) gives the same ids at the same ``max_length``. PyTorch embeds
    length-sorted sub-batches of 8; onnxruntime embeds them as the server does, with sub-batch
    sizes of all N, 7 and 1 (other batch sizes and padded lengths than PyTorch's and the
    export's), so equal results prove the dynamic axes and that padding does not leak into
    the pooled output.

    Args:
        onnx_path: The exported ``model.onnx``.
        model: The exported PyTorch module (transformer + pooling + normalisation).
        tokenizer_path: The bundle's `tokenizer.json`.
        texts: N real texts (at least one longer than ``max_length`` tokens is advised).
        preprocessing: The bundle's text preprocessing.
        hf_tokenizer_dir: The model folder, for the tokenizer parity check; None skips it.
        export_batch: Batch size of the traced example, recorded in the figures.
        tolerance: Largest accepted max_abs_diff, 1 - min_cosine and norm error.

    Returns:
        The bundle's ``validation`` figures: ``max_abs_diff``, ``min_cosine``,
        ``max_norm_error``, ``tokenizer_mismatches``, ``tolerance``, ``num_inputs``,
        ``num_truncated``, ``sequence_lengths`` ([min, max] tokens), ``batch_sizes``,
        ``export_batch``.

    Raises:
        ExportValidationError: A figure is beyond ``tolerance`` or a tokenisation differs.
    """
    tokens = TextTokenizer(tokenizer_path, preprocessing.max_length).tokenize(texts)
    mismatches = 0
    if hf_tokenizer_dir is not None:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(hf_tokenizer_dir, local_files_only=True)
        hf_ids = hf(list(texts), truncation=True, max_length=preprocessing.max_length)["input_ids"]
        mismatches = sum(list(a) != b.tolist() for a, b in zip(hf_ids, tokens.ids, strict=True))
    lengths = [len(x) for x in tokens.ids]
    reference = pytorch_text_embeddings(model, tokens, preprocessing.pad_id)
    input_names = ["input_ids", "attention_mask"]
    if getattr(model, "uses_token_type_ids", False):
        input_names.append("token_type_ids")
    embedder = OnnxTextEmbedder(
        onnx_path,
        input_names=input_names,
        output_name=OUTPUT_NAME,
        pad_id=preprocessing.pad_id,
        max_batch_tokens=1 << 30,
    )
    batch_sizes = list(dict.fromkeys((len(texts), min(7, len(texts)), 1)))
    worst: dict[str, float] = {"max_abs_diff": 0.0, "min_cosine": 1.0, "max_norm_error": 0.0}
    for size in batch_sizes:
        embedder.max_batch_size = size
        f = compare_embeddings(reference, embedder.embed(tokens.ids, tokens.type_ids))
        worst["max_abs_diff"] = max(worst["max_abs_diff"], f["max_abs_diff"])
        worst["min_cosine"] = min(worst["min_cosine"], f["min_cosine"])
        worst["max_norm_error"] = max(worst["max_norm_error"], f["max_norm_error"])
    figures: dict[str, Any] = {
        **worst,
        "tokenizer_mismatches": mismatches,
        "tolerance": tolerance,
        "num_inputs": len(texts),
        "num_truncated": int(tokens.truncated.sum()),
        "sequence_lengths": [min(lengths), max(lengths)],
        "batch_sizes": batch_sizes,
        "export_batch": export_batch,
    }
    failures = [
        f"{k} = {figures[k]:.3g} > tolerance {tolerance:g}"
        for k in ("max_abs_diff", "max_norm_error")
        if not figures[k] <= tolerance
    ]
    if not figures["min_cosine"] >= 1.0 - tolerance:
        failures.append(f"min_cosine = {figures['min_cosine']:.8f} < 1 - tolerance")
    if mismatches:
        failures.append(
            f"tokenizer_mismatches = {mismatches}: the server's tokenisation of "
            f"{mismatches} of {len(texts)} texts differs from transformers' AutoTokenizer"
        )
    if failures:
        raise ExportValidationError(
            f"{onnx_path} failed validation: {'; '.join(failures)}", figures
        )
    return figures


def onnx_audio_embeddings(
    onnx_path: Path,
    clips: Sequence[np.ndarray],
    *,
    batch_size: int,
    intra_op_threads: int = 1,
    output_name: str = OUTPUT_NAME,
) -> np.ndarray:
    """An audio graph's embeddings of clips run in input order, ``batch_size`` at a time.

    Each chunk is zero-padded to its longest clip (:func:`~ssl_serve.preprocess.pad_audio`,
    the server's padding), so short clips sit beside long ones: equal results at several
    batch sizes prove the dynamic axes and that padding does not reach the pooled output.

    Args:
        onnx_path: An audio bundle's `model.onnx` (inputs ``input_values``, ``attention_mask``).
        clips: N arrays ``(T_i,) float32`` at the model's rate.
        batch_size: Clips per ``session.run``.
        intra_op_threads: onnxruntime threads.
        output_name: The graph output read (``probabilities`` of a classifier bundle).

    Returns:
        ``(N, D) float32`` (``(N, K)`` for ``probabilities``), in input order.
    """
    session = create_session(onnx_path, intra_op_threads, ["CPUExecutionProvider"])
    chunks = [
        session.run([output_name], pad_audio(clips[i : i + batch_size]))[0]
        for i in range(0, len(clips), batch_size)
    ]
    return np.concatenate(chunks, axis=0).astype(np.float32)


def validate_audio_export(
    onnx_path: Path,
    reference: np.ndarray,
    clips: Sequence[np.ndarray],
    *,
    batch_sizes: Sequence[int],
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check an exported audio bundle against PyTorch's embeddings of the same real clips.

    ``reference`` should come from running PyTorch on each clip alone (no padding), the
    clips being the server's preprocessing of real recordings; onnxruntime embeds them in
    padded chunks of each batch size (:func:`onnx_audio_embeddings`).

    Args:
        onnx_path: The exported ``model.onnx``.
        reference: ``(N, D) float32`` PyTorch embeddings of ``clips``, one clip at a time.
        clips: N arrays ``(T_i,) float32`` at the model's rate, of different lengths.
        batch_sizes: Chunk sizes for onnxruntime; include N (every clip padded to the longest)
            and sizes other than the export's.
        tolerance: Largest accepted max_abs_diff, 1 - min_cosine and norm error.

    Returns:
        ``max_abs_diff``, ``min_cosine``, ``max_norm_error`` (worst over the batch sizes),
        ``tolerance``, ``num_inputs``, ``batch_sizes``.

    Raises:
        ExportValidationError: A figure is beyond ``tolerance``.
    """
    worst: dict[str, float] = {"max_abs_diff": 0.0, "min_cosine": 1.0, "max_norm_error": 0.0}
    for size in batch_sizes:
        f = compare_embeddings(reference, onnx_audio_embeddings(onnx_path, clips, batch_size=size))
        worst["max_abs_diff"] = max(worst["max_abs_diff"], f["max_abs_diff"])
        worst["min_cosine"] = min(worst["min_cosine"], f["min_cosine"])
        worst["max_norm_error"] = max(worst["max_norm_error"], f["max_norm_error"])
    figures: dict[str, Any] = {
        **worst,
        "tolerance": tolerance,
        "num_inputs": len(clips),
        "batch_sizes": list(batch_sizes),
    }
    failures = [
        f"{k} = {figures[k]:.3g} > tolerance {tolerance:g}"
        for k in ("max_abs_diff", "max_norm_error")
        if not figures[k] <= tolerance
    ]
    if not figures["min_cosine"] >= 1.0 - tolerance:
        failures.append(f"min_cosine = {figures['min_cosine']:.8f} < 1 - tolerance")
    if failures:
        raise ExportValidationError(
            f"{onnx_path} failed validation: {'; '.join(failures)}", figures
        )
    return figures


def validate_audio_probabilities(
    onnx_path: Path,
    reference: np.ndarray,
    clips: Sequence[np.ndarray],
    *,
    batch_sizes: Sequence[int],
    tolerance: float = 1e-4,
) -> dict[str, Any]:
    """Check an audio classifier bundle's ``probabilities`` against PyTorch on real clips.

    ``reference`` should be the fine-tuned classifier's softmax on each clip alone (no
    padding), with the checkpoint's own head module (batch norm not folded), so the check also
    covers the folding; onnxruntime runs the clips in padded chunks of each batch size
    (:func:`onnx_audio_embeddings`).

    Args:
        onnx_path: The exported ``model.onnx`` (outputs ``embedding``, ``probabilities``).
        reference: ``(N, K) float32`` PyTorch probabilities of ``clips``, one clip at a time.
        clips: N arrays ``(T_i,) float32`` at the model's rate.
        batch_sizes: Chunk sizes for onnxruntime.
        tolerance: Largest accepted max abs difference and row-sum error.

    Returns:
        The figures of :func:`compare_probabilities`.

    Raises:
        ExportValidationError: See :func:`compare_probabilities`.
    """

    def run_at(size: int) -> np.ndarray:
        return onnx_audio_embeddings(
            onnx_path, clips, batch_size=size, output_name=PROBABILITIES_OUTPUT
        )

    return compare_probabilities(onnx_path, reference, run_at, batch_sizes, tolerance)
