"""Tokenizer training on real WordNet glosses, save/load, and the ``ssl-data tokenizer`` CLI."""

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_data import cli
from ssl_data.datasets.wordnet import bundled_sample_root, load_wordnet_glosses
from ssl_data.errors import CorruptFileError, DatasetNotFoundError
from ssl_data.text import SpecialTokens, load_tokenizer, save_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def glosses():
    return load_wordnet_glosses(bundled_sample_root()).texts  # 3,924 real glosses


@pytest.fixture(scope="module")
def wordpiece(glosses):
    return train_tokenizer(glosses, kind="wordpiece", vocab_size=3000)


def test_wordpiece_round_trips_glosses(wordpiece, glosses):
    """Every character survives: the pieces, ``##`` removed, spell the normalised text."""
    assert wordpiece.get_vocab_size() == 3000
    unknown = 0
    for text in glosses:
        enc = wordpiece.encode(text)
        assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
        unknown += enc.tokens.count("[UNK]")
        pieces = "".join(t.removeprefix("##") for t in enc.tokens[1:-1])
        assert pieces == "".join(wordpiece.normalizer.normalize_str(text).split())
        # Offsets point back into the original text.
        start, end = enc.offsets[1][0], enc.offsets[-2][1]
        assert text[start:end].lower() == text.strip().lower()
    assert unknown == 0
    assert (
        wordpiece.decode(wordpiece.encode("the cat sat on the mat").ids) == "the cat sat on the mat"
    )


_TRAIN_IN_A_NEW_PROCESS = """
import sys
from ssl_data.datasets.wordnet import bundled_sample_root, load_wordnet_glosses
from ssl_data.text import train_tokenizer
texts = load_wordnet_glosses(bundled_sample_root()).texts
sys.stdout.write(train_tokenizer(texts, kind=sys.argv[1], vocab_size=3000).to_str())
"""


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_training_gives_the_same_ids_in_every_process(kind):
    """The Rust trainer numbers WordPiece's alphabet in hash-map order, which changes between
    processes; the ids are renumbered so the same corpus gives the same tokenizer file."""
    command = [sys.executable, "-c", _TRAIN_IN_A_NEW_PROCESS, kind]
    runs = [
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
        for _ in range(3)
    ]
    assert runs[0] == runs[1] == runs[2]
    vocab = json.loads(runs[0])["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))


def test_pinned_continuation_tokens_are_ordinary_pieces(wordpiece, glosses):
    """The "##x" tokens pinned during training are vocabulary entries, not added tokens: they
    are not special, decoding keeps them, and every one of them is used on the corpus."""
    assert sorted(wordpiece.get_added_tokens_decoder()) == [0, 1, 2, 3, 4]
    vocab = wordpiece.get_vocab()
    continuation = sorted(t for t in vocab if t.startswith("##") and len(t) == 3)
    assert [vocab[t] for t in continuation] == list(range(5, 5 + len(continuation)))
    text = "the unbelievably quixotic zebra"
    enc = wordpiece.encode(text)
    assert any(t.startswith("##") for t in enc.tokens)
    assert wordpiece.decode(enc.ids) == text
    used = {t for g in glosses for t in wordpiece.encode(g).tokens}
    assert set(continuation) <= used


def test_wordpiece_specials_and_pair_template(wordpiece):
    special = SpecialTokens.of(wordpiece)
    assert (special.pad_id, special.unk_id, special.cls_id, special.sep_id, special.mask_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    enc = wordpiece.encode("a domestic animal", "a small carnivore")
    a = wordpiece.encode("a domestic animal", add_special_tokens=False).ids
    b = wordpiece.encode("a small carnivore", add_special_tokens=False).ids
    assert enc.ids == [2, *a, 3, *b, 3]
    assert enc.type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert enc.special_tokens_mask == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]


def test_bpe_is_lossless_and_cased(glosses):
    bpe = train_tokenizer(glosses[:2000], kind="bpe", vocab_size=1500)
    assert SpecialTokens.of(bpe).eos_id == 0 and bpe.id_to_token(0) == "<|endoftext|>"
    for text in [*glosses[:300], "Ünïcödé — “quotes” 🙂 and\ttabs"]:
        ids = bpe.encode(text).ids
        assert bpe.decode(ids) == text
    # Byte-level: no unknown token, never more tokens than UTF-8 bytes.
    assert len(bpe.encode("Ünïcödé").ids) <= len("Ünïcödé".encode())
    assert bpe.encode("Dog").ids != bpe.encode("dog").ids


def test_save_load_identical(wordpiece, glosses, tmp_path):
    path = save_tokenizer(wordpiece, tmp_path / "nested" / "tokenizer.json")
    assert path == tmp_path / "nested" / "tokenizer.json"
    assert not list(path.parent.glob(".*tmp*"))  # the temporary file was renamed away
    for loaded in (load_tokenizer(path), load_tokenizer(path.parent)):
        assert loaded.to_str() == wordpiece.to_str()
        batch = glosses[:200]
        assert [e.ids for e in loaded.encode_batch(batch)] == [
            e.ids for e in wordpiece.encode_batch(batch)
        ]


def test_load_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ssl-data tokenizer train"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": ')
    with pytest.raises(CorruptFileError, match=str(bad)):
        load_tokenizer(bad)


def test_train_from_files_with_corrupt_policy(glosses, tmp_path, caplog):
    lines = tmp_path / "glosses.txt.gz"
    with gzip.open(lines, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(glosses[:1500]))
    jsonl = tmp_path / "glosses.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"id": i, "text": g}) for i, g in enumerate(glosses[1500:3000]))
    )
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"caf\xe9 latin-1 bytes are not UTF-8\n")
    # Byte-level BPE training is deterministic (WordPiece's is not, huggingface/tokenizers#1794),
    # so files must give exactly what their texts give; the broken file adds nothing.
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        tok = train_tokenizer([lines, Path(broken)], kind="bpe", vocab_size=2000)
    assert str(broken) in caplog.text
    assert tok.to_str() == train_tokenizer(glosses[:1500], kind="bpe", vocab_size=2000).to_str()
    with pytest.raises(CorruptFileError, match="broken.txt"):
        train_tokenizer([lines, broken], vocab_size=2000, on_corrupt="raise")
    from_jsonl = train_tokenizer([jsonl], kind="bpe", vocab_size=2000, jsonl_field="text")
    reference = train_tokenizer(glosses[1500:3000], kind="bpe", vocab_size=2000)
    assert from_jsonl.to_str() == reference.to_str()
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_tokenizer([b"bytes"], vocab_size=2000)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="kind must be one of"):
        train_tokenizer(glosses[:10], kind="unigram")  # type: ignore[arg-type]


