"""Optional model variants at export: onnxruntime graph optimisation and dynamic int8 weights.

Each variant is validated against PyTorch on the same real inputs as the fp32 export, and its
figures go into bundle.json beside the fp32 ones (``validation.optimized``, ``validation.int8``);
the bundle's `model.onnx` becomes the last variant made (int8, then optimised), and
``validation.model`` says which.

Dynamic int8 (onnxruntime's ``quantize_dynamic``: int8 weights, activations quantised per call)
can lose too much on some layers: in all-MiniLM-L6-v2 the feed-forward projections read GELU
activations whose largest values are 35-104x their RMS, and quantising only the output
projections (per-tensor) took the min cosine to 0.94. The export therefore ranks the weight
MatMuls by that outlier ratio on the validation inputs; when quantising all of them misses the
required min cosine against PyTorch (0.99 by default), it keeps those with a ratio above 32 in
float, then twice as many, and so on, until the min cosine is reached; it fails rather than
write an int8 model below it.

Reference: Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", arXiv:1712.05877; Dettmers et al., "LLM.int8(): 8-bit Matrix
Multiplication for Transformers at Scale", arXiv:2208.07339 (activation outliers).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ssl_serve.errors import ExportValidationError, InvalidInputError

QUANTIZE_MODES = ("int8",)
# max |x| / RMS(x) of a MatMul's activation above which int8 leaves a value of RMS size about
# 255 / (2 * 32) ~ 4 quantisation levels: such MatMuls are the first kept in float.
OUTLIER_RATIO = 32.0
INT8_MIN_COSINE = 0.99
OPTIMIZATION_LEVEL = "extended"
_FIGURES = ("max_abs_diff", "min_cosine", "max_norm_error")

# A function that validates an ONNX file against PyTorch and returns its validation figures
# (at least max_abs_diff, min_cosine, max_norm_error), without raising on the tolerance.
Validator = Callable[[Path], dict[str, Any]]


def optimize_onnx(source: Path, target: Path) -> None:
    """Write onnxruntime's offline graph optimisation of ``source`` to ``target``.

    Uses the "extended" level (constant folding, redundant node elimination and operator
    fusions, e.g. Gelu, LayerNormalization, MatMul+Add) for the CPU execution provider; the
    layout-changing "all" level is left to session creation because its result is specific to
    the machine.

    Raises:
        ExportValidationError: onnxruntime cannot optimise the model.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises untyped errors
        raise ExportValidationError(f"onnxruntime cannot optimise {source}: {e}") from e


def matmul_outlier_ranking(
    model_path: Path, feeds: Mapping[str, np.ndarray]
) -> list[tuple[str, float]]:
    """Weight MatMul nodes, ranked by how hard their activation input is to quantise.

    Runs the model once on ``feeds`` with every MatMul's activation input exposed, and ranks
    the MatMuls whose second input is a weight (an initializer) by max |x| / RMS(x) of that
    activation, largest first (a per-tensor int8 scale set by an outlier leaves few levels for
    the rest).

    Args:
        model_path: An fp32 ONNX model.
        feeds: Real model inputs by name, e.g. ``pixel_values (N, C, H, W) float32`` or padded
            ``input_ids``/``attention_mask`` ``(N, L) int64``.

    Returns:
        ``(node name, max |x| / RMS(x))`` pairs, worst first.
    """
    model = onnx.load(str(model_path))
    weights = {i.name for i in model.graph.initializer}
    nodes = [
        (n.name, n.input[0])
        for n in model.graph.node
        if n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in weights
    ]
    if not nodes:
        return []
    exposed = {o.name for o in model.graph.output}
    for _, tensor in nodes:
        if tensor not in exposed:
            model.graph.output.append(onnx.ValueInfoProto(name=tensor))
            exposed.add(tensor)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(dict.fromkeys(t for _, t in nodes))
    values = dict(zip(names, session.run(names, dict(feeds)), strict=True))
    ratios = []
    for node, tensor in nodes:
        x = np.abs(values[tensor].astype(np.float64))
        ratios.append((float(x.max() / max(np.sqrt((x**2).mean()), 1e-30)), node))
    return [(node, ratio) for ratio, node in sorted(ratios, key=lambda r: -r[0])]


