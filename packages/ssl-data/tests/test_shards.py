import argparse
import io
import json
import logging

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader

from ssl_data import CorruptFileError, SimCLRView
from ssl_data.datasets import bundled_sample_root, load_fashion_mnist
from ssl_data.datasets.shard_index import ShardIndex, open_index
from ssl_data.datasets.shard_writer import array_samples, write_shards
from ssl_data.datasets.shards import ShardStream
from ssl_data.datasets.shards_cli import add_subcommand
from ssl_data.datasets.stream_plan import round_robin_position


@pytest.fixture(scope="module")
def real():
    """600 real Fashion-MNIST training images and labels."""
    x, y = load_fashion_mnist("train", root=bundled_sample_root())
    return x[:600], y[:600]


@pytest.fixture(scope="module")
def even_shards(tmp_path_factory, real):
    """192 real images as .npy in 8 shards of 24."""
    out = tmp_path_factory.mktemp("even")
    write_shards(array_samples(real[0][:192], real[1][:192]), out, max_count=24, progress=False)
    return out


@pytest.fixture(scope="module")
def uneven_shards(tmp_path_factory, real):
    """170 real images in 7 shards (6 of 25, one of 20)."""
    out = tmp_path_factory.mktemp("uneven")
    write_shards(array_samples(real[0][:170], real[1][:170]), out, max_count=25, progress=False)
    return out


def flat(batches):
    return [i for b in batches for i in b]


def read_epoch(stream, workers=None):
    """The epoch's batches as lists of sample indices (through a DataLoader when workers)."""
    workers = stream.num_workers if workers is None else workers
    loader = DataLoader(stream, batch_size=None, num_workers=workers,
                        multiprocessing_context="fork" if workers else None)  # fmt: skip
    return [b["index"].tolist() for b in loader]


def test_writer_index_and_webdataset_compatibility(even_shards, real):
    index = open_index(even_shards)
    assert index.counts == (24,) * 8 and index.max_count == 24 and index.num_samples == 192
    doc = json.loads((even_shards / "index.json").read_text())
    assert doc["__kind__"] == "wids-shard-index-v1" and doc["shardlist"][1] == {
        "url": "shard-000001.tar", "nsamples": 24}  # fmt: skip
    assert ShardIndex.scan(str(even_shards / "shard-{000000..000007}.tar")).counts == index.counts
    # The webdataset library reads the same samples: key, stored index, exact pixels, label.
    urls = [str(p) for p in index.paths[2:3]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(48, 72)]
    for s in samples[:3]:
        i = json.loads(s["json"])["index"]
        np.testing.assert_array_equal(np.load(io.BytesIO(s["npy"])), real[0][i])
        assert int(s["cls"]) == real[1][i]


