"""Running a bundle's `model.onnx` with onnxruntime (one InferenceSession per model).

onnxruntime comes from one of two wheels that install the same ``onnxruntime`` module and
overwrite each other's files: ``onnxruntime`` (CPU, the ``ssl-serve[cpu]`` extra) and
``onnxruntime-gpu`` (CUDA and CPU, the ``ssl-serve[gpu]`` extra). :func:`execution_providers`
checks that exactly one is installed and that it offers the device asked for;
:func:`create_session` checks that the session really runs on it (onnxruntime itself falls back
to the CPU silently when the CUDA libraries are missing).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ssl_serve.errors import BundleError, ExecutionProviderError, InvalidInputError

try:
    import onnxruntime as ort
except ImportError as e:  # neither extra installed
    raise ImportError(
        "ssl-serve needs onnxruntime to run models: pip install 'ssl-serve[cpu]' "
        "(or 'ssl-serve[gpu]' for CUDA; never both in one environment)",
        name="onnxruntime",
    ) from e
from ssl_serve.preprocess.text import length_sorted_batches, pad_sequences

# Past about 8 threads a small embedding model's operators stop scaling and the extra threads
# only contend with the gRPC workers that decode images.
MAX_DEFAULT_THREADS = 8


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_intra_op_threads() -> int:
    """onnxruntime intra-op threads when none are given: available CPUs, at most 8."""
    return min(available_cpus(), MAX_DEFAULT_THREADS)


# The onnxruntime execution providers of each `ssl-serve serve --device`, in order of
# preference (CPU last: operators CUDA lacks run there, as onnxruntime places them itself).
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}
ONNXRUNTIME_WHEELS = ("onnxruntime", "onnxruntime-gpu")
_FIX_INSTALL = (
    "pip uninstall -y onnxruntime onnxruntime-gpu, then pip install 'ssl-serve[cpu]' "
    "(or 'ssl-serve[gpu]' for CUDA)"
)


def installed_onnxruntime_wheels() -> list[str]:
    """Which of the wheels ``onnxruntime`` and ``onnxruntime-gpu`` are installed."""
    found = []
    for name in ONNXRUNTIME_WHEELS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def execution_providers(device: str = "cpu") -> tuple[str, ...]:
    """The onnxruntime providers for ``device``, checked against the installed onnxruntime.

    Args:
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        The providers in order of preference, e.g. ``("CUDAExecutionProvider",
        "CPUExecutionProvider")``.

    Raises:
        ValueError: ``device`` is not one of :data:`DEVICE_PROVIDERS`.
        ExecutionProviderError: Both onnxruntime wheels are installed (they break each other),
            or this onnxruntime build has no provider for ``device``.
    """
    if device not in DEVICE_PROVIDERS:
        raise ValueError(f"device must be one of {sorted(DEVICE_PROVIDERS)}, got {device!r}")
    wheels = installed_onnxruntime_wheels()
    if len(wheels) > 1:
        raise ExecutionProviderError(
            "both onnxruntime and onnxruntime-gpu are installed; they install the same module "
            f"and overwrite each other's files: {_FIX_INSTALL}"
        )
    providers = DEVICE_PROVIDERS[device]
    available = ort.get_available_providers()
    if providers[0] not in available:
        raise ExecutionProviderError(
            f"--device {device} needs {providers[0]}, which this onnxruntime "
            f"({', '.join(wheels) or 'unknown wheel'} {ort.__version__}) lacks; it offers "
            f"{', '.join(available)}. For CUDA: {_FIX_INSTALL.replace('[cpu]', '[gpu]', 1)}"
        )
    return providers


def create_session(
    model_path: Path, intra_op_threads: int, providers: Sequence[str]
) -> ort.InferenceSession:
    """An onnxruntime session for serving: ``intra_op_threads`` threads, sequential execution.

    Args:
        model_path: The bundle's `model.onnx`.
        intra_op_threads: Threads inside one operator.
        providers: Execution providers in order of preference (see :func:`execution_providers`);
            the session must run on the first one.

    Raises:
        BundleError: The file is missing or onnxruntime cannot load it.
        ExecutionProviderError: onnxruntime put the session on another provider than the first
            of ``providers`` (e.g. CUDA libraries missing: it would fall back to CPU silently).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Requests run one model call at a time (see server.models); inter-op parallelism
    # would only add threads that compete with the intra-op pool.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not model_path.is_file():
        raise BundleError(model_path, "model file does not exist")
    try:
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=list(providers)
        )
    except Exception as e:  # onnxruntime raises its own untyped errors for bad files
        raise BundleError(model_path, f"onnxruntime cannot load it: {e}") from e
    used = session.get_providers()
    if not used or used[0] != providers[0]:
        raise ExecutionProviderError(
            f"{model_path}: onnxruntime runs the session on {', '.join(used) or 'nothing'}, not "
            f"{providers[0]} as asked (for CUDA: are the CUDA 12 and cuDNN 9 libraries on the "
            "library path?); ssl-serve does not fall back silently: fix the install, or serve "
            "with --device cpu"
        )
    return session


