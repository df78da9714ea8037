"""The engine-side client against a real ``relentless-fast serve-model`` process on loopback.

Uses the shipped models (``models/relentless_financial/{1,2,3}``). Each server is a child process
started by ``relentless_fast.serving.launcher.ServerProcess`` on free ports and stopped after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relentless_fast.inference.batch import (
    FLAG_CANARY,
    FLAG_COALESCED,
    FLAG_FALLBACK,
    BatchResult,
    DropReason,
)
from relentless_fast.inference.batcher import MicroBatcher
from relentless_fast.inference.breaker import CircuitBreaker
from relentless_fast.inference.embedded import EmbeddedBackend, LiteRTModel
from relentless_fast.inference.grpc_backend import GrpcBackend, GrpcOptions
from relentless_fast.inference.pipeline import InferencePipeline, PipelineOptions
from relentless_fast.inference.routing import CanaryRouter
from tests.inference.conftest import SHIPPED_MODEL_DIR
from tests.inference.test_embedded import warmup_inputs

pytest.importorskip("tensorflow_serving.apis.predict_pb2")
if not all((SHIPPED_MODEL_DIR / str(v) / "saved_model.pb").exists() for v in (1, 2, 3)):
    pytest.skip("shipped models not exported yet", allow_module_level=True)
launcher = pytest.importorskip("relentless_fast.serving.launcher")

MODELS = SHIPPED_MODEL_DIR.parent
SYMBOLS = [f"S{i:04d}" for i in range(2000)]
SIZES = (1, 8, 32, 128)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    srv = launcher.ServerProcess(config=MODELS / "config.all_versions.pbtxt", rest=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Server-side batching that holds a lone request for 0.3 s (a deterministic slow server)."""
    cfg: Path = tmp_path_factory.mktemp("batching") / "slow.config"
    cfg.write_text(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 300000 }\n"
        "max_enqueued_batches { value: 64 }\nnum_batch_threads { value: 1 }\n"
    )
    srv = launcher.ServerProcess(
        config=MODELS / "config.pbtxt", rest=False, batching=True, batching_file=cfg
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def embedded() -> EmbeddedBackend:
    return EmbeddedBackend(
        LiteRTModel.from_version_dir(SHIPPED_MODEL_DIR / "1", batch_sizes=SIZES),
        LiteRTModel.from_version_dir(SHIPPED_MODEL_DIR / "2", batch_sizes=SIZES),
    )


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    """128 realistic rows (from the version-1 warmup records)."""
    pairs = warmup_inputs(SHIPPED_MODEL_DIR / "1")
    return max(pairs, key=lambda p: p[0].shape[0])


async def backend_for(target: str, **kw: Any) -> GrpcBackend:
    contract = LiteRTModel.from_version_dir(SHIPPED_MODEL_DIR / "1", batch_sizes=(1,))
    b = GrpcBackend(target, n_features=contract.n_features, context_dim=contract.context_dim, **kw)
    await b.start()
    return b


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)


async def test_every_version_same_outputs_ours_official_and_embedded(
    server: Any, rows: tuple[np.ndarray, np.ndarray]
) -> None:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    ticks, context = rows
    ours = await backend_for(server.grpc_target, labels=("stable", "canary", "dev"))
    by_version = await backend_for(
        server.grpc_target, versions={"stable": 1, "canary": 2, "dev": 3}
    )
    stub_channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(stub_channel)
    try:
        for label, version in (("stable", 1), ("canary", 2), ("dev", 3)):
            embedded = LiteRTModel.from_version_dir(SHIPPED_MODEL_DIR / str(version))
            want = embedded.predict(ticks, context)
            for backend in (ours, by_version):
                got, got_version = await backend.predict(label, ticks, context, 10.0)
                assert got_version == version
                _close(got, want)
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "relentless_financial"
            req.model_spec.version_label = label
            req.model_spec.signature_name = "serving_default"
            for name, arr in (("ticks", ticks), ("context", context)):
                t = req.inputs[name]
                t.dtype = 1
                for d in arr.shape:
                    t.tensor_shape.dim.add().size = d
                t.tensor_content = arr.astype("<f4").tobytes()
            resp = stub.Predict(req, timeout=10.0)
            assert resp.model_spec.version.value == version
            official = {
                k: np.array(v.float_val, np.float32).reshape([d.size for d in v.tensor_shape.dim])
                if not v.tensor_content
                else np.frombuffer(v.tensor_content, "<f4").reshape(
                    [d.size for d in v.tensor_shape.dim]
                )
                for k, v in resp.outputs.items()
            }
            _close(official, want)
    finally:
        stub_channel.close()
        await ours.close()
        await by_version.close()


