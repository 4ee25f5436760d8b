"""A bundle as a Triton Inference Server model-repository entry (`config.pbtxt` + `model.onnx`).

For users who outgrow one ssl-serve process: the same `model.onnx` (copied byte for byte) under
``<triton repository>/<name>/<version>/`` and a ``<name>/config.pbtxt`` for Triton's onnxruntime
backend, with dynamic batching. Needs neither torch nor Triton. The version folder also gets the
bundle's `bundle.json` (and `tokenizer.json` for text), which Triton ignores and clients need:
Triton serves raw tensors (KServe v2), so preprocessing and tokenisation stay on the client.

Reference: Triton model configuration,
https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_configuration.md
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ssl_serve.bundle import (
    BUNDLE_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    Bundle,
    TensorSpec,
    read_bundle,
)
from ssl_serve.errors import BundleError, InvalidInputError
from ssl_serve.repository import ModelRepository

CONFIG_FILE = "config.pbtxt"
PLATFORM = "onnxruntime_onnx"
# bundle.json dtype -> Triton's model_config.proto DataType.
TRITON_DATA_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}


@dataclass(frozen=True)
class TritonEntry:
    """One exported Triton model version.

    Attributes:
        name: Triton model name (the folder under the repository).
        version: Integer version folder name.
        config: The written ``<repository>/<name>/config.pbtxt``.
        model: The written ``<repository>/<name>/<version>/model.onnx``.
    """

    name: str
    version: str
    config: Path
    model: Path


def triton_config(
    bundle: Bundle, *, name: str, max_batch_size: int, max_queue_delay_us: int
) -> str:
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``) of a bundle.

    ``max_batch_size > 0`` makes Triton add the batch axis itself, so ``dims`` leave it out;
    the bundle's other named (dynamic) axes, e.g. a text model's sequence, become ``-1``.

    Args:
        bundle: The bundle (its inputs and output, with dtypes and shapes).
        name: Triton model name; must equal the model folder name.
        max_batch_size: Largest batch Triton's dynamic batcher forms (>= 1).
        max_queue_delay_us: Longest time a request waits for others to batch with, in
            microseconds (>= 0).

    Returns:
        The config text, ending in a newline.

    Raises:
        InvalidInputError: A limit is out of range.
        BundleError: A tensor has a dtype Triton's config cannot name here, or a fixed batch axis.
    """
    if max_batch_size < 1 or max_queue_delay_us < 0:
        raise InvalidInputError(
            f"max_batch_size must be >= 1 (got {max_batch_size}) and max_queue_delay_us >= 0 "
            f"(got {max_queue_delay_us})"
        )

    def tensors(kind: str, specs: tuple[TensorSpec, ...]) -> list[str]:
        lines = [f"{kind} ["]
        for i, spec in enumerate(specs):
            if spec.dtype not in TRITON_DATA_TYPES or isinstance(spec.shape[0], int):
                raise BundleError(
                    BUNDLE_FILE,
                    f"{kind} {spec.name!r} is {spec.dtype} {list(spec.shape)}; a Triton export "
                    f"needs a dtype in {sorted(TRITON_DATA_TYPES)} and a named batch axis first",
                )
            dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.shape[1:])
            lines += [
                "  {",
                f'    name: "{spec.name}"',
                f"    data_type: {TRITON_DATA_TYPES[spec.dtype]}",
                f"    dims: [ {dims} ]",
                "  }" + ("," if i < len(specs) - 1 else ""),
            ]
        return [*lines, "]"]

    lines = [
        f'name: "{name}"',
        f'platform: "{PLATFORM}"',
        f"max_batch_size: {max_batch_size}",
        *tensors("input", bundle.inputs),
        *tensors("output", bundle.outputs),
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def export_triton(
    source: str | Path,
    output: str | Path,
    *,
    name: str | None = None,
    version: str | None = None,
    max_batch_size: int = 64,
    max_queue_delay_us: int = 1000,
    overwrite: bool = False,
) -> list[TritonEntry]:
    """Write Triton model-repository entries for a bundle, or for every bundle of a repository.

    Args:
        source: A bundle folder (holds `bundle.json`) or an ssl-serve model repository
            (``<name>/<version>/`` bundle folders: every version is exported).
        output: The Triton model repository folder (created when missing).
        name: Triton model name for a single bundle; None keeps the bundle's name
            (for a repository, the folder names are always kept).
        version: Integer version for a single bundle; None keeps the bundle's version.
        max_batch_size: ``max_batch_size`` of the config (largest dynamic batch, >= 1).
        max_queue_delay_us: ``dynamic_batching.max_queue_delay_microseconds`` (>= 0).
        overwrite: Replace an existing ``<name>/<version>/`` folder.

    Returns:
        One entry per exported version.

    Raises:
        BundleError: ``source`` is neither a bundle nor a repository with bundles, or a bundle
            is invalid.
        InvalidInputError: A version is not a non-negative integer (Triton's version folders
            are numbers), or ``name``/``version`` is given for a repository.
        FileExistsError: A version folder exists and ``overwrite`` is False.
    """
    source, output = Path(source), Path(output)
    if (source / BUNDLE_FILE).is_file():
        bundle = read_bundle(source)
        pairs = [(source, bundle, name or bundle.name, version or bundle.version)]
    else:
        if name is not None or version is not None:
            raise InvalidInputError(
                f"{source} is a repository: name and version come from its folders; pass a "
                "bundle folder to rename one model"
            )
        repository = ModelRepository(source)
        pairs = [(e.path, e.bundle, e.name, e.version) for e in repository.entries()]
        if not pairs:
            raise BundleError(
                source, f"holds no {BUNDLE_FILE}, nor <name>/<version>/{BUNDLE_FILE} folders"
            )
    for _, _, model_name, model_version in pairs:
        if not model_version.isdigit():
            raise InvalidInputError(
                f"version {model_version!r} of model {model_name!r} is not a non-negative "
                "integer; Triton's version folders are numbers (pass version='1' / --version 1)"
            )
        if (output / model_name / model_version).exists() and not overwrite:
            raise FileExistsError(
                f"{output / model_name / model_version} exists; pass overwrite=True "
                "(--overwrite) to replace it"
            )
    # Every config is made (and checked) before anything is written. Triton has one config per
    # model, so all versions of a name must agree on it.
    configs: dict[str, str] = {}
    for _, bundle, model_name, _ in pairs:
        config = triton_config(
            bundle,
            name=model_name,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
        )
        if configs.setdefault(model_name, config) != config:
            raise BundleError(
                source / model_name,
                "its versions have different inputs or outputs; Triton keeps one "
                "config.pbtxt per model: export them under different names",
            )
    return [
        _write_entry(folder, output, model_name, model_version, configs[model_name])
        for folder, _, model_name, model_version in pairs
    ]


def _write_entry(folder: Path, output: Path, name: str, version: str, config: str) -> TritonEntry:
    model_dir = output / name
    model_dir.mkdir(parents=True, exist_ok=True)
    # The version folder is filled under a hidden name, then renamed: Triton polling the
    # repository never sees a half-copied model.onnx.
    tmp = model_dir / f".{version}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = [MODEL_FILE, BUNDLE_FILE]
        if (folder / TOKENIZER_FILE).is_file():
            files.append(TOKENIZER_FILE)
        for file in files:
            shutil.copyfile(folder / file, tmp / file)
        target = model_dir / version
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    config_path = model_dir / CONFIG_FILE
    tmp_config = model_dir / f".{CONFIG_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_config.write_text(config, encoding="utf-8")
    tmp_config.replace(config_path)
    return TritonEntry(name, version, config_path, target / MODEL_FILE)
