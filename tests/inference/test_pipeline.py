"""Pipeline against a stand-in PredictionService on loopback: wire, canary, deadline, breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest

from relentless_fast.inference.batch import (
    FLAG_CANARY,
    FLAG_COALESCED,
    FLAG_FALLBACK,
    Batch,
    BatchResult,
    DropReason,
)
from relentless_fast.inference.batcher import MicroBatcher
from relentless_fast.inference.breaker import BreakerState, CircuitBreaker
from relentless_fast.inference.embedded import EmbeddedBackend, LiteRTModel
from relentless_fast.inference.grpc_backend import GrpcBackend, GrpcOptions
from relentless_fast.inference.pipeline import InferencePipeline, PipelineOptions
from relentless_fast.inference.routing import CanaryRouter
from tests.inference.standin_model import saved_model_predict
from tests.inference.standin_server import StandinServer

pytest.importorskip("tensorflow_serving.apis.predict_pb2")

SYMBOLS = [f"S{i:04d}" for i in range(2000)]


class Results:
    def __init__(self) -> None:
        self.items: list[BatchResult] = []

    def __call__(self, r: BatchResult) -> None:
        self.items.append(r)

    def rows(self) -> list[tuple[int, int]]:
        """(batch seq, row id) of every delivered row."""
        return [(r.batch_seq, int(e)) for r in self.items for e in r.event_ts_ns]

    @property
    def n(self) -> int:
        return sum(len(r) for r in self.items)


def make_batch(seq: int, symbol_ids: np.ndarray, f: int, c: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    n = len(symbol_ids)
    return Batch(
        seq,
        symbol_ids.astype(np.int32),
        rng.standard_normal((n, f)).astype(np.float32),
        rng.standard_normal((n, c)).astype(np.float32),
        np.arange(n, dtype=np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.uint16),
    )


@pytest.fixture(scope="module")
def embedded(tiny_model: Any) -> EmbeddedBackend:
    sizes = (1, 8, 32)
    return EmbeddedBackend(
        LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=sizes),
        LiteRTModel.from_version_dir(tiny_model.saved_model(2), batch_sizes=sizes),
    )


@pytest.fixture
async def server(tiny_model: Any) -> AsyncIterator[StandinServer]:
    srv = StandinServer(tiny_model)
    await srv.start()
    yield srv
    await srv.stop()


async def started(target: str, model: Any, **kw: Any) -> GrpcBackend:
    backend = GrpcBackend(
        target,
        n_features=model.n_features,
        context_dim=model.context_dim,
        model_name="relentless_financial",
        **kw,
    )
    await backend.start()
    return backend


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


async def test_wire_by_label_and_by_version(
    server: StandinServer, tiny_model: Any, predict_pb2: Any
) -> None:
    batch = make_batch(0, np.arange(5), tiny_model.n_features, tiny_model.context_dim)
    for kw in ({}, {"versions": {"stable": 1, "canary": 2}}):
        backend = await started(server.address, tiny_model, **kw)
        try:
            for label, version in (("stable", 1), ("canary", 2)):
                outputs, got_version = await backend.predict(label, batch.ticks, batch.context, 5.0)
                assert got_version == version
                want = saved_model_predict(
                    tiny_model.saved_model(version), batch.ticks, batch.context
                )
                _close(outputs, want)
                # The server received exactly the official deterministic serialisation.
                req = predict_pb2.PredictRequest.FromString(server.requests[-1])
                assert server.requests[-1] == req.SerializeToString(deterministic=True)
                if kw:
                    assert req.model_spec.version.value == version
                else:
                    assert req.model_spec.version_label == label
        finally:
            await backend.close()


async def test_unknown_label_is_an_error_served_by_fallback(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    backend = await started(server.address, tiny_model, labels=("stable", "canary", "nightly"))
    results = Results()
    pipe = InferencePipeline(on_result=results, embedded=embedded, remote=backend)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await backend.predict(
                "nightly", np.zeros((1, 6), np.float32), np.zeros((1, 5), np.float32), 5.0
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        server.fail_code = grpc.StatusCode.INVALID_ARGUMENT
        pipe.dispatch(make_batch(0, np.arange(3), 6, 5))
        await pipe.drain()
        assert results.n == 3
        assert all(r.flags.tolist() == [FLAG_FALLBACK] * 3 for r in results.items)
        assert pipe.label_stats["stable"].errors == {"INVALID_ARGUMENT": 1}
    finally:
        await backend.close()


def test_canary_split_is_five_percent_and_sticky() -> None:
    router = CanaryRouter(SYMBOLS, 0.05)
    n = router.n_canary
    # Binomial(2000, 0.05): mean 100, sd 9.7; 5 sd either side.
    assert 51 <= n <= 149
    again = CanaryRouter(list(SYMBOLS), 0.05)
    np.testing.assert_array_equal(router.is_canary, again.is_canary)
    # A symbol keeps its decision when the table is reordered (hash of the name, not the id).
    shuffled = SYMBOLS[::-1]
    rev = CanaryRouter(shuffled, 0.05)
    assert {s for s, c in zip(SYMBOLS, router.is_canary, strict=True) if c} == {
        s for s, c in zip(shuffled, rev.is_canary, strict=True) if c
    }
    big = CanaryRouter(20_000, 0.05)
    assert abs(big.n_canary - 1000) <= 5 * np.sqrt(20_000 * 0.05 * 0.95)
    assert CanaryRouter(SYMBOLS, 0.0).n_canary == 0
    with pytest.raises(ValueError, match="fraction"):
        CanaryRouter(SYMBOLS, 1.5)


async def test_canary_rows_go_to_canary_label_and_carry_the_flag(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    router = CanaryRouter(SYMBOLS, 0.05)
    backend = await started(server.address, tiny_model)
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        router=router,
        options=PipelineOptions(deadline_ms=5000),
    )
    rng = np.random.default_rng(1)
    sent = 0
    try:
        for seq in range(12):
            ids = rng.choice(len(SYMBOLS), 32, replace=False)
            pipe.dispatch(make_batch(seq, ids, 6, 5, seed=seq))
            sent += 32
        await pipe.drain()
    finally:
        await backend.close()
    assert results.n == sent
    label_of: dict[int, set[str]] = {}
    for r in results.items:
        assert r.backend == "grpc"
        canary = router.is_canary[r.symbol_ids]
        assert canary.all() if r.label == "canary" else not canary.any()
        assert r.model_version == (2 if r.label == "canary" else 1)
        assert ((r.flags & FLAG_CANARY) > 0).tolist() == canary.tolist()
        for s in r.symbol_ids.tolist():
            label_of.setdefault(s, set()).add(r.label)
    assert all(len(v) == 1 for v in label_of.values())  # sticky
    n_canary_rows = sum(len(r) for r in results.items if r.label == "canary")
    assert server.rows_by_version[2] == n_canary_rows > 0
    assert pipe.label_stats["canary"].calls > 0
    assert pipe.label_stats["canary"].percentiles_ns()["p50_ns"] > 0


async def test_embedded_only_canary_routing(tiny_model: Any, embedded: EmbeddedBackend) -> None:
    router = CanaryRouter(SYMBOLS, 0.05)
    results = Results()
    pipe = InferencePipeline(on_result=results, embedded=embedded, router=router)
    ids = np.arange(200)
    batch = make_batch(0, ids, 6, 5)
    pipe.dispatch(batch)
    assert results.n == 200
    for r in results.items:
        want_version = 2 if r.label == "canary" else 1
        assert r.model_version == want_version
        assert r.backend == "embedded"
        idx = np.searchsorted(ids, r.symbol_ids)
        _close(
            r.outputs,
            saved_model_predict(
                tiny_model.saved_model(want_version), batch.ticks[idx], batch.context[idx]
            ),
        )


async def test_deadline_miss_falls_back_and_discards_the_late_reply(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    server.delay_s = 0.3
    backend = await started(server.address, tiny_model)
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        breaker=CircuitBreaker(failure_threshold=100),
        options=PipelineOptions(deadline_ms=30, late_grace_ms=2000),
    )
    try:
        for seq in range(3):
            pipe.dispatch(make_batch(seq, np.arange(8), 6, 5, seed=seq))
        await pipe.drain()
        assert results.n == 24
        assert {r.backend for r in results.items} == {"embedded"}
        assert all((r.flags & FLAG_FALLBACK).all() for r in results.items)
        assert pipe.counters.deadline_misses == 3
        for _ in range(100):  # the server answers after 0.3 s: those replies must be dropped
            if pipe.counters.late_replies_discarded == 3:
                break
            await asyncio.sleep(0.02)
        assert pipe.counters.late_replies_discarded == 3
        assert server.calls_by_version[1] == 3
        assert results.n == 24  # nothing delivered twice
        assert len(set(results.rows())) == 24
    finally:
        await backend.close()


async def test_breaker_opens_on_outage_and_recovers(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    backend = await started(
        server.address,
        tiny_model,
        options=GrpcOptions(reconnect_backoff_initial_ms=50, reconnect_backoff_max_ms=100),
    )
    clock = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=1.0, clock=lambda: clock[0])
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        breaker=breaker,
        options=PipelineOptions(deadline_ms=2000),
    )
    try:
        await server.stop()
        for seq in range(2):
            pipe.dispatch(make_batch(seq, np.arange(4), 6, 5))
            await pipe.drain()
        assert breaker.state.value == "open"
        calls = pipe.label_stats["stable"].calls
        for seq in range(2, 6):  # open: straight to the embedded backend, no remote call
            pipe.dispatch(make_batch(seq, np.arange(4), 6, 5))
        await pipe.drain()
        assert pipe.label_stats["stable"].calls == calls
        assert breaker.rejected == 4
        assert results.n == 24
        assert all((r.flags & FLAG_FALLBACK).all() for r in results.items)
        await server.start()
        clock[0] += 1.5  # past the reset timeout: the next batch is the probe
        for _ in range(100):
            pipe.dispatch(make_batch(99, np.arange(4), 6, 5))
            await pipe.drain()
            if breaker.state is BreakerState.CLOSED:
                break
            clock[0] += 1.5
            await asyncio.sleep(0.05)
        assert breaker.state is BreakerState.CLOSED
        assert results.items[-1].backend == "grpc"
        assert results.items[-1].flags.tolist() == [0, 0, 0, 0]
    finally:
        await backend.close()


async def test_round_robin_over_several_servers(tiny_model: Any) -> None:
    a, b = StandinServer(tiny_model), StandinServer(tiny_model)
    await a.start()
    await b.start()
    backend = await started(
        f"ipv4:{a.address},{b.address}", tiny_model, options=GrpcOptions(channels=1)
    )
    try:
        for _ in range(10):
            await backend.predict(
                "stable", np.zeros((2, 6), np.float32), np.zeros((2, 5), np.float32), 5.0
            )
        assert len(a.requests) > 0 and len(b.requests) > 0
        assert len(a.requests) + len(b.requests) == 10
    finally:
        await backend.close()
        await a.stop()
        await b.stop()


async def test_dns_target(server: StandinServer, tiny_model: Any) -> None:
    backend = await started(f"dns:///127.0.0.1:{server.port}", tiny_model)
    try:
        out, version = await backend.predict(
            "stable", np.zeros((1, 6), np.float32), np.zeros((1, 5), np.float32), 5.0
        )
        assert version == 1 and out["action_probs"].shape == (1, 3)
    finally:
        await backend.close()


async def test_bounded_in_flight_holds_and_coalesces_rows(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    server.delay_s = 0.2
    backend = await started(
        server.address, tiny_model, options=GrpcOptions(channels=1, max_in_flight_per_channel=1)
    )
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        options=PipelineOptions(deadline_ms=5000),
    )
    batcher = MicroBatcher(
        n_symbols=10,
        n_features=6,
        context_dim=5,
        window_us=10,
        max_batch=4,
        queue_rows=8,
        coalesce=True,
        dispatch=pipe.dispatch,
        has_capacity=pipe.has_capacity,
        counters=pipe.counters,
        loop=asyncio.get_running_loop(),
    )
    pipe.on_capacity = batcher.on_capacity
    try:

        def frame(ids: list[int]) -> None:
            n = len(ids)
            batcher.submit(
                np.array(ids, np.int32),
                np.ones((n, 6), np.float32),
                np.ones((n, 5), np.float32),
                np.arange(n, dtype=np.int64),
            )
            batcher.end_of_burst()

        frame([0, 1, 2, 3])
        await asyncio.sleep(0.01)  # the call task starts and takes the only slot
        assert not backend.has_capacity()
        frame([4, 5])
        frame([4, 5, 6])
        assert batcher.pending == 3  # held while the channel is busy, coalesced
        assert pipe.counters.rows_coalesced == 2
        for _ in range(100):
            await asyncio.sleep(0.02)
            if results.n == 7 and not pipe.in_flight:
                break
        assert results.n == 7
        last = results.items[-1]
        assert last.symbol_ids.tolist() == [4, 5, 6]
        assert last.flags.tolist() == [FLAG_COALESCED, FLAG_COALESCED, 0]
    finally:
        await backend.close()


async def test_server_killed_and_restarted_mid_stream(
    tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    """No row is lost without a counted reason; the stream moves back to the server."""
    server = StandinServer(tiny_model)
    await server.start()
    backend = await started(
        server.address,
        tiny_model,
        options=GrpcOptions(reconnect_backoff_initial_ms=50, reconnect_backoff_max_ms=100),
    )
    router = CanaryRouter(SYMBOLS[:50], 0.2)
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        router=router,
        breaker=CircuitBreaker(failure_threshold=2, reset_timeout_s=0.1),
        options=PipelineOptions(deadline_ms=200, late_grace_ms=200),
    )
    batcher = MicroBatcher(
        n_symbols=50,
        n_features=6,
        context_dim=5,
        window_us=200,
        max_batch=8,
        queue_rows=32,
        coalesce=True,
        dispatch=pipe.dispatch,
        has_capacity=pipe.has_capacity,
        counters=pipe.counters,
        loop=asyncio.get_running_loop(),
    )
    pipe.on_capacity = batcher.on_capacity
    rng = np.random.default_rng(3)
    phases = []
    next_id = 0
    try:
        step = 0
        while True:
            if step == 40:
                await server.stop()
            if step == 90:
                await server.start()
            # After the restart: stream until the server serves again (bounded).
            if step >= 150 and results.items[-1].backend == "grpc":
                break
            assert step < 3000, "the stream never went back to the restarted server"
            step += 1
            n = int(rng.integers(1, 6))
            ids = rng.integers(0, 50, n).astype(np.int32)
            ticks = rng.standard_normal((n, 6)).astype(np.float32)
            batcher.submit(
                ids,
                ticks,
                np.zeros((n, 5), np.float32),
                np.arange(next_id, next_id + n, dtype=np.int64),
            )
            next_id += n
            batcher.end_of_burst()
            await asyncio.sleep(0.005)
            phases.append(len(results.items))
        batcher.flush()
        for _ in range(200):
            await pipe.drain()
            await asyncio.sleep(0.01)
            batcher.flush()
            if not pipe.in_flight and not batcher.pending:
                break
    finally:
        await backend.close()
        await server.stop()
    c = pipe.counters
    delivered = [int(e) for r in results.items for e in r.event_ts_ns]
    assert len(delivered) == len(set(delivered)), "a row got two results"
    assert c.rows_delivered == len(delivered)
    assert c.rows_submitted == next_id
    assert c.rows_submitted == c.rows_delivered + c.rows_coalesced + c.rows_dropped
    assert c.dropped[DropReason.NO_BACKEND] == 0
    backends = [r.backend for r in results.items]
    assert "grpc" in backends[: phases[35]]
    assert "embedded" in backends[phases[40] : phases[90]]
    fallback = [r for r in results.items if r.backend == "embedded"]
    assert all(((r.flags & FLAG_FALLBACK) > 0).all() for r in fallback)
    assert c.rows_fallback == sum(len(r) for r in fallback)
    assert backends[-1] == "grpc", "the stream went back to the server after the restart"


async def test_warmup_runs_every_backend_at_every_batch_size(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend, predict_pb2: Any
) -> None:
    backend = await started(server.address, tiny_model)
    pipe = InferencePipeline(on_result=Results(), embedded=embedded, remote=backend)
    try:
        await pipe.warmup()
    finally:
        await backend.close()
    seen = set()
    for raw in server.requests:
        req = predict_pb2.PredictRequest.FromString(raw)
        seen.add((req.model_spec.version_label, req.inputs["ticks"].tensor_shape.dim[0].size))
    assert seen == {(label, size) for label in ("stable", "canary") for size in (1, 8, 32)}


def test_batcher_timer_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        got: list[Batch] = []
        batcher = MicroBatcher(
            n_symbols=4,
            n_features=6,
            context_dim=5,
            window_us=3000,
            max_batch=8,
            queue_rows=8,
            coalesce=True,
            dispatch=got.append,
            loop=asyncio.get_running_loop(),
        )
        batcher.submit(
            np.array([1, 2], np.int32),
            np.zeros((2, 6), np.float32),
            np.zeros((2, 5), np.float32),
            np.zeros(2, np.int64),
        )
        batcher.end_of_burst()
        assert not got
        for _ in range(200):
            await asyncio.sleep(0.005)
            if got:
                break
        assert [b.symbol_ids.tolist() for b in got] == [[1, 2]]
        assert batcher.counters.flushes["timer"] == 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def test_close_counts_rows_still_in_flight(
    server: StandinServer, tiny_model: Any, embedded: EmbeddedBackend
) -> None:
    server.delay_s = 5.0
    backend = await started(server.address, tiny_model)
    results = Results()
    pipe = InferencePipeline(
        on_result=results,
        embedded=embedded,
        remote=backend,
        options=PipelineOptions(deadline_ms=5000),
    )
    try:
        pipe.dispatch(make_batch(0, np.arange(3), 6, 5))  # task not even started yet
        await pipe.close()
        pipe.dispatch(make_batch(1, np.arange(4), 6, 5))
        await asyncio.sleep(0.05)  # this one is waiting on the server
        await pipe.close()
    finally:
        await backend.close()
    assert results.n == 0
    assert pipe.counters.dropped[DropReason.SHUTDOWN] == 7
    assert pipe.in_flight == 0