async def test_canary_split_and_labels_on_the_real_server(
    server: Any, embedded: EmbeddedBackend, rows: tuple[np.ndarray, np.ndarray]
) -> None:
    router = CanaryRouter(SYMBOLS, 0.05)
    assert 51 <= router.n_canary <= 149  # Binomial(2000, 0.05) within 5 sd
    remote = await backend_for(server.grpc_target)
    results: list[BatchResult] = []
    pipe = InferencePipeline(
        on_result=results.append,
        embedded=embedded,
        remote=remote,
        router=router,
        options=PipelineOptions(deadline_ms=10_000),
    )
    batcher = MicroBatcher(
        n_symbols=len(SYMBOLS),
        n_features=remote.n_features,
        context_dim=remote.context_dim,
        window_us=100,
        max_batch=128,
        queue_rows=4096,
        coalesce=True,
        dispatch=pipe.dispatch,
        has_capacity=pipe.has_capacity,
        counters=pipe.counters,
    )
    pipe.on_capacity = batcher.on_capacity
    ticks, context = rows
    try:
        for start in range(0, len(SYMBOLS), 128):
            ids = np.arange(start, min(start + 128, len(SYMBOLS)), dtype=np.int32)
            n = len(ids)
            batcher.submit(ids, ticks[:n], context[:n], ids.astype(np.int64))
            batcher.end_of_burst()
        batcher.flush()
        await pipe.drain(30.0)
    finally:
        await remote.close()
    assert pipe.counters.rows_delivered == len(SYMBOLS)
    seen = np.zeros(len(SYMBOLS), np.int32)
    for r in results:
        assert r.backend == "grpc"
        canary = router.is_canary[r.symbol_ids]
        assert canary.all() if r.label == "canary" else not canary.any()
        assert r.model_version == (2 if r.label == "canary" else 1)  # from the server's reply
        assert (((r.flags & FLAG_CANARY) > 0) == canary).all()
        seen[r.symbol_ids] += 1
    assert (seen == 1).all()


async def test_deadline_fallback_and_late_replies_on_a_slow_server(
    slow_server: Any, embedded: EmbeddedBackend, rows: tuple[np.ndarray, np.ndarray]
) -> None:
    remote = await backend_for(slow_server.grpc_target)
    results: list[BatchResult] = []
    pipe = InferencePipeline(
        on_result=results.append,
        embedded=embedded,
        remote=remote,
        breaker=CircuitBreaker(failure_threshold=100),
        options=PipelineOptions(deadline_ms=50, late_grace_ms=5000),
    )
    ticks, context = rows
    try:
        from tests.inference.test_pipeline import make_batch

        batch = make_batch(0, np.arange(4), remote.n_features, remote.context_dim)
        batch.ticks[:] = ticks[:4]
        batch.context[:] = context[:4]
        pipe.dispatch(batch)
        await pipe.drain(10.0)
        assert len(results) == 1
        (r,) = results
        assert r.backend == "embedded" and ((r.flags & FLAG_FALLBACK) > 0).all()
        _close(r.outputs, embedded.run("stable", batch.ticks, batch.context))
        assert pipe.counters.deadline_misses == 1
        for _ in range(200):
            if pipe.counters.late_replies_discarded:
                break
            await asyncio.sleep(0.02)
        assert pipe.counters.late_replies_discarded == 1
        assert len(results) == 1
    finally:
        await remote.close()


