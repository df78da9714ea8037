"""Edge cases around the parser's early symbol lookup and prefetch (kept exact vs the reference)."""

from __future__ import annotations

import msgpack
import orjson

from relentless_fast.records import Kind
from tests.reference_decoder import Pair

SYMBOLS = ["AAPL", "MSFT", "BRK.B", "GOOGL"]
T = "2024-07-24T14:00:00.123456789Z"


def _trade(sym: str, price: float, **extra: object) -> dict[str, object]:
    return {"T": "t", "S": sym, "i": 7, "x": "D", "p": price, "s": 2, "t": T, **extra}


def test_symbol_before_type_and_type_last() -> None:
    pair = Pair(SYMBOLS)
    frame = b'[{"S":"MSFT","T":"t","i":1,"x":"D","p":10.5,"s":1,"t":"' + T.encode() + b'"},' \
        b'{"p":11.5,"s":1,"S":"AAPL","i":2,"x":"D","t":"' + T.encode() + b'","T":"t"}]'  # fmt: skip
    assert len(pair.feed(frame).records) == 2
    assert pair.rings.last(Kind.TRADE, 1, 1)["price"][0] == 10.5
    assert pair.rings.last(Kind.TRADE, 0, 1)["price"][0] == 11.5


def test_duplicate_symbol_key_follows_json_last_wins() -> None:
    # orjson (the reference) keeps the last value of a duplicated key; so must the parser, even
    # though the first "S" already triggered the early lookup of another symbol's ring slots.
    pair = Pair(SYMBOLS)
    frame = b'[{"T":"t","S":"AAPL","i":1,"x":"D","p":10.5,"s":1,"S":"GOOGL","t":"' + T.encode()
    frame += b'"}]'
    result = pair.feed(frame)
    assert [(k, sid) for k, sid, _ in result.records] == [(Kind.TRADE, 3)]
    assert pair.rings.heads(Kind.TRADE).tolist() == [0, 0, 0, 1]


def test_reused_buffer_mutated_between_frames() -> None:
    pair = Pair(SYMBOLS)
    buf = bytearray(orjson.dumps([_trade("AAPL", 1.25), _trade("BRK.B", 2.5)]))
    pair.feed(buf)
    second = orjson.dumps([_trade("MSFT", 3.75), _trade("GOOGL", 4.0)])
    buf[:] = second  # same object, new content: nothing cached from the last frame may leak
    pair.feed(buf)
    assert pair.rings.heads(Kind.TRADE).tolist() == [1, 1, 1, 1]
    assert pair.rings.last(Kind.TRADE, 3, 1)["price"][0] == 4.0


def test_msgpack_after_json_with_unknown_then_known_symbol() -> None:
    pair = Pair(SYMBOLS)
    pair.feed(orjson.dumps([_trade("TSLA", 1.0), _trade("AAPL", 2.0)]))
    msg = _trade("MSFT", 3.0)
    msg["t"] = msgpack.Timestamp(1_721_829_600, 123_456_789)
    pair.feed(msgpack.packb([_trade("NOPE", 9.0) | {"t": msg["t"]}, msg]), msgpack=True)
    assert pair.rings.heads(Kind.TRADE).tolist() == [1, 1, 0, 0]
    assert pair.parser.drops()["unknown_symbol"] == 2