def test_two_ranks_two_workers_read_disjoint_shards_covering_every_sample_once(even_shards, real):
    seen = {}
    for rank in range(2):
        stream = ShardStream(even_shards, batch_size=10, num_workers=2, seed=3, rank=rank,
                             world_size=2, shuffle_buffer=16)  # fmt: skip
        loader = DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="fork")
        batches = list(loader)
        assert len(batches) == len(stream) == 10  # 2 workers x ceil(48 / 10)
        idx = np.concatenate([b["index"].numpy() for b in batches])
        for b in batches[:2]:  # samples are the source rows the index names
            np.testing.assert_array_equal(b["array"].numpy(), real[0][b["index"].numpy()])
            np.testing.assert_array_equal(b["label"].numpy(), real[1][b["index"].numpy()])
        seen[rank] = idx
        # Each worker reads whole shards (indices // 24), never one another worker reads.
        shards = [set(np.concatenate([b["index"].numpy() for b in batches[w::2]]) // 24)
                  for w in range(2)]  # fmt: skip
        assert not shards[0] & shards[1] and all(len(s) == 2 for s in shards)
    assert not set(seen[0]) & set(seen[1])
    np.testing.assert_array_equal(np.sort(np.concatenate([seen[0], seen[1]])), np.arange(192))


def test_shuffling_is_seeded_by_seed_and_epoch(even_shards):
    def order(seed, epoch):
        return read_epoch(ShardStream(even_shards, batch_size=8, seed=seed, epoch=epoch,
                                      shuffle_buffer=20))  # fmt: skip

    first = order(5, 0)
    assert order(5, 0) == first
    samples = flat(first)
    assert sorted(samples) == list(range(192)) and samples != sorted(samples)
    for other in (order(5, 1), order(6, 0)):
        assert sorted(flat(other)) == list(range(192)) and other != first
    unshuffled = read_epoch(ShardStream(even_shards, batch_size=8, shuffle=False))
    assert flat(unshuffled) == list(range(192))


def test_resume_mid_epoch_reproduces_the_rest_exactly(uneven_shards):
    kwargs = {"batch_size": 8, "num_workers": 2, "seed": 9, "epoch": 4, "shuffle_buffer": 12}
    stream = ShardStream(uneven_shards, **kwargs)
    full = read_epoch(stream)
    assert sorted(flat(full)) == list(range(170)) and len(full) == len(stream)
    # Cuts: after one batch, mid-round, and in the tail where some workers are exhausted.
    for k in (1, 7, len(full) - 2):
        state = json.loads(json.dumps(stream.state_dict(k)))  # survives a JSON checkpoint
        assert state["epoch"] == 4 and state["samples"] == sum(len(b) for b in full[:k])
        fresh = ShardStream(uneven_shards, **{**kwargs, "epoch": 0})
        fresh.load_state_dict(state)
        assert read_epoch(fresh) == full[k:]
        fresh.set_epoch(5)  # the position only applies to its own epoch
        assert sorted(flat(read_epoch(fresh))) == list(range(170))
    # In the main process (one reader) too, including the start and the end of the epoch.
    single = ShardStream(uneven_shards, **{**kwargs, "num_workers": 0})
    whole = read_epoch(single)
    for k in [*range(0, len(whole), 5), len(whole)]:
        fresh = ShardStream(uneven_shards, **{**kwargs, "num_workers": 0})
        fresh.load_state_dict(single.state_dict(k))
        assert read_epoch(fresh) == whole[k:]
    with pytest.raises(ValueError, match="batch_size=8"):
        ShardStream(uneven_shards, **{**kwargs, "batch_size": 4}).load_state_dict(state)


def test_equal_batches_across_ranks(uneven_shards):
    counts = []
    for equal in (True, False):
        streams = [ShardStream(uneven_shards, batch_size=8, rank=r, world_size=3,
                               equal_batches=equal, seed=1) for r in range(3)]  # fmt: skip
        epochs = [read_epoch(s) for s in streams]
        counts.append([len(e) for e in epochs])
        samples = flat(flat(epochs))
        assert len(samples) == len(set(samples))
        if not equal:
            assert sorted(samples) == list(range(170))
    assert len(set(counts[0])) == 1 and counts[0][0] == min(counts[1])
    assert len(set(counts[1])) > 1  # 7 shards over 3 ranks cannot be even


def test_round_robin_position_matches_a_simulated_dataloader():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 5, size=rng.integers(1, 5)).tolist()
        sequence, left = [], list(counts)
        while any(left):
            for w in range(len(counts)):
                if left[w]:
                    sequence.append(w)
                    left[w] -= 1
        for k in range(len(sequence) + 1):
            taken, order = round_robin_position(counts, k)
            assert taken.tolist() == [sequence[:k].count(w) for w in range(len(counts))]
            assert [order[i] for i in range(len(order))] == sorted(order, key=lambda w: (
                taken[w], w))  # fmt: skip
            rest = []
            left = [counts[w] - taken[w] for w in order]
            while any(left):
                for j in range(len(order)):
                    if left[j]:
                        rest.append(order[j])
                        left[j] -= 1
            assert rest == sequence[k:]


def test_too_few_shards_and_wrong_worker_count_are_clear_errors(even_shards):
    with pytest.raises(ValueError, match="8 shards cannot feed 2 ranks x 5 workers"):
        ShardStream(even_shards, batch_size=4, num_workers=5, rank=0, world_size=2)
    with pytest.raises(ValueError, match="pass the DataLoader's num_workers"):
        read_epoch(ShardStream(even_shards, batch_size=4, num_workers=2), workers=0)
    with pytest.raises(ValueError, match="rank must be in"):
        ShardStream(even_shards, batch_size=4, rank=2, world_size=2)


def test_views_from_a_stream_equal_the_batched_path(even_shards, real):
    view = SimCLRView(size=16, seed=2)
    plain = ShardStream(even_shards, batch_size=6, seed=8, epoch=3, shuffle_buffer=10)
    with_views = ShardStream(even_shards, batch_size=6, seed=8, epoch=3, shuffle_buffer=10,
                             view_generator=view)  # fmt: skip
    for batch, views in zip(list(plain)[:3], list(with_views)[:3], strict=True):
        idx = batch["index"].numpy()
        ref = view(torch.from_numpy(real[0][idx]), idx, 3)
        for a, b in zip(views, ref, strict=True):
            assert a.shape == (6, 1, 16, 16)
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)


