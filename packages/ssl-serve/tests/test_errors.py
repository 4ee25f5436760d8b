"""The one table from errors to gRPC status codes, and messages that name the input."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from serve_helpers import MODEL_NAME

from ssl_serve.errors import (
    BundleError,
    ExportValidationError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    RemoteError,
    RequestTooLargeError,
    UnsupportedModalityError,
    grpc_status_code,
)
from ssl_serve.repository import ModelRepository
from ssl_serve.server.models import ModelRegistry


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInputError("bad", index=3), grpc.StatusCode.INVALID_ARGUMENT),
        (UnsupportedModalityError("text", index=0), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFoundError("m", "2", ["1"]), grpc.StatusCode.NOT_FOUND),
        (RequestTooLargeError("too many"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ModelNotReadyError("loading"), grpc.StatusCode.UNAVAILABLE),
        (BundleError("x/bundle.json", "bad"), grpc.StatusCode.INTERNAL),
        (ExportValidationError("off"), grpc.StatusCode.INTERNAL),
        (RemoteError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (ValueError("not ours"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_codes(error: Exception, code: grpc.StatusCode) -> None:
    assert grpc_status_code(error) == code


def test_messages_name_the_offending_value() -> None:
    assert str(InvalidInputError("cannot decode image", index=3)) == (
        "input 3: cannot decode image"
    )
    assert str(ModelNotFoundError("m", "2", ["1", "3"])) == (
        "model 'm' version '2' not found; available: 1, 3"
    )
    assert str(BundleError(Path("a/bundle.json"), "key 'x' bad")) == "a/bundle.json: key 'x' bad"


def test_a_model_that_is_not_loaded_is_unavailable(repository: Path) -> None:
    registry = ModelRegistry(ModelRepository(repository), intra_op_threads=1)
    model = registry.get(MODEL_NAME)
    assert not model.ready
    with pytest.raises(ModelNotReadyError, match="still loading"):
        model.run(np.zeros((1, 1, 28, 28), np.float32))
    registry.load_all()
    assert model.ready and model.run(np.zeros((2, 1, 28, 28), np.float32)).embeddings.shape == (
        2,
        128,
    )
