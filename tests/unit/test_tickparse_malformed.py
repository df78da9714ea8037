"""Bad input: every error is counted by reason, good records around it are kept, nothing partial."""

from __future__ import annotations

import msgpack
import numpy as np
import orjson
import pytest

from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.feeds.synthetic import ALL_KINDS_MIX, SyntheticFeed
from relentless_fast.records import Kind
from tests.reference_decoder import Pair

SYMBOLS = ["AAPL", "AMD", "SPY"]
TS = "2021-02-22T15:51:44.208Z"
GOOD = {"T": "t", "S": "AAPL", "i": 1, "x": "D", "p": 126.55, "s": 1, "c": ["@"], "z": "C", "t": TS}


def _with(**changes: object) -> dict[str, object]:
    msg = dict(GOOD)
    for key, value in changes.items():
        if value is _DELETE:
            del msg[key]
        else:
            msg[key] = value
    return msg


_DELETE = object()

# (reason, bad message) pairs that orjson and msgpack can express: checked against the reference.
MESSAGE_CASES = [
    ("missing_field", _with(T=_DELETE)),
    ("missing_field", _with(T=None)),
    ("missing_field", _with(S=_DELETE)),
    ("missing_field", _with(p=_DELETE)),
    ("missing_field", _with(t=None)),
    ("missing_field", {"T": "q", "S": "AMD", "bp": 1.0, "ap": 1.0, "bs": 1, "t": TS}),
    ("mistyped_field", _with(T=5)),
    ("mistyped_field", _with(S=["AAPL"])),
    ("mistyped_field", _with(p="126.55")),
    ("mistyped_field", _with(p=True)),
    ("mistyped_field", _with(i=1.5)),
    ("mistyped_field", _with(c="@")),
    ("mistyped_field", _with(c=["@", 5])),
    ("mistyped_field", _with(x=68)),
    ("mistyped_field", _with(t=1614009104)),
    ("mistyped_field", _with(t={"s": 1})),
    ("unknown_type", _with(T="zz")),
    ("unknown_type", _with(T="n")),
    ("unknown_type", _with(T="")),
    ("overlong_symbol", _with(S="ABCDEFGHIJKLMNOP")),
    ("unknown_symbol", _with(S="MSFT")),
    ("unknown_symbol", _with(S="")),
    ("bad_price", _with(p=-0.01)),
    ("bad_size", _with(s=-1)),
    ("bad_timestamp", _with(t="2021-02-30T15:51:44Z")),
    ("bad_timestamp", _with(t="yesterday")),
    ("not_a_map", [GOOD]),
    ("not_a_map", "t"),
]


@pytest.mark.parametrize(("reason", "bad"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_bad_message_counted_and_neighbours_kept(reason: str, bad: object, encoding: str) -> None:
    pair = Pair(SYMBOLS)
    frame_msgs = [GOOD, bad, _with(i=2, S="AMD")]
    if encoding == "json":
        result = pair.feed(orjson.dumps(frame_msgs))
    else:
        result = pair.feed(msgpack.packb(frame_msgs), msgpack=True)
    assert dict(result.drops) == {reason: 1}
    assert len(result.records) == 2
    assert pair.parser.frame_drops == 1
    assert int(pair.rings.heads(Kind.TRADE).sum()) == 2


def test_message_failing_late_writes_nothing() -> None:
    rings = TickRings(len(SYMBOLS), 4)
    parser = TickParser(SYMBOLS, rings)
    parser.parse_json(orjson.dumps([GOOD]))
    before = rings.data(Kind.TRADE).view(np.uint8).copy()
    # fails on its last checked field (tape): every earlier field was valid
    parser.parse_json(orjson.dumps([_with(i=99, p=1.0, z=7)]))
    assert parser.drops()["mistyped_field"] == 1
    assert rings.heads(Kind.TRADE).tolist() == [1, 0, 0]
    assert rings.data(Kind.TRADE).view(np.uint8).tobytes() == before.tobytes()
    assert before[:, 46].tolist() == [0] * len(before), before[:, :48].tobytes()
    assert parser.seq == 1


SYNTAX_CASES = [
    ("malformed", b'{"T":"t"}'),  # not an array
    ("malformed", b'[{"T":"t",}]'),
    ("malformed", b'[{"T" "t"}]'),
    ("malformed", b'[{"T":"t" "p":1}]'),
    ("malformed", b'[{"T":"t","p":NaN}]'),
    ("malformed", b'[{"T":"t","p":01}]'),
    ("malformed", b'[{"T":"t","p":1.}]'),
    ("malformed", b'[{"T":"t","p":-}]'),
    ("malformed", b'[{"T":"t","p":1e}]'),
    ("malformed", b'[{"T":"\\x"}]'),
    ("malformed", b'[{"T":"a\x01b"}]'),
    ("malformed", b'[{"T":"\\ud800"}]'),
    ("malformed", b'[{"T":"\\udc00"}]'),
    ("malformed", b'[{"T":"\\u12G4"}]'),
    ("malformed", b'[{"T":tru}]'),
    ("malformed", b"[{T:1}]"),
    ("malformed", b"[,]"),
    ("malformed", b"[" * 70 + b"]" * 70),  # nesting deeper than the limit
    ("truncated", b""),
    ("truncated", b"   "),
    ("truncated", b"["),
    ("truncated", b'[{"T":"t"'),
    ("truncated", b'[{"T":"t","p":12'),
    ("truncated", b'[{"T":"\\u00'),
]


@pytest.mark.parametrize(("reason", "frame"), SYNTAX_CASES)
def test_syntax_errors_drop_the_rest_of_the_frame(reason: str, frame: bytes) -> None:
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))
    assert parser.parse_json(frame) == 0
    assert parser.drops()[reason] == 1
    assert int(parser.drop_counts.sum()) == 1


