"""End to end on loopback: replay WebSocket server -> engine -> UDP publisher -> UDP consumer."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from relentless_fast.engine import Engine
from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig
from relentless_fast.feeds.base import Feed, FrameSink
from relentless_fast.feeds.replay_server import AlpacaReplayServer, ReplayServerConfig
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.outputs.consumer import UdpConsumer, UdpSource
from tests.engine.conftest import SYMBOLS, make_config
from tests.engine.test_engine import Collector


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
    feed_counters = engine.snapshot()["feed"]  # the Alpaca client's own counters included
    assert feed_counters["data_frames"] >= 200 and feed_counters["changes_requested"] == 0


async def test_every_output_carries_the_session_sequence(
    embedded: EmbeddedBackend, frames: list[bytes]
) -> None:
    """UDP (all), UDP (changes only) and TCP (all): framing sequence == signal sequence."""
    from relentless_fast.engine.sources import SyntheticSource
    from relentless_fast.outputs.consumer import TcpConsumer

    seen: dict[str, list[bytes]] = {"udp": [], "changes": [], "tcp": []}

    def keep(name: str) -> Any:
        return lambda seq, record, recv_ns: seen[name].append(record.tobytes())

    udp_all = UdpConsumer(UdpSource(host="127.0.0.1", port=0), on_signal=keep("udp"))
    await udp_all.start()
    config = make_config(
        **{
            "outputs.udp.enabled": "true",
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": udp_all.address[1],
            "outputs.udp.rerequest_port": 0,
            "outputs.tcp.enabled": "true",
            "outputs.tcp.port": 0,
            "engine.session": "SEQTEST",
        }
    )
    engine = Engine(config, feed=lambda s: SyntheticSource(frames[:150], s, yield_every=4),
                    embedded=embedded, context_store=False)  # fmt: skip
    got = Collector()
    engine.add_listener(got)
    await engine.start()
    tcp = TcpConsumer(*engine.tcp.address, on_signal=keep("tcp"), session="SEQTEST", start_seq=1)
    tcp_task = asyncio.create_task(tcp.run(seconds=20))
    await engine.wait()
    await engine.stop()
    await asyncio.wait_for(udp_all.run(), 5)
    await asyncio.wait_for(tcp_task, 10)
    udp_all.close()
    emitted = got.records()
    n = emitted.shape[0]
    assert n == engine.sequence > 0
    for name, consumer in (("udp", udp_all), ("tcp", tcp)):
        stats = consumer.stats
        assert stats.clean and stats.end_of_session, name
        assert (stats.first_seq, stats.last_seq, stats.signals) == (1, n, n), name
        assert b"".join(seen[name]) == emitted.tobytes(), name  # same signals, same numbers


async def test_changes_policy_numbers_its_own_stream(
    embedded: EmbeddedBackend, frames: list[bytes]
) -> None:
    from relentless_fast.engine.sources import SyntheticSource

    consumer = UdpConsumer(UdpSource(host="127.0.0.1", port=0))
    await consumer.start()
    config = make_config(
        **{
            "outputs.udp.enabled": "true",
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": consumer.address[1],
            "outputs.udp.rerequest_port": -1,
            "outputs.udp.emission": "changes",
        }
    )
    engine = Engine(config, feed=lambda s: SyntheticSource(frames, s), embedded=embedded,
                    context_store=False)  # fmt: skip
    async with engine:
        await engine.wait()
    await asyncio.wait_for(consumer.run(), 5)
    consumer.close()
    stats = consumer.stats
    assert stats.clean and stats.end_of_session
    assert 0 < stats.signals < engine.sequence  # only action changes are published ...
    assert (stats.first_seq, stats.last_seq) == (1, stats.signals)  # ... numbered without gaps
