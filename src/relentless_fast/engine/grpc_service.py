"""The engine's gRPC server: ``FinancialPredictor``, the standard health service, the kill switch.

Services (one ``grpc.aio`` server on the engine's loop, ``outputs.grpc.host:port``):

- ``relentless_fast.v1.FinancialPredictor`` (``proto/relentless_fast.proto``):
  ``Predict`` (one tick, optional context, one signal), ``StreamPredict`` (a signal per tick, for
  the risk system), ``Subscribe`` (the live session stream) and ``GetSymbols``.
  ``Predict``/``StreamPredict`` replies are answers, not part of the session stream: their
  ``sequence`` is 0. ``Subscribe`` carries the session sequence of every signal.
- ``grpc.health.v1.Health`` (``Check``, ``Watch``): ``SERVING`` while the engine runs and its
  kill switch is not tripped, else ``NOT_SERVING``; service names ``""`` and
  ``relentless_fast.v1.FinancialPredictor``; any other name is ``NOT_FOUND``. The two messages
  are encoded here by hand (wire-identical to ``grpcio-health-checking``).
- ``relentless_fast.v1.EngineControl/Kill``: request ``google.protobuf.StringValue`` (the reason),
  reply ``google.protobuf.Empty``; trips the kill switch.

Status codes: an undecodable request, an unknown symbol, a feature row of the wrong width or a
non-finite price is ``INVALID_ARGUMENT``; a context of another embedding version or a symbol with
no price yet is ``FAILED_PRECONDITION``; a killed or stopping engine is ``UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc
import numpy as np
from google.protobuf import empty_pb2, wrappers_pb2
from google.protobuf.message import DecodeError

from relentless_fast._emit import fill_model_fields
from relentless_fast._proto import relentless_fast_pb2 as pb
from relentless_fast.context.store import ContextVersionError, LoadedContext
from relentless_fast.engine.context_state import FusedContext
from relentless_fast.signals import (
    FLAG_CONTEXT_STALE,
    SIGNAL_RECORD_DTYPE,
    SIGNAL_SIZE,
    pack,
    unpack,
)

log = logging.getLogger(__name__)

PREDICTOR: Final = "relentless_fast.v1.FinancialPredictor"
HEALTH: Final = "grpc.health.v1.Health"
CONTROL: Final = "relentless_fast.v1.EngineControl"

if TYPE_CHECKING:  # generic only in the type stubs
    _Ctx = grpc.aio.ServicerContext[Any, Any]
    _Handler = grpc.GenericRpcHandler[Any, Any]

SERVING: Final = 1
NOT_SERVING: Final = 2


class _BadRequestError(Exception):
    """An undecodable request (turned into INVALID_ARGUMENT by the handler)."""


def _decoder(cls: Any) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        msg = cls()
        try:
            msg.ParseFromString(data)
        except DecodeError as exc:
            return _BadRequestError(str(exc))
        return msg

    return decode


def _encode(msg: Any) -> bytes:
    data: bytes = msg.SerializeToString()
    return data


# -- health messages (grpc.health.v1), by hand ----------------------------------------------------


def decode_health_request(data: bytes) -> str | _BadRequestError:
    """``HealthCheckRequest{string service = 1}`` -> the service name."""
    service = ""
    i = 0
    try:
        while i < len(data):
            tag = data[i]
            i += 1
            wire = tag & 7
            length, i = _varint(data, i) if wire in (0, 2) else (0, i)
            if wire == 2:
                if tag >> 3 == 1:
                    service = data[i : i + length].decode()
                i += length
            elif wire != 0:
                return _BadRequestError(f"unsupported wire type {wire}")
        if i > len(data):
            return _BadRequestError("truncated")
    except (IndexError, UnicodeDecodeError) as exc:
        return _BadRequestError(str(exc))
    return service


def encode_health_response(status: int) -> bytes:
    """``HealthCheckResponse{ServingStatus status = 1}``."""
    return bytes((0x08, status))


def encode_health_request(service: str) -> bytes:
    """``HealthCheckRequest`` (for clients and tests)."""
    raw = service.encode()
    if not raw:
        return b""
    n = len(raw)
    length = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return b"\x0a" + bytes(length) + raw


def decode_health_response(data: bytes) -> int:
    """``HealthCheckResponse`` -> status (0 UNKNOWN when absent, as proto3 encodes it)."""
    return data[1] if len(data) >= 2 and data[0] == 0x08 else 0


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


class EngineGrpcServer:
    """The gRPC server of one :class:`~relentless_fast.engine.core.Engine`."""

    def __init__(self, engine: Any, *, host: str = "127.0.0.1", port: int = 8600) -> None:
        self.engine = engine
        self.host = host
        self.requested_port = port
        self.port = 0
        self.subscriber_drops = 0
        self._server: grpc.aio.Server | None = None
        self._health_waiters: set[asyncio.Queue[int]] = set()
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._stopping = False
        engine.add_health_listener(self._on_health)
        engine.add_listener(self._on_signals)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self._predictor(), self._health(), self._control()))
        self.port = server.add_insecure_port(f"{self.host}:{self.requested_port}")
        if self.port == 0:
            raise OSError(f"gRPC: cannot listen on {self.host}:{self.requested_port}")
        await server.start()
        self._server = server

    async def stop(self, grace_s: float = 1.0) -> None:
        self._stopping = True
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        for hq in list(self._health_waiters):
            with contextlib.suppress(asyncio.QueueFull):
                hq.put_nowait(NOT_SERVING)
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None

    # -- handlers ---------------------------------------------------------------------------

    def _predictor(self) -> _Handler:
        return grpc.method_handlers_generic_handler(
            PREDICTOR,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(
                    self.predict, _decoder(pb.PredictRequest), _encode
                ),
                "StreamPredict": grpc.stream_stream_rpc_method_handler(
                    self.stream_predict, _decoder(pb.MarketTick), _encode
                ),
                "Subscribe": grpc.unary_stream_rpc_method_handler(
                    self.subscribe, _decoder(pb.SubscribeRequest), _encode
                ),
                "GetSymbols": grpc.unary_unary_rpc_method_handler(
                    self.get_symbols, _decoder(pb.GetSymbolsRequest), _encode
                ),
            },
        )

    def _health(self) -> _Handler:
        return grpc.method_handlers_generic_handler(
            HEALTH,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.health_check, decode_health_request, bytes
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.health_watch, decode_health_request, bytes
                ),
            },
        )

    def _control(self) -> _Handler:
        return grpc.method_handlers_generic_handler(
            CONTROL,
            {
                "Kill": grpc.unary_unary_rpc_method_handler(
                    self.kill, _decoder(wrappers_pb2.StringValue), _encode
                )
            },
        )

    # -- FinancialPredictor -----------------------------------------------------------------

    async def predict(self, request: Any, context: _Ctx) -> pb.TradingSignal:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        if not self.engine.serving:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "engine is not serving")
        if not request.HasField("tick"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request has no tick")
        fused = None
        if request.HasField("context"):
            try:
                loaded = LoadedContext.from_context(request.context)
            except ContextVersionError as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad context: {exc}")
            fused = FusedContext.from_loaded(loaded, self.engine.table)
        return await self._predict_tick(request.tick, fused, context)

    async def stream_predict(
        self, requests: AsyncIterator[Any], context: _Ctx
    ) -> AsyncIterator[pb.TradingSignal]:
        async for tick in requests:
            if isinstance(tick, _BadRequestError):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed tick: {tick}")
            if not self.engine.serving:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "engine is not serving")
            yield await self._predict_tick(tick, None, context)

    async def subscribe(self, request: Any, context: _Ctx) -> AsyncIterator[pb.TradingSignal]:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        table = self.engine.table
        wanted: set[int] | None = None
        if request.symbols:
            unknown = [s for s in request.symbols if s not in table]
            if unknown:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unknown symbols: {', '.join(unknown)}"
                )
            wanted = {table.id_of(s) for s in request.symbols}
        if not self.engine.serving:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "engine is not serving")
        limit = self.engine.config.outputs.grpc.subscriber_queue_signals
        q: asyncio.Queue[bytes | None] = asyncio.Queue(max(1, limit // 8))
        self._subscribers.add(q)
        try:
            while True:
                data = await q.get()
                if data is None:
                    return
                records = unpack(data)
                for i in range(records.shape[0]):
                    rec = records[i]
                    if wanted is not None and int(rec["symbol_id"]) not in wanted:
                        continue
                    if request.non_hold_only and int(rec["action"]) == 0:
                        continue
                    yield _signal_message(rec, data[i * SIGNAL_SIZE : (i + 1) * SIGNAL_SIZE], table)
        finally:
            self._subscribers.discard(q)

    async def get_symbols(self, request: Any, context: _Ctx) -> pb.SymbolTable:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        table = self.engine.table
        return pb.SymbolTable(
            symbols=[pb.SymbolEntry(symbol=s, symbol_id=i) for i, s in enumerate(table.symbols)],
            table_version=table.version,
        )

    # -- health and control -------------------------------------------------------------------

    def _status_of(self, service: str) -> int | None:
        if service not in ("", PREDICTOR):
            return None
        return SERVING if self.engine.serving and not self._stopping else NOT_SERVING

    async def health_check(self, request: Any, context: _Ctx) -> bytes:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        status = self._status_of(request)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request!r}")
        return encode_health_response(status)

    async def health_watch(self, request: Any, context: _Ctx) -> AsyncIterator[bytes]:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        status = self._status_of(request)
        if status is None:
            yield encode_health_response(3)  # SERVICE_UNKNOWN, as the reference Watch does
            return
        q: asyncio.Queue[int] = asyncio.Queue(16)
        self._health_waiters.add(q)
        try:
            yield encode_health_response(status)
            last = status
            while not self._stopping:
                new = await q.get()
                if new != last:
                    last = new
                    yield encode_health_response(new)
        finally:
            self._health_waiters.discard(q)

    async def kill(self, request: Any, context: _Ctx) -> empty_pb2.Empty:
        if isinstance(request, _BadRequestError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request}")
        self.engine.kill(f"gRPC: {request.value or 'no reason given'}")
        return empty_pb2.Empty()

    def _on_health(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for q in list(self._health_waiters):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(status)

    def _on_signals(self, batch: Any) -> None:
        if not self._subscribers:
            return
        data = bytes(batch.packed)
        for q in self._subscribers:
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                self.subscriber_drops += batch.count

    # -- one-off predictions --------------------------------------------------------------------

    async def _predict_tick(
        self, tick: Any, fused: FusedContext | None, context: _Ctx
    ) -> pb.TradingSignal:
        try:
            return self._predict_now(tick, fused)
        except _AbortError as exc:
            await context.abort(exc.code, exc.details)
            raise  # unreachable: abort raises

    def _predict_now(self, tick: Any, fused: FusedContext | None) -> pb.TradingSignal:
        engine = self.engine
        table = engine.table
        if tick.symbol:
            sid = table.get(tick.symbol)
            if sid is None:
                raise _AbortError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unknown symbol {tick.symbol!r}"
                )
        else:
            sid = int(tick.symbol_id)
            if sid >= len(table):
                raise _AbortError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"symbol_id {sid} out of range 0..{len(table) - 1}",
                )
        n_features = engine.embedded.n_features
        if len(tick.technical_indicators) == 0:
            row = engine.kernel.row(sid)
        elif len(tick.technical_indicators) == n_features:
            row = np.asarray(tick.technical_indicators, np.float32)
        else:
            raise _AbortError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"technical_indicators has {len(tick.technical_indicators)} values, "
                f"the model takes {n_features} (or send none to use the engine's row)",
            )
        if not np.isfinite(row).all():
            raise _AbortError(grpc.StatusCode.INVALID_ARGUMENT, "technical_indicators not finite")
        price = float(tick.price) if tick.price else float(engine.kernel.last_price[sid])
        if not math.isfinite(price) or price <= 0:
            if tick.price:
                raise _AbortError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"price {tick.price} is not > 0"
                )
            raise _AbortError(grpc.StatusCode.FAILED_PRECONDITION, "no price yet for this symbol")
        ctx = fused if fused is not None else engine.context
        out = engine.embedded.run("stable", row[None, :], ctx.rows[sid : sid + 1])
        rec = np.zeros(1, SIGNAL_RECORD_DTYPE)
        fill_model_fields(rec, out, np.full(1, price))
        rec["symbol_id"] = sid
        rec["event_ts_ns"] = max(0, int(tick.timestamp))
        rec["emit_ts_ns"] = time.time_ns()
        rec["strategy_id"] = engine.config.engine.strategy_id
        rec["model_version"] = engine.embedded.version("stable")
        rec["flags"] = FLAG_CONTEXT_STALE if ctx.stale else 0
        rec["context_version"] = ctx.version
        packed = pack(rec)
        return _signal_message(rec[0], bytes(packed), table)


class _AbortError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _signal_message(rec: Any, packed: bytes, table: Any) -> pb.TradingSignal:
    sid = int(rec["symbol_id"])
    return pb.TradingSignal(
        action=int(rec["action"]),  # type: ignore[arg-type]
        symbol_id=sid,
        sequence=int(rec["sequence"]),
        event_ts_ns=int(rec["event_ts_ns"]),
        emit_ts_ns=int(rec["emit_ts_ns"]),
        confidence=float(rec["confidence"]),
        price_target=float(rec["price_target"]),
        stop_loss=float(rec["stop_loss"]),
        position_size=float(rec["position_size"]),
        risk_score=int(rec["risk_score"]),
        urgency=int(rec["urgency"]),
        strategy_id=int(rec["strategy_id"]),
        model_version=int(rec["model_version"]),
        flags=int(rec["flags"]),
        context_version=int(rec["context_version"]),
        symbol=table.symbol_of(sid) if sid < len(table) else "",
        packed=packed,
    )