class OnnxEmbedder:
    """An onnxruntime session that maps a preprocessed batch to embeddings.

    Args:
        model_path: The bundle's `model.onnx`.
        input_name: Graph input fed with the batch, e.g. "pixel_values".
        output_name: Graph output returned, e.g. "embedding".
        intra_op_threads: Threads onnxruntime uses inside one operator; None picks
            :func:`default_intra_op_threads`.
        max_batch_size: Largest batch given to one ``session.run``; larger batches are split
            into chunks of at most this many inputs (bounds peak memory).
        providers: onnxruntime execution providers in order of preference; default CPU only.

    Raises:
        BundleError: The file is missing or not a valid ONNX model, or it lacks the named
            input or output.
        ValueError: ``intra_op_threads`` or ``max_batch_size`` is < 1.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        input_name: str = "pixel_values",
        output_name: str = "embedding",
        intra_op_threads: int | None = None,
        max_batch_size: int = 256,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        threads = default_intra_op_threads() if intra_op_threads is None else intra_op_threads
        if threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {threads}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model_path = Path(model_path)
        self.input_name = input_name
        self.output_name = output_name
        self.intra_op_threads = threads
        self.max_batch_size = max_batch_size
        self.session = create_session(self.model_path, threads, providers)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if input_name not in inputs:
            raise BundleError(
                self.model_path, f"graph has no input {input_name!r}; inputs: {sorted(inputs)}"
            )
        if output_name not in outputs:
            raise BundleError(
                self.model_path,
                f"graph has no output {output_name!r}; outputs: {sorted(outputs)}",
            )
        self.input_shape: tuple[int | str | None, ...] = tuple(inputs[input_name].shape)
        self.output_names: tuple[str, ...] = tuple(o.name for o in self.session.get_outputs())

    @property
    def providers(self) -> list[str]:
        """Providers the session really uses (onnxruntime falls back to CPU silently)."""
        return list(self.session.get_providers())

    def embed(self, batch: np.ndarray, output_name: str | None = None) -> np.ndarray:
        """Embed a preprocessed batch, in chunks of at most ``max_batch_size``.

        Args:
            batch: ``(N, C, H, W) float32`` model inputs (N >= 1), laid out and normalised as
                the bundle's preprocessing says.
            output_name: Graph output to return instead of ``self.output_name``, e.g. a
                classifier bundle's ``"probabilities"``.

        Returns:
            ``(N, D) float32`` embeddings (or the named output's ``(N, K)`` rows), in input
            order.

        Raises:
            InvalidInputError: ``batch`` is empty, not float32, or its non-batch dimensions
                differ from the model's input.
            BundleError: The graph has no output ``output_name``.
        """
        name = self.output_name if output_name is None else output_name
        return self.run_outputs(batch, [name])[0]

    def run_outputs(self, batch: np.ndarray, output_names: Sequence[str]) -> list[np.ndarray]:
        """Several graph outputs of one pass over a preprocessed batch (chunked as in embed).

        Args:
            batch: ``(N, C, H, W) float32`` model inputs (N >= 1).
            output_names: Graph outputs to return, e.g. ``["embedding", "probabilities"]``.

        Returns:
            One ``(N, ...) float32`` array per name, in that order, rows in input order.

        Raises:
            InvalidInputError: ``batch`` is empty, not float32, or of the wrong shape.
            BundleError: The graph lacks one of ``output_names``.
        """
        self._check(batch)
        names = list(output_names)
        for name in names:
            if name not in self.output_names:
                raise BundleError(
                    self.model_path,
                    f"graph has no output {name!r}; outputs: {list(self.output_names)}",
                )
        chunks = [
            self.session.run(
                names,
                {self.input_name: np.ascontiguousarray(batch[i : i + self.max_batch_size])},
            )
            for i in range(0, len(batch), self.max_batch_size)
        ]
        return [
            np.asarray(
                chunks[0][k] if len(chunks) == 1 else np.concatenate([c[k] for c in chunks]),
                dtype=np.float32,
            )
            for k in range(len(names))
        ]

    def warm_up(self) -> np.ndarray:
        """Run one zero input through the model (allocates buffers, checks the graph runs).

        Returns:
            ``(1, D) float32``, the embedding of the zero input.

        Raises:
            BundleError: The model's input has no fixed non-batch shape, or the run fails.
        """
        dims = self.input_shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise BundleError(
                self.model_path, f"input {self.input_name!r} has no fixed shape: {dims}"
            )
        try:
            return self.embed(np.zeros((1, *dims), dtype=np.float32))  # type: ignore[arg-type]
        except Exception as e:
            raise BundleError(self.model_path, f"warm-up inference failed: {e}") from e

    def _check(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
            dtype = getattr(batch, "dtype", type(batch).__name__)
            raise InvalidInputError(f"batch must be a float32 numpy array, got {dtype}")
        expected = self.input_shape[1:]
        fixed = all(isinstance(d, int) for d in expected)
        if batch.ndim != len(self.input_shape) or (fixed and batch.shape[1:] != expected):
            raise InvalidInputError(
                f"batch must be (N, {', '.join(map(str, expected))}), got {batch.shape}"
            )
        if len(batch) == 0:
            raise InvalidInputError("batch is empty (N = 0)")


class OnnxTextEmbedder:
    """An onnxruntime session that maps token sequences to embeddings (a text bundle's graph).

    Sequences are sorted by length and run in padded sub-batches (see
    :func:`~ssl_serve.preprocess.text.length_sorted_batches`), so short texts do not pay for a
    long neighbour; results come back in input order. The graph pools over real tokens by the
    attention mask, so an embedding does not depend on the padding around it.

    Args:
        model_path: The bundle's `model.onnx`.
        input_names: Graph inputs: ``input_ids``, ``attention_mask`` and optionally
            ``token_type_ids``.
        output_name: Graph output returned, e.g. "embedding".
        pad_id: Token id written at padded positions.
        intra_op_threads: onnxruntime intra-op threads; None picks
            :func:`default_intra_op_threads`.
        max_batch_size: Most sequences per ``session.run``.
        max_batch_tokens: Most padded tokens (sequences x longest length) per ``session.run``;
            bounds the attention's memory for long texts.
        providers: onnxruntime execution providers in order of preference; default CPU only.

    Raises:
        BundleError: The model cannot be loaded, or its inputs/outputs differ from the names.
        ValueError: A limit is < 1.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        input_names: Sequence[str] = ("input_ids", "attention_mask"),
        output_name: str = "embedding",
        pad_id: int = 0,
        intra_op_threads: int | None = None,
        max_batch_size: int = 256,
        max_batch_tokens: int = 8192,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        threads = default_intra_op_threads() if intra_op_threads is None else intra_op_threads
        if min(threads, max_batch_size, max_batch_tokens) < 1:
            raise ValueError(
                f"intra_op_threads ({threads}), max_batch_size ({max_batch_size}) and "
                f"max_batch_tokens ({max_batch_tokens}) must be >= 1"
            )
        self.model_path = Path(model_path)
        self.output_name = output_name
        self.pad_id = pad_id
        self.intra_op_threads = threads
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.session = create_session(self.model_path, threads, providers)
        graph_inputs = sorted(i.name for i in self.session.get_inputs())
        if graph_inputs != sorted(input_names):
            raise BundleError(
                self.model_path,
                f"graph inputs are {graph_inputs}; bundle.json lists {sorted(input_names)}",
            )
        outputs = {o.name for o in self.session.get_outputs()}
        if output_name not in outputs:
            raise BundleError(
                self.model_path,
                f"graph has no output {output_name!r}; outputs: {sorted(outputs)}",
            )
        self.input_names = tuple(input_names)
        self.uses_token_type_ids = "token_type_ids" in self.input_names

    @property
    def providers(self) -> list[str]:
        """Providers the session really uses (onnxruntime falls back to CPU silently)."""
        return list(self.session.get_providers())

    def embed_padded(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """One ``session.run`` on an already padded batch.

        Args:
            input_ids: ``(B, L) int64`` token ids.
            attention_mask: ``(B, L) int64``, 1 for real tokens, 0 for padding.
            token_type_ids: ``(B, L) int64``; zeros when None and the graph takes them.

        Returns:
            ``(B, D) float32`` embeddings.
        """
        (out,) = self.run_padded(input_ids, attention_mask, token_type_ids, [self.output_name])
        return out

    def run_padded(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        output_names: Sequence[str],
    ) -> list[np.ndarray]:
        """:meth:`embed_padded` for any graph outputs, e.g. a classifier's ``probabilities``.

        Returns:
            One ``(B, ...) float32`` array per name of ``output_names``.
        """
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            feeds["token_type_ids"] = (
                np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            )
        outs = self.session.run(list(output_names), feeds)
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def embed(
        self,
        sequences: Sequence[np.ndarray],
        type_ids: Sequence[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Embed token sequences in length-sorted padded sub-batches.

        Args:
            sequences: N >= 1 arrays ``(L_i,) int64`` of token ids, special tokens included.
            type_ids: N arrays ``(L_i,) int64`` of token type ids; zeros when None.

        Returns:
            ``(N, D) float32`` embeddings, in input order.

        Raises:
            InvalidInputError: ``sequences`` is empty, holds an empty sequence, or
                ``type_ids`` does not match it.
        """
        if len(sequences) == 0:
            raise InvalidInputError("no sequences to embed (N = 0)")
        lengths = [len(s) for s in sequences]
        if min(lengths) == 0:
            raise InvalidInputError(f"sequence {lengths.index(0)} is empty (0 tokens)")
        if type_ids is not None and [len(t) for t in type_ids] != lengths:
            raise InvalidInputError("type_ids must have one array per sequence, of equal length")
        out: np.ndarray | None = None
        for idx in length_sorted_batches(
            lengths, max_batch_size=self.max_batch_size, max_batch_tokens=self.max_batch_tokens
        ):
            ids, mask = pad_sequences([sequences[i] for i in idx], self.pad_id)
            types = None
            if type_ids is not None:
                types, _ = pad_sequences([type_ids[i] for i in idx], 0)
            emb = self.embed_padded(ids, mask, types)
            if out is None:
                out = np.empty((len(sequences), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        assert out is not None
        return out

    def warm_up(self) -> np.ndarray:
        """Run two short padded sequences through the model (allocates, checks the graph runs).

        Returns:
            ``(2, D) float32``.

        Raises:
            BundleError: The run fails.
        """
        try:
            return self.embed(
                [np.full(3, self.pad_id, np.int64), np.full(2, self.pad_id, np.int64)]
            )
        except Exception as e:
            raise BundleError(self.model_path, f"warm-up inference failed: {e}") from e
