"""inference.backend = "grpc": the engine calls the remote backend; failures fall back, flagged."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from relentless_fast.engine import Engine
from relentless_fast.inference.batch import FLAG_FALLBACK
from relentless_fast.inference.embedded import EmbeddedBackend
from tests.engine.conftest import make_config
from tests.engine.test_engine import T0, Collector, frame, trade


class DownServer:
    """A TF Serving address whose Predict always answers UNAVAILABLE (counts the calls)."""

    def __init__(self) -> None:
        self.calls = 0
        self.server = grpc.aio.server()

    async def _predict(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, "model server is down (test)")
        return b""

    async def start(self) -> int:
        handler = grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(self._predict)},
        )
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port


async def test_remote_failures_are_served_by_the_embedded_fallback(
    embedded: EmbeddedBackend,
) -> None:
    down = DownServer()
    port = await down.start()
    got = Collector()
    config = make_config(
        **{"inference.backend": "grpc", "inference.grpc_target": f"127.0.0.1:{port}"}
    )
    engine = Engine(config, feed=False, embedded=embedded, on_signals=got, context_store=False)
    try:
        async with engine:
            # warm-up already called the server; every later batch fails over to LiteRT
            engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
            engine.end_of_burst()
            await engine.pipeline.drain()  # type: ignore[union-attr]
    finally:
        await down.server.stop(0)
    rec = got.records()
    assert rec.shape[0] == 1 and rec["flags"][0] & FLAG_FALLBACK
    assert down.calls >= 1 and engine.inference_counters.rows_fallback == 1
