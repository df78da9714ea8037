"""The feed's borrowed payloads drive the compiled tick parser exactly like the original bytes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig
from relentless_fast.feeds.base import BytesLike, FrameEncoding, NullSink
from relentless_fast.feeds.replay_server import AlpacaReplayServer, ReplayServerConfig
from relentless_fast.records import Kind
from tests.feeds.conftest import json_frames, wait_until

tickparse = pytest.importorskip("relentless_fast._tickparse", reason="native parser not built")
SYMBOLS = ("AAPL", "MSFT", "AMD")


class ParserSink(NullSink):
    """What the engine does per frame: hand the borrowed view to the parser, keep nothing."""

    def __init__(self, encoding: FrameEncoding) -> None:
        self.parser = tickparse.TickParser(list(SYMBOLS), tickparse.TickRings(len(SYMBOLS)))
        self.parse = (
            self.parser.parse_msgpack
            if encoding is FrameEncoding.MSGPACK
            else self.parser.parse_json
        )

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        self.parse(payload)


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_parsed_rings_match_a_direct_parse(encoding: FrameEncoding) -> None:
    frames = json_frames(300, seed=11, symbols=SYMBOLS)
    async with AlpacaReplayServer(ReplayServerConfig(frames=frames)) as server:
        sink = ParserSink(encoding)
        config = AlpacaFeedConfig(
            url=server.url,
            key_id="test-key",
            secret_key="test-secret",
            quotes=SYMBOLS,
            trades=SYMBOLS,
            encoding=encoding,
        )
        feed = AlpacaFeed(config, sink)
        task = asyncio.create_task(feed.run())
        await wait_until(lambda: sink.parser.frames == 300, what="300 parsed frames")
        feed.stop()
        await task
        direct = ParserSink(encoding)
        for frame in server.frames_for(encoding):
            direct.parse(frame)
    live, ref = sink.parser, direct.parser
    assert live.drops() == ref.drops() and sum(live.drops().values()) == 0
    assert np.array_equal(live.record_counts, ref.record_counts)
    assert live.record_counts[Kind.TRADE] + live.record_counts[Kind.QUOTE] > 300
    for kind in (Kind.TRADE, Kind.QUOTE):
        assert np.array_equal(live.rings.heads(kind), ref.rings.heads(kind))
        assert live.rings.data(kind).tobytes() == ref.rings.data(kind).tobytes()
