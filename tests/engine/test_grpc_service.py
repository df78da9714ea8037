"""The engine's gRPC server with real grpc clients: predictor, health, kill switch, bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.protobuf.empty_pb2 import Empty

from relentless_fast._proto import relentless_fast_pb2 as pb
from relentless_fast._proto import relentless_fast_pb2_grpc as pb_grpc
from relentless_fast.engine import Engine
from relentless_fast.engine.grpc_service import (
    decode_health_response,
    encode_health_request,
)
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.signals import unpack
from tests.engine.conftest import SYMBOLS, daily_context, make_config
from tests.engine.test_engine import T0, frame, trade


@pytest.fixture
async def engine(embedded: EmbeddedBackend) -> AsyncIterator[Engine]:
    config = make_config(**{"outputs.grpc.enabled": "true", "outputs.grpc.port": 0})
    async with Engine(config, feed=False, embedded=embedded, context_store=False) as eng:
        eng.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        eng.end_of_burst()
        yield eng


@pytest.fixture
async def channel(engine: Engine) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(engine.grpc.address) as ch:
        yield ch


def _stub(ch: grpc.aio.Channel) -> Any:
    return pb_grpc.FinancialPredictorStub(ch)  # type: ignore[no-untyped-call]


def _health(ch: grpc.aio.Channel, method: str) -> Any:
    call = ch.unary_unary if method == "Check" else ch.unary_stream
    return call(f"/grpc.health.v1.Health/{method}", request_serializer=encode_health_request,
                response_deserializer=decode_health_response)  # fmt: skip


async def test_get_symbols(channel: grpc.aio.Channel, engine: Engine) -> None:
    reply = await _stub(channel).GetSymbols(pb.GetSymbolsRequest())
    assert [(e.symbol, e.symbol_id) for e in reply.symbols] == list(
        zip(SYMBOLS, range(len(SYMBOLS)), strict=True)
    )
    assert reply.table_version == engine.table.version


async def test_predict_returns_a_packed_signal(channel: grpc.aio.Channel) -> None:
    stub = _stub(channel)
    reply = await stub.Predict(pb.PredictRequest(tick=pb.MarketTick(symbol="AAPL", price=200.0)))
    rec = unpack(reply.packed)  # CRC-checked
    assert reply.symbol == "AAPL" and reply.symbol_id == 0 and reply.sequence == 0
    assert int(rec["action"][0]) == reply.action
    assert reply.flags & 2  # neutral context: stale
    with_ctx = await stub.Predict(
        pb.PredictRequest(tick=pb.MarketTick(symbol="AAPL", price=200.0), context=daily_context(9))
    )
    assert with_ctx.context_version == 9 and not with_ctx.flags & 2


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (pb.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.PredictRequest(tick=pb.MarketTick(symbol="ZZZZ")), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.PredictRequest(tick=pb.MarketTick(symbol_id=99)), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.PredictRequest(tick=pb.MarketTick(symbol="AAPL", technical_indicators=[1.0] * 3)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.PredictRequest(tick=pb.MarketTick(symbol="MSFT")), grpc.StatusCode.FAILED_PRECONDITION),
        (
            pb.PredictRequest(
                tick=pb.MarketTick(symbol="AAPL"),
                context=pb.DailyContext(version=1, embedding_version=99, as_of_date="2024-01-02"),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
async def test_predict_rejects_bad_requests(
    channel: grpc.aio.Channel, request_: pb.PredictRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(channel).Predict(request_)
    assert err.value.code() == code and err.value.details()


async def test_undecodable_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary(
        "/relentless_fast.v1.FinancialPredictor/Predict",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\x0a\xff\xff\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_predict_answers_each_tick(channel: grpc.aio.Channel) -> None:
    stub = _stub(channel)
    ticks = [pb.MarketTick(symbol=s, price=10.0 + i) for i, s in enumerate(SYMBOLS)]
    replies = [r async for r in stub.StreamPredict(iter(ticks))]
    assert [r.symbol for r in replies] == list(SYMBOLS)


async def test_subscribe_streams_session_signals(channel: grpc.aio.Channel, engine: Engine) -> None:
    stub = _stub(channel)
    call = stub.Subscribe(pb.SubscribeRequest(symbols=["MSFT"]))
    await asyncio.sleep(0.2)  # the subscription is registered
    engine.on_frame(frame(trade("AAPL", 101.0, T0 + 1), trade("MSFT", 50.0, T0 + 2)), 0)
    engine.end_of_burst()
    reply = await asyncio.wait_for(call.read(), 5)
    assert reply.symbol == "MSFT" and reply.sequence == engine.sequence
    call.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Subscribe(pb.SubscribeRequest(symbols=["NOPE"])).read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_and_kill_over_grpc(channel: grpc.aio.Channel, engine: Engine) -> None:
    assert await _health(channel, "Check")("") == 1  # SERVING
    assert await _health(channel, "Check")("relentless_fast.v1.FinancialPredictor") == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _health(channel, "Check")("other.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    watch = _health(channel, "Watch")("")
    assert await watch.read() == 1
    # the stub generated from proto/ reaches the engine's hand-registered handler
    control = pb_grpc.EngineControlStub(channel)  # type: ignore[no-untyped-call]
    assert isinstance(await control.Kill(wrappers_pb2.StringValue(value="risk limit")), Empty)
    assert engine.killed and "risk limit" in engine.kill_reason
    assert await asyncio.wait_for(watch.read(), 5) == 2  # NOT_SERVING
    assert await _health(channel, "Check")("") == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _stub(channel).Predict(
            pb.PredictRequest(tick=pb.MarketTick(symbol="AAPL", price=1.0))
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    watch.cancel()