def test_records_before_a_syntax_error_are_kept() -> None:
    good = orjson.dumps([GOOD, _with(S="AMD")])
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))
    assert parser.parse_json(good[:-1] + b',{"T":"t",,}, {"T":"t"}]') == 2
    assert parser.drops() | {"malformed": 1} == parser.drops()
    assert parser.frame_counts[Kind.TRADE] == 2
    parser.parse_json(good + b"garbage")  # trailing bytes: the array's records stay
    assert parser.frame_counts[Kind.TRADE] == 2 and parser.drops()["malformed"] == 2


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_every_truncation_point_keeps_complete_messages_only(encoding: str) -> None:
    msgs = SyntheticFeed(SYMBOLS, seed=2, mix=ALL_KINDS_MIX).messages(6)
    encode = SyntheticFeed.json_frame if encoding == "json" else SyntheticFeed.msgpack_frame
    full = encode(msgs)
    # byte length of each complete prefix of messages, to know what a cut must keep
    ends = [len(encode(msgs[: k + 1])) - (1 if encoding == "json" else 0) for k in range(6)]
    if encoding == "msgpack":  # same array header for 1..15 elements: prefix lengths line up
        ends = [len(encode(msgs[: k + 1])) for k in range(6)]
    for cut in range(len(full)):
        rings = TickRings(len(SYMBOLS), 16)
        parser = TickParser(SYMBOLS, rings)
        frame = full[:cut]
        getattr(parser, f"parse_{encoding}")(frame)
        kept = sum(1 for end in ends if end <= cut)
        assert parser.seq == kept, (cut, frame[-20:])
        assert parser.drops()["truncated"] == 1, (cut, parser.drops())
        assert int(parser.drop_counts.sum()) == 1


MSGPACK_SYNTAX = [
    ("malformed", b"\x81\xa1T\xa1t"),  # top level map
    ("malformed", b"\x91\xc1"),  # never-used byte
    ("malformed", b"\x90\x00"),  # trailing bytes
    ("truncated", b"\x92"),  # array of 2 with no element
    ("truncated", b"\xdd\x00\x00"),  # array32 header cut
    ("truncated", b"\x91\x81\xa1T\xdb\x00\x00\x10\x00ab"),  # str32 longer than the frame
    ("not_a_map", b"\x91\x05"),
]


@pytest.mark.parametrize(("reason", "frame"), MSGPACK_SYNTAX)
def test_msgpack_syntax_errors(reason: str, frame: bytes) -> None:
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))
    parser.parse_msgpack(frame)
    assert parser.drops()[reason] == 1
    assert int(parser.drop_counts.sum()) == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -1.0])
def test_msgpack_non_finite_or_negative_prices_and_sizes(value: float) -> None:
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))
    t = msgpack.Timestamp(1614009104, 0)
    frame = msgpack.packb([_with(p=value, t=t), _with(s=value, t=t), _with(t=t)])
    assert parser.parse_msgpack(frame) == 1
    assert parser.drops()["bad_price"] == 1 and parser.drops()["bad_size"] == 1
    assert np.isfinite(parser.rings.data(Kind.TRADE)["price"]).all()


def test_json_overflowing_numbers_are_bad_prices_not_crashes() -> None:
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))
    frame = orjson.dumps([GOOD]).replace(b"126.55", b"1e999")
    parser.parse_json(frame)
    assert parser.drops()["bad_price"] == 1
    frame = orjson.dumps([GOOD]).replace(b'"i":1', b'"i":99999999999999999999')
    parser.parse_json(frame)
    assert parser.drops()["mistyped_field"] == 1
