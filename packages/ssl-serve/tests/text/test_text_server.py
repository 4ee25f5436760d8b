"""The real all-MiniLM-L6-v2 served over gRPC (torch blocked in the server) against references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from serve_helpers import NO_TORCH, ServerProcess, png_bytes

from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import RemoteError
from ssl_serve.v1 import embedding_pb2

TEXT_MODEL = "minilm"
MAX_LENGTH = 256


@pytest.fixture(scope="module")
def client(text_server: ServerProcess) -> EmbeddingClient:
    with EmbeddingClient(text_server.address, timeout_s=60) as c:
        c.wait_until_serving(timeout_s=60)
        yield c


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)


def _long_text(sentences: list[str]) -> str:
    return " ".join(sentences[:40])  # several hundred tokens, far above 256


def test_served_embeddings_match_sentence_transformers(
    client: EmbeddingClient, minilm_dir: Path
) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from ssl_data.datasets.wordnet import load_wordnet_glosses

    # The check: 1,000 real sentences (WordNet glosses of every part of speech, spread
    # over the files), cosine >= 0.9999 against sentence-transformers' own output.
    glosses = load_wordnet_glosses(parts=("noun", "verb", "adj", "adv")).texts
    sentences = list(glosses[:: len(glosses) // 1000][:1000])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the server runs on one thread too; 2 contend on this machine
    try:
        reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(
            sentences, normalize_embeddings=True, batch_size=32, convert_to_numpy=True
        )
    finally:
        torch.set_num_threads(threads)
    served = client.embed_texts(TEXT_MODEL, sentences, batch_size=64)
    assert len(set(sentences)) == 1000
    assert served.shape == reference.shape == (1000, 384) and served.dtype == np.float32
    cosine = (served.astype(np.float64) * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999, cosine.min()
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_truncation_flag_and_token_usage(
    client: EmbeddingClient, sentences: list[str], hf_tokenizer
) -> None:
    # "dog" is one token: 254 of them plus [CLS] and [SEP] fill max_length exactly.
    exact = " ".join(["dog"] * (MAX_LENGTH - 2))
    over = exact + " dog"
    texts = [sentences[0], _long_text(sentences), exact, over, ""]
    result = client.embed_texts_detailed(TEXT_MODEL, texts)
    assert result.truncated.tolist() == [False, True, False, True, False]
    full = [len(ids) for ids in hf_tokenizer(texts)["input_ids"]]  # untruncated lengths
    assert full[2] == MAX_LENGTH and full[3] == MAX_LENGTH + 1 and full[1] > MAX_LENGTH
    assert full[4] == 2  # [CLS] [SEP]
    assert result.tokens == sum(min(n, MAX_LENGTH) for n in full)
    # Truncation keeps the first 255 tokens: `over` embeds exactly as `exact`.
    assert np.abs(result.embeddings[3] - result.embeddings[2]).max() <= 1e-6


def test_response_metadata(client: EmbeddingClient, sentences: list[str]) -> None:
    request = embedding_pb2.EmbedRequest(
        model_name=TEXT_MODEL,
        inputs=[embedding_pb2.Input(text=t) for t in sentences[:3]],
        request_id="t-1",
    )
    emb, response = client.embed(request)
    assert emb.shape == (3, 384) and list(response.truncated) == [False] * 3
    assert response.usage.inputs == 3 and response.usage.tokens > 3 * 2
    t = response.timing
    assert t.preprocess_ms > 0 and t.inference_ms > 0 and t.queue_ms >= 0
    assert t.total_ms >= t.preprocess_ms + t.inference_ms
    info = client.get_model(TEXT_MODEL)
    assert (info.modality, info.embedding_dim, info.ready) == ("text", 384, True)
    assert info.bundle["preprocessing"]["max_length"] == MAX_LENGTH


def test_alone_equals_inside_a_padded_batch(client: EmbeddingClient, sentences: list[str]) -> None:
    short = sentences[5]
    alone = client.embed_texts(TEXT_MODEL, [short])
    # Two texts in one request share a padded sub-batch (the padding is within the slack the
    # server's length bucketing allows).
    padded = client.embed_texts(TEXT_MODEL, [sentences[6] + " " + sentences[7], short])
    assert np.abs(padded[1] - alone[0]).max() <= 1e-5
    pair = client.embed_texts(TEXT_MODEL, [_long_text(sentences), short])
    assert np.abs(pair[1] - alone[0]).max() <= 1e-5
    many = client.embed_texts(TEXT_MODEL, [*sentences[:20], short, _long_text(sentences)])
    assert np.abs(many[20] - alone[0]).max() <= 1e-5
    assert np.abs(many[:20] - client.embed_texts(TEXT_MODEL, sentences[:20])).max() <= 1e-5


def test_int32_and_int64_token_ids_equal_text(
    client: EmbeddingClient, sentences: list[str], hf_tokenizer
) -> None:
    texts = sentences[10:14]
    ids = hf_tokenizer(texts)["input_ids"]
    from_text = client.embed_texts(TEXT_MODEL, texts)
    for dtype in (np.int32, np.int64):
        from_ids = client.embed_token_ids(TEXT_MODEL, [np.asarray(x, dtype=dtype) for x in ids])
        assert np.abs(from_ids - from_text).max() <= 1e-6, dtype


def _status(client: EmbeddingClient, inputs: list[embedding_pb2.Input]) -> RemoteError:
    request = embedding_pb2.EmbedRequest(model_name=TEXT_MODEL, inputs=inputs)
    with pytest.raises(RemoteError) as info:
        client.embed(request)
    return info.value


def _ids(values: list[int], dtype: str = "int64", shape: list[int] | None = None):
    data = np.asarray(values, dtype=dtype).tobytes()
    tensor = embedding_pb2.Tensor(dtype=dtype, shape=shape or [len(values)], data=data)
    return embedding_pb2.Input(tensor=tensor)


def test_bad_inputs_get_invalid_argument_and_server_keeps_serving(
    client: EmbeddingClient, sentences: list[str]
) -> None:
    text = embedding_pb2.Input(text=sentences[0])
    image = embedding_pb2.Input(image=png_bytes(np.zeros((8, 8), np.uint8)))
    cases = {
        "input 0: modality image not supported by model minilm (modality text)": [image],
        "input 1: request mixes modalities: text (input 0) and image (input 1)": [text, image],
        "input 1: token id tensor dtype is 'float32'": [
            text,
            embedding_pb2.Input(
                tensor=embedding_pb2.Tensor(dtype="float32", shape=[2], data=b"\0" * 8)
            ),
        ],
        "input 0: token id 30522 at position 1 is outside the vocabulary [0, 30522)": [
            _ids([101, 30522, 102])
        ],
        "input 0: token id tensor shape is [257]": [_ids([101] * 257)],
        "input 0: token id tensor shape is [1, 3]": [_ids([101, 7592, 102], shape=[1, 3])],
        "input 0: token id tensor data is 8 bytes": [_ids([101, 102], "int32", shape=[3])],
        "request has no inputs": [],
        "input 0: no input set": [embedding_pb2.Input()],
    }
    for prefix, inputs in cases.items():
        error = _status(client, inputs)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (prefix, error)
        assert error.details.startswith(prefix), (prefix, error.details)
    assert client.embed_texts(TEXT_MODEL, sentences[:2]).shape == (2, 384)


def test_cli_embeds_a_file_of_lines(
    text_server: ServerProcess, client: EmbeddingClient, sentences: list[str], tmp_path: Path
) -> None:
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(sentences[:3]) + "\n", encoding="utf-8")
    windows = tmp_path / "windows.txt"  # CRLF line ends, no newline at the end, a blank line
    windows.write_bytes("\r\n".join([sentences[4], "", sentences[5]]).encode("utf-8"))
    cmd = [sys.executable, "-c", NO_TORCH, "embed", "--target", text_server.address]
    cmd += ["--model", TEXT_MODEL, "--text-file", str(lines), "--text", sentences[6]]
    cmd += ["--text-file", "-", "--text-file", str(windows), "--output", str(tmp_path / "emb")]
    out = subprocess.run(cmd, input=sentences[3] + "\n", capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "(8, 384) float32" in out.stdout and "0 texts truncated" in out.stdout
    saved = np.load(tmp_path / "emb.npy")
    # --text values come first, then each file's lines in the order the files were given.
    expected = client.embed_texts(TEXT_MODEL, [sentences[6], *sentences[:5], "", sentences[5]])
    np.testing.assert_array_equal(saved, expected)


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssl_serve.cli import main

    out = ["--output", str(tmp_path / "o")]
    assert main(["export", str(tmp_path), "--hf-model", str(tmp_path), "--name", "m", *out]) == 2
    assert main(["export", "--name", "m", *out]) == 2
    assert "give either CHECKPOINT or --hf-model DIR" in capsys.readouterr().err
    embed = ["embed", "--target", "127.0.0.1:1", "--model", "m", *out]
    assert main([*embed, "--text", "a", "x.png"]) == 2
    assert main(embed) == 2
    assert "nothing to embed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

    # A file that is not UTF-8 or has no lines is named, before any call to the server.
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9\n".encode() + "na\u00efve\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main([*embed, "--text-file", str(latin1)]) == 1
    err = capsys.readouterr().err
    assert f"{latin1}: line 2 is not UTF-8 (byte 0xef at offset 8)" in err, err
    assert main([*embed, "--text-file", str(empty)]) == 1
    assert f"--text-file {empty}: no lines to send" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()
    assert main(["export", "--hf-model", str(tmp_path / "nosuch"), "--name", "m", *out]) == 1
    assert f"{tmp_path / 'nosuch'} is not a folder" in capsys.readouterr().err
