"""The kernel's last-price and event-time arrays, which the engine turns into absolute prices."""

from __future__ import annotations

import math

import orjson

from relentless_fast._features import FeatureKernel
from relentless_fast._tickparse import TickParser, TickRings


def _frame(*msgs: dict[str, object]) -> bytes:
    return orjson.dumps(list(msgs))


def test_last_price_and_event_time_follow_the_stream() -> None:
    rings = TickRings(2, 64)
    parser = TickParser(["AAPL", "MSFT"], rings)
    kernel = FeatureKernel(rings, 2)
    assert math.isnan(kernel.last_price[0]) and kernel.event_ts_ns[0] == 0

    t0, t1, t2 = "2024-07-24T14:00:00Z", "2024-07-24T14:00:01.5Z", "2024-07-24T14:00:02Z"
    n = parser.parse_json(
        _frame(
            {"T": "t", "S": "AAPL", "i": 1, "x": "D", "p": 10.5, "s": 3, "t": t0},
            {"T": "t", "S": "AAPL", "i": 2, "x": "D", "p": 10.75, "s": 1, "t": t1},
            {"T": "q", "S": "MSFT", "bp": 400.0, "bs": 1, "ap": 400.2, "as": 2, "t": t2},
        )
    )
    kernel.update(parser.touched, n)
    assert kernel.last_price[0] == 10.75
    assert kernel.event_ts_ns[0] == 1_721_829_601_500_000_000
    # a quote moves the event time but gives no trade price
    assert math.isnan(kernel.last_price[1])
    assert kernel.event_ts_ns[1] == 1_721_829_602_000_000_000

    kernel.reset(0)
    assert math.isnan(kernel.last_price[0]) and kernel.event_ts_ns[0] == 0