def png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("policy", ["skip", "raise"])
def test_corrupt_member_in_a_shard(tmp_path, real, caplog, policy):
    samples = [{"png": png_bytes(real[0][i]), "cls": int(real[1][i])} for i in range(40)]
    samples[13]["png"] = samples[13]["png"][:20] + b"garbage" * 10  # a broken PNG member
    write_shards(samples, tmp_path, max_count=10, progress=False)
    stream = ShardStream(tmp_path, batch_size=5, seed=1, mode="L", on_corrupt=policy)
    if policy == "raise":
        with pytest.raises(CorruptFileError, match="shard-000001.tar:000000013.png"):
            list(stream)
        return
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        batches = list(stream)
    idx = flat(b["index"].tolist() for b in batches)
    assert sorted(idx) == [i for i in range(40) if i != 13]
    assert len(batches) == 8 and sorted(len(b["index"]) for b in batches)[0] == 4
    assert stream.corrupt.count == 1 and "shard-000001.tar:000000013" in caplog.text
    b = batches[0]
    np.testing.assert_array_equal(b["image"][:, 0].numpy(), real[0][b["index"].numpy()])


def test_truncated_shard_loses_only_its_unreadable_tail(tmp_path, real, caplog):
    write_shards(array_samples(real[0][:60]), tmp_path, max_count=20, progress=False)
    shard = tmp_path / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    stream = ShardStream(tmp_path, batch_size=7, seed=2, shuffle_buffer=8)
    with caplog.at_level(logging.WARNING, logger="ssl_data"):
        idx = flat(read_epoch(stream))
    assert len(idx) == len(set(idx)) and stream.corrupt.count == 1 and str(shard) in caplog.text
    missing = sorted(set(range(60)) - set(idx))
    # What is lost is a tail of shard 1 (indices 20..39): a contiguous run ending at 39.
    assert 0 < len(missing) < 20 and missing == list(range(40 - len(missing), 40))
    with pytest.raises(CorruptFileError, match="shard-000001.tar"):
        list(ShardStream(tmp_path, batch_size=7, on_corrupt="raise"))


def parse(argv):
    parser = argparse.ArgumentParser(prog="ssl-data")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_writes_shards_from_an_image_folder_and_an_idx_file(tmp_path, real, capsys):
    folder = tmp_path / "folder"
    for i in range(23):
        (folder / f"class{real[1][i]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(real[0][i]).save(folder / f"class{real[1][i]}" / f"{i:02d}.png")
    (folder / "class0" / "broken.png").write_bytes(b"not a png")
    args = parse(["shards", "write", str(folder), str(tmp_path / "out"), "--max-count", "5",
                  "--quiet"])  # fmt: skip
    assert args.func(args) == 0
    assert "wrote 23 images samples to 5 shards" in capsys.readouterr().out
    batch = next(iter(ShardStream(tmp_path / "out", batch_size=23, shuffle=False, mode="L")))
    sources = [int(m["source"].split("/")[1][:2]) for m in batch["meta"]]
    np.testing.assert_array_equal(batch["image"][:, 0].numpy(), real[0][sources])
    classes = sorted({f"class{c}" for c in real[1][:23]})
    assert batch["label"].tolist() == [classes.index(f"class{real[1][s]}") for s in sources]
    # An IDX file with its labels: the bundled real Fashion-MNIST test split.
    root = bundled_sample_root()
    args = parse(["shards", "write", str(root / "t10k-images-idx3-ubyte.gz"),
                  str(tmp_path / "idx"), "--max-count", "400", "--quiet",
                  "--labels", str(root / "t10k-labels-idx1-ubyte.gz")])  # fmt: skip
    assert args.func(args) == 0
    index = open_index(tmp_path / "idx")
    assert index.counts == (400, 400, 200) and index.kind == "array"
    args = parse(["shards", "info", str(tmp_path / "idx")])
    assert args.func(args) == 0 and "3 shards, 1000 samples" in capsys.readouterr().out
    args = parse(["shards", "write", str(folder), str(tmp_path / "out"), "--max-count", "5"])
    assert args.func(args) == 2  # refuses to overwrite without --overwrite
    assert "already holds" in capsys.readouterr().err
