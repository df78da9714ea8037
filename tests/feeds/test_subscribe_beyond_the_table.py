"""A runtime subscription to a symbol outside the symbol table brings frames but no rows: the
parser counts its messages as ``unknown_symbol`` drops (the engine's table is fixed at start)."""

from __future__ import annotations

import numpy as np
import pytest

from relentless_fast.feeds.base import FrameEncoding
from relentless_fast.feeds.replay_server import AlpacaReplayServer, ReplayServerConfig
from relentless_fast.records import Kind
from tests.feeds.conftest import json_frames, wait_until
from tests.feeds.test_alpaca_feed import config_for, running
from tests.feeds.test_feed_to_parser import SYMBOLS, ParserSink

pytest.importorskip("relentless_fast._tickparse", reason="native parser not built")


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_symbols_outside_the_table_are_counted_drops_not_rows(
    encoding: FrameEncoding,
) -> None:
    frames = json_frames(2000, seed=5, symbols=(*SYMBOLS, "TSLA"))
    server_config = ReplayServerConfig(
        frames=frames, rate_fps=2000, repeat=3, filter_by_subscription=True
    )
    async with AlpacaReplayServer(server_config) as server:
        sink = ParserSink(encoding)  # table: AAPL, MSFT, AMD
        parser = sink.parser
        config = config_for(server, encoding=encoding, trades=SYMBOLS, quotes=SYMBOLS)
        async with running(config, sink) as (feed, _):
            await wait_until(lambda: parser.frames >= 100, what="table symbols")
            assert parser.drops()["unknown_symbol"] == 0  # TSLA is filtered out
            await feed.subscribe(trades=["TSLA"], quotes=["TSLA"])
            counts = parser.record_counts.copy()
            await wait_until(lambda: parser.drops()["unknown_symbol"] >= 50, what="TSLA drops")
        assert {k: v for k, v in parser.drops().items() if v} == {
            "unknown_symbol": parser.drops()["unknown_symbol"]
        }
        assert parser.rings.n_symbols == len(SYMBOLS)  # no row slot for TSLA
        grew = parser.record_counts - counts
        assert grew[Kind.TRADE] > 0 and grew[Kind.QUOTE] > 0  # table symbols kept flowing
        assert np.all(parser.record_counts >= counts)
