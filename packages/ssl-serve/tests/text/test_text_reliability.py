"""Extreme and malformed text requests against real servers: the status, then the server serves.

The real all-MiniLM-L6-v2 server (fixture `text_server`) gets unicode edge cases, an empty
string, a 100,000-character text and messages that are not valid protobuf (invalid UTF-8 in a
``string`` field, truncated bytes); references are sentence-transformers on the same texts. A
second server holds a 768-wide text model (one random-init BERT layer with MiniLM's tokenizer)
for the message-size limits: a 2048 x 768 float32 response (6.3 MB) with the limits raised, and
RESOURCE_EXHAUSTED with a hint below them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from serve_helpers import ServerProcess, start_server, stop_server

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.v1 import embedding_pb2

TEXT_MODEL = "minilm"
WIDE_MODEL = "wide"
EMBED = "/ssl_serve.v1.EmbeddingService/Embed"
UNICODE = [
    "😀🎉👍🏽 👨‍👩‍👧‍👦",  # emoji, skin tone modifier, zero-width-joiner family
    "自然语言处理很有趣。日本語の文章も。한국어 문장",  # CJK: Chinese, Japanese, Korean
    "cafe\u0301 na\u0308ive a\u0300\u0301\u0302\u0303 stacked marks",  # combining marks
    "zero\u200bwidth\u200d joiners\ufeff and BOM",
    "right-to-left: \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "\U0001d54f\U0001d56a\U0001d566 math letters and \x00 a NUL",
]


@pytest.fixture(scope="module")
def client(text_server: ServerProcess) -> Iterator[EmbeddingClient]:
    with EmbeddingClient(text_server.address, timeout_s=120) as c:
        c.wait_until_serving(timeout_s=60)
        yield c


def _sentence_transformers(minilm_dir: Path, texts: list[str]) -> np.ndarray:
    import torch
    from sentence_transformers import SentenceTransformer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = SentenceTransformer(str(minilm_dir), device="cpu")
        model.max_seq_length = 256  # the bundle's max_length (the server's truncation)
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    finally:
        torch.set_num_threads(threads)


def test_unicode_empty_and_huge_texts_embed_like_sentence_transformers(
    client: EmbeddingClient, minilm_dir: Path, sentences: list[str]
) -> None:
    huge = (" ".join(sentences) * 10)[:100_000]
    texts = [*UNICODE, "", huge]
    result = client.embed_texts_detailed(TEXT_MODEL, texts)
    reference = _sentence_transformers(minilm_dir, texts)
    assert result.embeddings.shape == (len(texts), 384)
    assert np.isfinite(result.embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    cosine = (result.embeddings.astype(np.float64) * reference).sum(axis=1)
    assert cosine.min() >= 0.9999, dict(zip(texts, cosine.round(6), strict=True))
    assert result.truncated.tolist() == [False] * (len(texts) - 1) + [True]
    # Each text alone embeds as inside this batch (the 100k-character one included).
    for i in (0, 2, len(texts) - 2, len(texts) - 1):
        alone = client.embed_texts(TEXT_MODEL, [texts[i]])[0]
        assert np.abs(alone - result.embeddings[i]).max() <= 1e-5


def _raw_embed(address: str, data: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(EMBED, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(data, timeout=30)
    return info.value


def test_undecodable_messages_are_invalid_argument(
    client: EmbeddingClient, text_server: ServerProcess, sentences: list[str]
) -> None:
    marker = "MARKER-TEXT"
    good = embedding_pb2.EmbedRequest(
        model_name=TEXT_MODEL, inputs=[embedding_pb2.Input(text=marker)]
    ).SerializeToString()
    # The same message with the text's bytes replaced by invalid UTF-8 (same length).
    bad_utf8 = good.replace(marker.encode(), b"\xff\xfe\xc3\x28" + b"x" * (len(marker) - 4))
    assert len(bad_utf8) == len(good) and bad_utf8 != good
    for data in (bad_utf8, good[:-3], b"\x0a\xff\xff\xff\xff\x0f"):
        error = _raw_embed(text_server.address, data)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
        assert "cannot be parsed as protobuf" in (error.details() or "")
    # Invalid UTF-8 inside a bytes field (an image) is the decoder's INVALID_ARGUMENT.
    request = embedding_pb2.EmbedRequest(
        model_name=TEXT_MODEL, inputs=[embedding_pb2.Input(image=b"\xff\xfe\xc3\x28")]
    )
    with pytest.raises(RemoteError) as info:
        client.embed(request)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.embed_texts(TEXT_MODEL, sentences[:2]).shape == (2, 384)


def test_a_text_over_the_character_limit_is_invalid_argument(
    client: EmbeddingClient, sentences: list[str]
) -> None:
    # The test server keeps --max-text-chars 100000; the 100,000-character text above embeds.
    texts = [sentences[0], "x" * 100_001]
    with pytest.raises(RemoteError) as info:
        client.embed_texts(TEXT_MODEL, texts)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details.startswith(
        "input 1: text is 100001 characters; this server takes at most 100000"
    )
    assert client.embed_texts(TEXT_MODEL, sentences[:2]).shape == (2, 384)


def test_more_inputs_than_a_request_may_hold_is_resource_exhausted(
    client: EmbeddingClient, sentences: list[str]
) -> None:
    # The test server keeps ServerConfig's default of 4,096 inputs per request.
    for n in (4097, 10_000):
        request = embedding_pb2.EmbedRequest(
            model_name=TEXT_MODEL, inputs=[embedding_pb2.Input(text="a")] * n
        )
        with pytest.raises(RemoteError) as info:
            client.embed(request)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"request has {n} inputs; this server takes at most 4096" in info.value.details
    assert client.embed_texts(TEXT_MODEL, sentences[:2]).shape == (2, 384)


@pytest.fixture(scope="module")
def wide_server(
    tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path
) -> Iterator[ServerProcess]:
    """A server (limits 16 MiB) holding a 768-wide text model: one random-init BERT layer."""
    import torch
    from transformers import BertConfig, BertModel

    from ssl_serve.export import export_hf_model

    folder = tmp_path_factory.mktemp("wide-bert")
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=768,
        max_position_embeddings=512,
    )
    BertModel(config).eval().save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_dir / name).exists():
            shutil.copy(minilm_dir / name, folder / name)
    repo = tmp_path_factory.mktemp("wide-repository")
    export_hf_model(folder, repo / WIDE_MODEL / "1", name=WIDE_MODEL, max_length=16)
    log = tmp_path_factory.mktemp("wide-server") / "server.log"
    srv = start_server(repo, log, args=["--max-message-mb", "16"])
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


def test_large_responses_work_when_configured_and_fail_with_a_hint_otherwise(
    wide_server: ServerProcess, sentences: list[str]
) -> None:
    texts = [s[:40] for s in (sentences * 11)[:2048]]
    with EmbeddingClient(wide_server.address, timeout_s=300, max_message_bytes=16 << 20) as big:
        embeddings = big.embed_texts(WIDE_MODEL, texts, batch_size=2048)
        assert embeddings.shape == (2048, 768) and embeddings.dtype == np.float32
        assert embeddings.nbytes == 6_291_456
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
        assert np.abs(embeddings[:64] - big.embed_texts(WIDE_MODEL, texts[:64])).max() <= 1e-5
    with EmbeddingClient(wide_server.address, timeout_s=300, max_message_bytes=4 << 20) as small:
        with pytest.raises(RemoteError) as info:
            small.embed_texts(WIDE_MODEL, texts, batch_size=2048)
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "raise the client's max_message_bytes" in info.value.details
        # The server stays up, and the same client works with smaller requests.
        assert small.embed_texts(WIDE_MODEL, texts, batch_size=512).shape == (2048, 768)