def quantize_int8(
    source: Path,
    target: Path,
    *,
    feeds: Mapping[str, np.ndarray],
    validate: Validator,
    min_cosine: float = INT8_MIN_COSINE,
    op_types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Dynamic int8 quantisation of ``source``'s weights, validated, written to ``target``.

    ``quant_pre_process`` (shape inference, ``skip_symbolic_shape=True``) then
    ``quantize_dynamic`` (QInt8 weights, per channel). When the min cosine against PyTorch is
    below ``min_cosine``, the MatMuls of :func:`matmul_outlier_ranking` are kept in float,
    worst first: those with a ratio above :data:`OUTLIER_RATIO` (at least one), then twice as
    many, and so on, until it is reached.

    Args:
        source: The fp32 (or optimised) ONNX model.
        target: Where the int8 model is written.
        feeds: Real model inputs for the outlier ranking.
        validate: Validates a model file against PyTorch (see :data:`Validator`).
        min_cosine: Smallest accepted cosine similarity between int8 and PyTorch embeddings.
        op_types: Operator types to quantise, e.g. ``("MatMul",)``; None quantises every
            type ``quantize_dynamic`` supports (convolutions included).

    Returns:
        The int8 figures: ``max_abs_diff``, ``min_cosine``, ``max_norm_error``,
        ``model_bytes``, ``weight_type``, ``per_channel``, ``min_cosine_required``,
        ``float_matmuls`` (name -> outlier ratio of the MatMuls kept in float),
        ``quantized_matmuls`` (weight MatMuls in int8; convolutions are quantised too unless
        ``op_types`` leaves them out), and ``op_types`` when given.

    Raises:
        ExportValidationError: Even with every weight MatMul in float, the min cosine stays
            below ``min_cosine`` (the figures of the last try are attached).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="ssl-serve-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        ranked = matmul_outlier_ranking(prepared, feeds)
        ranking = [name for name, _ in ranked]
        ratios = dict(ranked)
        outliers = sum(r > OUTLIER_RATIO for r in ratios.values())
        kept = 0
        while True:
            quantize_dynamic(
                str(prepared),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=ranking[:kept],
                op_types_to_quantize=list(op_types) if op_types is not None else None,
                # Shape inference cannot type the outputs of onnxruntime's fused operators
                # (an optimised model's); they are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            measured = validate(target)
            figures: dict[str, Any] = {k: measured[k] for k in _FIGURES}
            figures.update(
                model_bytes=target.stat().st_size,
                weight_type="QInt8",
                per_channel=True,
                min_cosine_required=min_cosine,
                float_matmuls={name: round(ratios[name], 1) for name in ranking[:kept]},
                quantized_matmuls=len(ranking) - kept,
            )
            if op_types is not None:
                figures["op_types"] = list(op_types)
            if figures["min_cosine"] >= min_cosine:
                return figures
            if kept >= len(ranking):
                raise ExportValidationError(
                    f"int8 model: min_cosine = {figures['min_cosine']:.6f} < "
                    f"{min_cosine} even with all {len(ranking)} weight MatMuls in float; "
                    "export without quantize",
                    figures,
                )
            # First keep every MatMul past the outlier ratio in float, then double.
            kept = min(len(ranking), max(1, outliers) if kept == 0 else 2 * kept)


def make_variants(
    model_path: Path,
    *,
    optimize: bool,
    quantize: str | None,
    feeds: Mapping[str, np.ndarray],
    validate: Validator,
    tolerance: float,
    int8_min_cosine: float = INT8_MIN_COSINE,
    int8_op_types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Replace a validated fp32 ``model.onnx`` by its requested variants; return their figures.

    Args:
        model_path: The exported, validated fp32 `model.onnx`; replaced in place by the
            int8 and/or optimised model (with both, the int8 model is optimised).
        optimize: Apply :func:`optimize_onnx`; an fp32 model must stay within ``tolerance``
            of PyTorch, an int8 one above ``int8_min_cosine``.
        quantize: None, or "int8" (:func:`quantize_int8`).
        feeds: Real model inputs (for the int8 outlier ranking).
        validate: Validates a model file against PyTorch (see :data:`Validator`).
        tolerance: The export's tolerance (max abs diff, 1 - min cosine) for the optimised model.
        int8_min_cosine: Smallest accepted int8 cosine similarity with PyTorch.
        int8_op_types: Operator types int8 quantises (see :func:`quantize_int8`); None: all.

    Returns:
        Keys to merge into bundle.json's ``validation``: ``model`` ("fp32", "optimized", "int8"
        or "int8+optimized", what `model.onnx` holds), ``fp32_model_bytes``, and
        ``optimized`` / ``int8`` figure dicts for the variants made.

    Raises:
        InvalidInputError: ``quantize`` is not None or "int8".
        ExportValidationError: A variant fails its check.
    """
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise InvalidInputError(f"quantize is {quantize!r}; supported: {list(QUANTIZE_MODES)}")
    result: dict[str, Any] = {"model": "fp32", "fp32_model_bytes": model_path.stat().st_size}
    current = model_path
    stages: list[str] = []
    if quantize == "int8":
        # From the fp32 graph: the quantiser skips onnxruntime's fused operators (an optimised
        # CNN's FusedConv would stay float), and quant_pre_process optimises on its own.
        quantized = model_path.with_name("model.int8.onnx")
        result["int8"] = quantize_int8(
            current,
            quantized,
            feeds=feeds,
            validate=validate,
            min_cosine=int8_min_cosine,
            op_types=int8_op_types,
        )
        current = quantized
        stages.append("int8")
    if optimize:
        optimized = model_path.with_name("model.optimized.onnx")
        optimize_onnx(current, optimized)
        measured = validate(optimized)
        figures = {k: measured[k] for k in _FIGURES}
        figures.update(model_bytes=optimized.stat().st_size, level=OPTIMIZATION_LEVEL)
        result["optimized"] = figures
        # An optimised fp32 model must stay within the export's tolerance; an optimised int8
        # model within the int8 bound.
        ok = (
            figures["min_cosine"] >= int8_min_cosine
            if stages
            else figures["max_abs_diff"] <= tolerance and figures["min_cosine"] >= 1 - tolerance
        )
        if current != model_path:
            current.unlink()
        if not ok:
            optimized.unlink()
            raise ExportValidationError(
                f"optimised {'+'.join([*stages, 'optimized'])} model: max_abs_diff = "
                f"{figures['max_abs_diff']:.3g}, min_cosine = {figures['min_cosine']:.8f} "
                f"(tolerance {tolerance:g}, int8 min cosine {int8_min_cosine})",
                figures,
            )
        current = optimized
        stages.append("optimized")
    if current != model_path:
        os.replace(current, model_path)
        result["model"] = "+".join(stages)
    return result
