"""End to end on loopback: replay WebSocket server -> engine -> UDP publisher -> UDP consumer."""

from __future__ import annotations

import asyncio

import numpy as np

from relentless_fast.engine import Engine
from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig
from relentless_fast.feeds.base import Feed, FrameSink
from relentless_fast.feeds.replay_server import AlpacaReplayServer, ReplayServerConfig
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.outputs.consumer import UdpConsumer, UdpSource
from tests.engine.conftest import SYMBOLS, make_config


async def test_replay_server_to_udp_consumer_with_clean_shutdown(
    embedded: EmbeddedBackend, frames: list[bytes]
) -> None:
    server = AlpacaReplayServer(ReplayServerConfig(frames=frames[:200]))
    await server.start()
    consumer = UdpConsumer(UdpSource(host="127.0.0.1", port=0))
    await consumer.start()
    port = consumer.address[1]
    config = make_config(
        **{
            "outputs.udp.enabled": "true",
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": port,
            "outputs.udp.rerequest_port": -1,
            "feed.source": "alpaca",
            "feed.url": server.url,
        }
    )
    alpaca = AlpacaFeedConfig(
        url=server.url, key_id="test-key", secret_key="test-secret", trades=SYMBOLS, quotes=SYMBOLS
    )

    def feed(sink: FrameSink) -> Feed:
        return AlpacaFeed(alpaca, sink)

    engine = Engine(config, feed=feed, embedded=embedded, context_store=False)
    try:
        async with engine:
            for _ in range(500):
                if engine.counters.frames >= 200:
                    break
                await asyncio.sleep(0.01)
            assert engine.counters.frames == 200
        # stop() flushed, sent end of session; the consumer sees every signal and the end
        await asyncio.wait_for(consumer.run(), 5)
    finally:
        consumer.close()
        await server.stop()
    stats = consumer.stats
    assert stats.end_of_session and stats.clean
    assert stats.signals == engine.counters.signals_emitted > 0
    assert stats.last_seq == engine.sequence
    assert stats.session == engine.session
    assert engine.udp.counters.signals_sent == stats.signals
    assert np.isfinite(list(stats.latency_us().values())).all()