async def test_server_killed_and_restarted_mid_stream(
    embedded: EmbeddedBackend, rows: tuple[np.ndarray, np.ndarray]
) -> None:
    srv = launcher.ServerProcess(config=MODELS / "config.pbtxt", rest=False)
    await asyncio.to_thread(srv.start)
    remote = await backend_for(
        srv.grpc_target,
        options=GrpcOptions(reconnect_backoff_initial_ms=100, reconnect_backoff_max_ms=200),
    )
    router = CanaryRouter(SYMBOLS[:200], 0.05)
    results: list[BatchResult] = []
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=0.2)
    pipe = InferencePipeline(
        on_result=results.append,
        embedded=embedded,
        remote=remote,
        router=router,
        breaker=breaker,
        options=PipelineOptions(deadline_ms=500, late_grace_ms=500),
    )
    batcher = MicroBatcher(
        n_symbols=200,
        n_features=remote.n_features,
        context_dim=remote.context_dim,
        window_us=500,
        max_batch=32,
        queue_rows=256,
        coalesce=True,
        dispatch=pipe.dispatch,
        has_capacity=pipe.has_capacity,
        counters=pipe.counters,
        loop=asyncio.get_running_loop(),
    )
    pipe.on_capacity = batcher.on_capacity
    ticks, context = rows
    rng = np.random.default_rng(5)
    next_id = 0
    marks: dict[str, int] = {}
    restart: asyncio.Future[None] | None = None
    try:
        step = 0
        while True:
            if step == 30:
                srv.kill()  # SIGKILL: a crash, mid-stream
                marks["killed"] = len(results)
            if step == 60:
                restart = asyncio.ensure_future(asyncio.to_thread(srv.restart))
            if restart is not None and restart.done() and "back" not in marks:
                restart.result()
                marks["back"] = step
                marks["back_results"] = len(results)
            # After the restart: stream until the server serves again (bounded), then 20 more.
            served_again = "back" in marks and any(
                r.backend == "grpc" for r in results[marks["back_results"] :]
            )
            if served_again and "grpc_again" not in marks:
                marks["grpc_again"] = step
            if "grpc_again" in marks and step >= marks["grpc_again"] + 20:
                break
            assert step < 3000, "the stream never went back to the restarted server"
            n = int(rng.integers(1, 12))
            ids = rng.integers(0, 200, n).astype(np.int32)
            batcher.submit(
                ids, ticks[:n], context[:n], np.arange(next_id, next_id + n, dtype=np.int64)
            )
            next_id += n
            batcher.end_of_burst()
            await asyncio.sleep(0.01)
            step += 1
        for _ in range(100):
            batcher.flush()
            await pipe.drain(5.0)
            if not batcher.pending and not pipe.in_flight:
                break
            await asyncio.sleep(0.05)
    finally:
        await remote.close()
        if restart is not None:
            await restart
        srv.stop()
    c = pipe.counters
    delivered = [int(e) for r in results for e in r.event_ts_ns]
    assert len(delivered) == len(set(delivered)), "a row got two results"
    assert c.rows_submitted == next_id
    assert c.rows_submitted == c.rows_delivered + c.rows_coalesced + c.rows_dropped
    assert c.dropped[DropReason.NO_BACKEND] == 0
    assert c.rows_fallback > 0
    assert breaker.opens >= 1
    backends = [r.backend for r in results]
    assert "grpc" in backends[: marks["killed"]]
    assert backends[-1] == "grpc", "the stream went back to the server after the restart"
    for r in results:
        if r.backend == "embedded":
            assert ((r.flags & FLAG_FALLBACK) > 0).all()


async def test_coalescing_while_the_real_server_is_busy(
    slow_server: Any, embedded: EmbeddedBackend, rows: tuple[np.ndarray, np.ndarray]
) -> None:
    """One in-flight batch allowed: later rows wait in the batcher and coalesce per symbol."""
    remote = await backend_for(
        slow_server.grpc_target, options=GrpcOptions(channels=1, max_in_flight_per_channel=1)
    )
    results: list[BatchResult] = []
    pipe = InferencePipeline(
        on_result=results.append,
        embedded=embedded,
        remote=remote,
        options=PipelineOptions(deadline_ms=10_000),
    )
    batcher = MicroBatcher(
        n_symbols=16,
        n_features=remote.n_features,
        context_dim=remote.context_dim,
        window_us=10,
        max_batch=8,
        queue_rows=16,
        coalesce=True,
        dispatch=pipe.dispatch,
        has_capacity=pipe.has_capacity,
        counters=pipe.counters,
        loop=asyncio.get_running_loop(),
    )
    pipe.on_capacity = batcher.on_capacity
    ticks, context = rows
    next_id = [0]

    def frame(ids: list[int]) -> None:
        n = len(ids)
        batcher.submit(
            np.array(ids, np.int32),
            ticks[:n],
            context[:n],
            np.arange(next_id[0], next_id[0] + n, dtype=np.int64),
        )
        next_id[0] += n
        batcher.end_of_burst()

    try:
        frame([0, 1, 2])
        await asyncio.sleep(0.05)  # the first batch is on the wire (held 0.3 s by the server)
        assert not remote.has_capacity()
        frame([3, 4])
        frame([4, 5, 3])
        frame([3])
        assert batcher.pending == 3
        for _ in range(300):
            await asyncio.sleep(0.02)
            if pipe.counters.rows_delivered == 6 and not pipe.in_flight:
                break
    finally:
        await remote.close()
    c = pipe.counters
    assert c.rows_submitted == 9
    assert c.rows_coalesced == 3
    assert c.rows_delivered == 6
    assert [r.backend for r in results] == ["grpc", "grpc"]
    last = results[-1]
    assert last.symbol_ids.tolist() == [3, 4, 5]
    assert last.event_ts_ns.tolist() == [8, 5, 6]  # the newest row of each symbol
    assert last.flags.tolist() == [FLAG_COALESCED, FLAG_COALESCED, 0]