@pytest.fixture
def only_tokenizer_cli(monkeypatch):
    """``ssl-data`` with just this subcommand (other modules belong to other packages' work)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("ssl_data.text.tokenizer_cli",))


def test_cli_train_end_to_end(glosses, tmp_path, capsys, only_tokenizer_cli):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(glosses) + "\n")
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": g}) for g in glosses[:100]))
    out = tmp_path / "out" / "tokenizer.json"
    status = cli.main(
        ["tokenizer", "train", "--kind", "wordpiece", "--vocab-size", "2500", "--output", str(out),
         "--quiet", str(corpus)]
    )  # fmt: skip
    assert status == 0
    summary = capsys.readouterr().out
    assert (
        "2,500 tokens" in summary and f"{len(glosses):,} texts" in summary and str(out) in summary
    )
    tok = load_tokenizer(out)
    assert tok.get_vocab_size() == 2500 and SpecialTokens.of(tok).mask_id == 4
    enc = tok.encode("a member of the genus Canis", "a domestic animal")
    assert enc.tokens[0] == "[CLS]" and set(enc.type_ids) == {0, 1} and "[UNK]" not in enc.tokens

    # JSONL input, BPE, a folder as output, and a corrupt file skipped and counted.
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\nnot json\n')
    status = cli.main(
        ["tokenizer", "train", "--kind", "bpe", "--vocab-size", "600", "--jsonl-field", "text",
         "--output", str(tmp_path / "bpe"), str(jsonl), str(broken)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    assert "1 file(s) read, 1 skipped" in captured.out and "100 texts" in captured.out
    assert "reading" in captured.err  # the progress bar
    bpe = load_tokenizer(tmp_path / "bpe")
    assert bpe.to_str() == train_tokenizer(glosses[:100], kind="bpe", vocab_size=600).to_str()


def test_cli_errors_and_help(tmp_path, capsys, only_tokenizer_cli):
    assert (
        cli.main(
            ["tokenizer", "train", "-o", str(tmp_path / "t.json"), str(tmp_path / "missing.txt")]
        )
        == 2
    )
    assert "missing.txt" in capsys.readouterr().err
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"\xff\xfe\xfa")
    code = cli.main(
        [
            "tokenizer",
            "train",
            "-q",
            "-o",
            str(tmp_path / "t.json"),
            "--on-corrupt",
            "raise",
            str(broken),
        ]
    )
    assert code == 2 and "broken.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tokenizer", "train", "--vocab-size", "0", "-o", "x.json", "f.txt"])
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tokenizer", "train", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in (
        "--kind",
        "--vocab-size",
        "--output",
        "--jsonl-field",
        "--on-corrupt",
        "WordPiece",
    ):
        assert flag in help_text
