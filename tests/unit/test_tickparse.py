"""Tick parser: every message kind parsed exactly like the orjson/msgpack reference decoder."""

from __future__ import annotations

import json
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import numpy as np
import orjson
import pytest

from relentless_fast import SymbolTable
from relentless_fast._tickparse import DROP_REASONS, FIELDS, TickParser, TickRings
from relentless_fast.feeds.synthetic import ALL_KINDS_MIX, SyntheticFeed, format_rfc3339
from relentless_fast.records import DTYPES, N_KINDS, Kind
from tests.reference_decoder import Pair, ReferenceDecoder, parse_rfc3339

SYMBOLS = ["AAPL", "AMD", "SPY", "EEM", "GOOGL", "IONM", "INAQU", "FAKEPACA", "VOO", "BRK.B"]


def _shared_alpaca(shared_fixtures: Path) -> Path:
    path = shared_fixtures / "alpaca"
    if not path.is_dir():
        pytest.skip(f"Alpaca fixtures not found at {path}")
    return path


# -- documented frames -------------------------------------------------------------------------


def test_documented_server_frames_parse_exactly(shared_fixtures: Path) -> None:
    pair = Pair(SYMBOLS)
    lines = (_shared_alpaca(shared_fixtures) / "server_frames_documented.jsonl").read_text()
    frames = [json.loads(line)["frame"].encode() for line in lines.splitlines() if line.strip()]
    controls = data = 0
    for frame in frames:
        result = pair.feed(frame)
        controls += len(result.controls)
        data += len(result.records)
    assert not pair.parser.drop_counts.any(), pair.parser.drops()
    assert controls > 10 and data >= 11  # every documented frame was control or data
    # the 3-trade frame of 2023-04-06, field by field
    trades = pair.rings.last(Kind.TRADE, SYMBOLS.index("AAPL"), 3)
    assert trades["trade_id"].tolist() == [628, 75, 1465]
    assert trades["price"].tolist() == [162.92, 162.92, 162.91]
    assert trades["conditions"].tolist() == [b"@FTI"] * 3
    assert trades["exchange"].tolist() == [ord("K"), ord("Z"), ord("P")]
    # "2023-04-06T11:54:26.83915973Z" has 8 fractional digits
    assert trades["ts_ns"][2] == 1680782066_839159730


def test_documented_message_examples_every_kind(shared_fixtures: Path) -> None:
    path = _shared_alpaca(shared_fixtures) / "message_examples_documented.json"
    examples = json.loads(path.read_text())
    pair = Pair(SYMBOLS)
    kinds = set()
    for example in examples:
        frame = orjson.dumps([example["message"]])
        result = pair.feed(frame)
        assert len(result.records) == 1, example
        kinds.add(result.records[0][0])
        pair.feed(msgpack.packb([_to_msgpack_ts(example["message"])]), msgpack=True)
    assert kinds == set(Kind)
    assert not pair.parser.drop_counts.any()
    bar = pair.rings.last(Kind.BAR, SYMBOLS.index("SPY"), 10)
    assert bar["bar_type"].tobytes() == b"bbddbb"  # each example in JSON then msgpack
    assert np.isnan(bar["vwap"][0]) and bar["trade_count"][0] == 0  # example without n / vw
    assert bar["vwap"][-1] == 389.062639 and bar["trade_count"][-1] == 461
    status = pair.rings.last(Kind.STATUS, SYMBOLS.index("AAPL"), 1)[0]
    assert status["status_code"] == b"H" and status["reason_code"] == b"T12"


def _to_msgpack_ts(message: dict[str, object]) -> dict[str, object]:
    out = dict(message)
    ns = parse_rfc3339(str(message["t"]))
    out["t"] = msgpack.Timestamp(ns // 10**9, ns % 10**9)
    return out


# -- generated streams -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack-ours", "msgpack-package"])
def test_generated_stream_every_kind_matches_reference(encoding: str) -> None:
    feed = SyntheticFeed(SYMBOLS, seed=7, mix=ALL_KINDS_MIX)
    pair = Pair(SYMBOLS, capacity=8192)
    total = 0
    for messages in feed.frames(300, 1, 50):
        if encoding == "json":
            frame = SyntheticFeed.json_frame(messages)
        elif encoding == "msgpack-ours":
            frame = SyntheticFeed.msgpack_frame(messages)
        else:
            frame = msgpack.packb([_package_ts(m) for m in messages])
        total += len(pair.feed(frame, msgpack=encoding != "json").records)
    assert total > 5000
    assert not pair.parser.drop_counts.any()
    assert int(pair.parser.record_counts.sum()) == total == pair.parser.seq
    for kind in Kind:
        assert pair.parser.record_counts[kind] > 0, kind


def _package_ts(message: dict[str, object]) -> dict[str, object]:
    out = dict(message)
    ns = int(message["t"])  # type: ignore[call-overload]
    out["t"] = msgpack.Timestamp(ns // 10**9, ns % 10**9)
    return out


def test_json_and_msgpack_write_identical_rings() -> None:
    frames = SyntheticFeed(SYMBOLS, seed=11, mix=ALL_KINDS_MIX).frames(100)
    sides = []
    for encode, method in ((SyntheticFeed.json_frame, "parse_json"),
                           (SyntheticFeed.msgpack_frame, "parse_msgpack")):  # fmt: skip
        rings = TickRings(len(SYMBOLS), 512)
        parser = TickParser(SymbolTable(SYMBOLS), rings)
        for messages in frames:
            getattr(parser, method)(encode(messages))
        sides.append(rings)
    for kind in Kind:
        assert np.array_equal(sides[0].heads(kind), sides[1].heads(kind))
        assert sides[0].data(kind).tobytes() == sides[1].data(kind).tobytes()


def test_keys_in_any_order_whitespace_and_unknown_keys() -> None:
    base = {"T": "q", "S": "AMD", "bx": "U", "bp": 87.66, "bs": 1, "ax": "Q", "ap": 87.68, "as": 4,
            "c": ["R"], "z": "C", "t": "2021-02-22T15:51:45.335689322Z"}  # fmt: skip
    shuffled = dict(reversed(list(base.items())))
    shuffled["r"] = {"nested": [1, 2, {"x": "y"}], "s": "ignored"}
    shuffled["zz"] = None
    pretty = json.dumps([shuffled], indent=3).encode()  # newlines and spaces everywhere
    pair = Pair(SYMBOLS)
    for frame in (orjson.dumps([base]), pretty, b"\n\t " + pretty + b" \r\n"):
        assert len(pair.feed(frame).records) == 1
    escaped = b'[{"\\u0054":"\\u0071","S":"A\\u004dD","bp":87.66,"ap":87.68,"bs":1,"as":4,' \
        b'"z":"\\"","t":"2021-02-22T15:51:45Z"}]'  # fmt: skip
    assert len(pair.feed(escaped).records) == 1
    assert pair.rings.last(Kind.QUOTE, 1, 1)["tape"][0] == ord('"')


def test_numbers_as_integer_literals_exponents_and_hard_floats() -> None:
    pair = Pair(SYMBOLS)
    prices = ["136", "0", "1e2", "1.5E-3", "123456789012345678901234", "0.30000000000000004",
              "2.2250738585072014e-308", "4.9e-324", "1.7976931348623157e308",
              "9007199254740993", "0.1000000000000000055511151231257827", "126.550000000000000001",
              "-0.0", "5e-400", "0.000000000000000000001234", "1234567890123456789.5",
              "12345678901234567890", "0.1e-5", "100.000000000000000000000000001",
              "9007199254740993.0", "1e22", "1e23", "0.0000001"]  # fmt: skip
    for text in prices:
        frame = f'[{{"T":"i","S":"SPY","p":{text},"t":"2024-01-02T03:04:05Z"}}]'.encode()
        pair.feed(frame)
    got = pair.rings.last(Kind.IMBALANCE, SYMBOLS.index("SPY"), len(prices))["price"]
    assert got.tolist() == [float(orjson.loads(p)) for p in prices]


def test_symbol_table_policy_ids_from_table_not_arrival() -> None:
    rings = TickRings(3, 8)
    parser = TickParser(["ZZZ", "AAA", "MMM"], rings)
    frame = orjson.dumps([{"T": "i", "S": s, "p": 1.0, "t": "2024-01-02T03:04:05Z"}
                          for s in ("MMM", "AAA", "NOPE", "MMM", "ZZZ")])  # fmt: skip
    n = parser.parse_json(frame)
    assert parser.touched[:n].tolist() == [2, 1, 0]  # first-touch order, table ids
    assert parser.frame_counts[Kind.IMBALANCE] == 4
    assert parser.drops()["unknown_symbol"] == 1
    assert rings.heads(Kind.IMBALANCE).tolist() == [1, 1, 2]


def test_touched_resets_per_frame_and_counts_per_kind() -> None:
    pair = Pair(SYMBOLS)
    t = {"T": "t", "S": "AMD", "i": 1, "p": 1.0, "s": 1, "t": "2024-01-02T03:04:05Z"}
    q = {"T": "q", "S": "SPY", "bp": 1.0, "ap": 1.1, "bs": 1, "as": 2, "t": "2024-01-02T03:04:05Z"}
    pair.feed(orjson.dumps([t, q, t]))
    assert pair.parser.n_touched == 2
    assert pair.parser.frame_counts.tolist()[:2] == [2, 1]
    pair.feed(orjson.dumps([q]))
    assert pair.parser.touched[:1].tolist() == [SYMBOLS.index("SPY")]
    assert pair.parser.frame_counts.tolist()[:2] == [0, 1]
    assert pair.parser.record_counts.tolist()[:2] == [2, 2]
    assert pair.parser.parse_json(b"[]") == 0 and not pair.parser.frame_counts.any()


def test_bytes_like_inputs_and_type_errors() -> None:
    pair = Pair(SYMBOLS)
    frame = orjson.dumps([{"T": "i", "S": "SPY", "p": 1.0, "t": "2024-01-02T03:04:05Z"}])
    assert pair.parser.parse_json(bytearray(frame)) == 1
    assert pair.parser.parse_json(memoryview(frame)) == 1
    assert pair.parser.parse_json(memoryview(b"xx" + frame)[2:]) == 1
    mp = SyntheticFeed.msgpack_frame([{"T": "i", "S": "SPY", "p": 1.0, "t": 5}])
    assert pair.parser.parse_msgpack(bytearray(mp)) == 1
    with pytest.raises(TypeError):
        pair.parser.parse_json("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symbols"):
        TickParser(["A", "B"], TickRings(3, 4))
    with pytest.raises(ValueError, match="duplicate"):
        TickParser(["A", "A"], TickRings(2, 4))
    with pytest.raises(ValueError, match="bytes"):
        TickParser(["X" * 16], TickRings(1, 4))


def test_controls_come_back_as_dicts_in_order() -> None:
    pair = Pair(SYMBOLS)
    frames = [b'[{"T":"success","msg":"connected"}]',
              b'[{"T":"error","code":406,"msg":"connection limit exceeded"}]',
              b'[{"T":"subscription","trades":["AAPL"],"quotes":[],"bars":["*"]}]']  # fmt: skip
    for frame in frames:
        assert pair.parser.parse_json(frame) == 0
    assert pair.parser.take_controls() == [orjson.loads(f)[0] for f in frames]
    assert pair.parser.take_controls() == []
    for frame in frames:
        pair.parser.parse_msgpack(msgpack.packb(orjson.loads(frame)))
    assert pair.parser.take_controls() == [orjson.loads(f)[0] for f in frames]
    assert pair.parser.controls_seen == 6
    capped = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 2), max_controls=2)
    for frame in frames:
        capped.parse_json(frame)
    assert [c["T"] for c in capped.take_controls()] == ["error", "subscription"]


def test_field_tables_cover_the_record_dtypes() -> None:
    assert len(DROP_REASONS) == len(set(DROP_REASONS))
    for kind in Kind:
        names = {name for _key, name in FIELDS[kind]}
        assert names | {"seq", "bar_type"} >= set(DTYPES[kind].names or ()) - {"seq"}, kind
    assert len(FIELDS) == N_KINDS


# -- timestamps --------------------------------------------------------------------------------

_GOOD_TS = {
    "1970-01-01T00:00:00Z": 0,
    "2021-02-22T19:15:00Z": 1614021300_000000000,
    "2021-02-22T15:51:44.208Z": 1614009104_208000000,
    "2021-02-22T15:51:45.3355677Z": 1614009105_335567700,
    "2023-04-06T11:54:27.924933876Z": 1680782067_924933876,
    "2023-04-06T11:54:26.83915973Z": 1680782066_839159730,
    "2024-02-29T23:59:59.9Z": 1709251199_900000000,
    "2000-02-29T00:00:00.000000001z": 951782400_000000001,
    "2021-02-22t15:51:44.208+01:30": 1614009104_208000000 - 5400 * 10**9,
    "2021-02-22T15:51:44.208-05:00": 1614009104_208000000 + 18000 * 10**9,
    "2262-04-11T23:47:16.854775807Z": 2**63 - 1,
}
_BAD_TS = [
    "",
    "2021-02-22",
    "2021-02-22T15:51:44",
    "2021-02-22T15:51:44.Z",
    "2021-02-22T15:51:44.1234567891Z",
    "2021-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2021-13-01T00:00:00Z",
    "2021-00-01T00:00:00Z",
    "2021-01-00T00:00:00Z",
    "2021-01-01T24:00:00Z",
    "2021-01-01T00:60:00Z",
    "2021-01-01T00:00:60Z",
    "2021-01-01 00:00:00Z",
    "2021-01-01T00:00:00+0100",
    "2021-01-01T00:00:00+24:00",
    "2021-01-01T00:00:00Z ",
    "1969-12-31T23:59:59.999999999Z",
    "2262-04-11T23:47:16.854775808Z",
    "9999-12-31T23:59:59Z",
    "2021-01-01T00:00:00ZZ",
    "+021-01-01T00:00:00Z",
    "2021-01-01T00:00:00.5",
    "2021-01-01T00:00:00\u00bdZ",
    "2021-01-01T0a:00:00Z",
]


def test_rfc3339_exact_cases() -> None:
    cases = dict(_GOOD_TS)
    bar_start = datetime(2021, 2, 22, 19, 15, tzinfo=UTC).timestamp()
    assert cases["2021-02-22T19:15:00Z"] == int(bar_start) * 10**9
    pair = Pair(SYMBOLS)
    for text, ns in cases.items():
        assert parse_rfc3339(text) == ns, text  # the reference agrees with the table
        pair.feed(orjson.dumps([{"T": "i", "S": "SPY", "p": 1.0, "t": text}]))
        assert pair.rings.last(Kind.IMBALANCE, 2, 1)["ts_ns"][0] == ns, text
    for text in _BAD_TS:
        before = pair.parser.drops()["bad_timestamp"]
        pair.feed(orjson.dumps([{"T": "i", "S": "SPY", "p": 1.0, "t": text}]))
        assert pair.parser.drops()["bad_timestamp"] == before + 1, text


def test_rfc3339_every_fraction_length_round_trips() -> None:
    rng = np.random.default_rng(5)
    pair = Pair(SYMBOLS, capacity=1)
    instants = rng.integers(0, 2**63 - 1, 400, dtype=np.int64).tolist()
    for ns in [*instants, 0, 10**9, 2**63 - 1]:
        for digits in range(10):
            want = ns - ns % 10 ** (9 - digits)
            text = format_rfc3339(want)
            assert parse_rfc3339(text) == want
            pair.parser.parse_json(f'[{{"T":"i","S":"SPY","p":1,"t":"{text}"}}]'.encode())
            assert pair.rings.last(Kind.IMBALANCE, 2, 1)["ts_ns"][0] == want, text
    assert not pair.parser.drop_counts.any()


def _ts96(seconds: int, nanoseconds: int) -> bytes:
    body = nanoseconds.to_bytes(4, "big") + seconds.to_bytes(8, "big", signed=True)
    return b"\xc7\x0c\xff" + body


@pytest.mark.parametrize(
    ("seconds", "nanoseconds", "head"),
    [
        (1614009104, 0, b"\xd6\xff"),
        (1614009104, 208000000, b"\xd7\xff"),
        (0, 999999999, b"\xd7\xff"),
        (2**32 - 1, 0, b"\xd6\xff"),
        (9_000_000_000, 5, b"\xd7\xff"),
    ],
)
def test_msgpack_timestamp_forms(seconds: int, nanoseconds: int, head: bytes) -> None:
    ts = msgpack.Timestamp(seconds, nanoseconds)
    frame = msgpack.packb([{"T": "i", "S": "SPY", "p": 1.0, "t": ts}])
    assert head in frame
    # the 96-bit form (msgpack only uses it past 2514) written by hand for the same instant
    frame96 = frame.replace(msgpack.packb(ts), _ts96(seconds, nanoseconds))
    assert frame96 != frame
    pair = Pair(SYMBOLS)
    for f in (frame, frame96):
        pair.feed(f, msgpack=True)
        assert pair.rings.last(Kind.IMBALANCE, 2, 1)["ts_ns"].tolist() == [
            seconds * 10**9 + nanoseconds
        ]


def test_msgpack_bad_timestamps_are_counted() -> None:
    pair = Pair(SYMBOLS)
    bad = [
        b"\xd7\xff" + ((1_000_000_000 << 34) | 5).to_bytes(8, "big"),  # nsec out of range
        b"\xc7\x0c\xff" + (0).to_bytes(4, "big") + (-5).to_bytes(8, "big", signed=True),
        b"\xc7\x0c\xff" + (0).to_bytes(4, "big") + (2**62).to_bytes(8, "big"),  # past 2262
        b"\xd5\xff\x00\x00",  # ext -1 of a size no timestamp has
    ]
    for ts in bad:
        frame = b"\x91\x84\xa1T\xa1i\xa1S\xa3SPY\xa1p\xcb" + msgpack.packb(1.0)[1:] + b"\xa1t" + ts
        pair.parser.parse_msgpack(frame)
    assert pair.parser.drops()["bad_timestamp"] == len(bad)
    assert pair.parser.seq == 0


# -- msgpack encodings -------------------------------------------------------------------------


def test_msgpack_every_width_and_container_form() -> None:
    pair = Pair(SYMBOLS)
    t = msgpack.Timestamp(1614009104, 208000000)
    for size in (1, 200, 70_000, 5_000_000_000, 2**63 + 5):  # fixint, u8, u32, u64 above i64
        for price in (126.5, 126, -0.0):
            pair.feed(msgpack.packb([{"T": "t", "S": "AAPL", "i": -3, "p": price, "s": size, "t": t,
                                      "c": ["@", "I"]}]), msgpack=True)  # fmt: skip
    pair.feed(msgpack.packb([{"T": "t", "S": "AAPL", "i": 1, "p": 1.5, "s": 1.25, "t": t}],
                            use_single_float=True), msgpack=True)  # fmt: skip
    long_map = {"T": "q", "S": "AMD", "bp": 1.0, "ap": 2.0, "bs": 1, "as": 1, "t": t}
    long_map.update({f"pad{j}": "x" * 40 for j in range(20)})  # map16, str8 values
    big_frame = [long_map] * 20  # array16
    pair.feed(msgpack.packb(big_frame), msgpack=True)
    assert not pair.parser.drop_counts.any()
    # map32 / array32 / str32 forms, written by hand
    body = b"\xdf\x00\x00\x00\x07" + b"".join(
        msgpack.packb(k) + msgpack.packb(v)
        for k, v in {"T": "q", "bp": 1.0, "ap": 2.0, "bs": 1, "as": 1, "t": t}.items()
    ) + b"\xa1S\xdb\x00\x00\x00\x03AMD"  # fmt: skip
    pair.feed(b"\xdd\x00\x00\x00\x01" + body, msgpack=True)
    assert pair.parser.frame_counts[Kind.QUOTE] == 1


# -- no allocation per message -----------------------------------------------------------------


def test_no_python_allocation_per_message_in_steady_state() -> None:
    symbols = [f"S{j}" for j in range(50)]
    feed = SyntheticFeed(symbols, seed=3, mix=ALL_KINDS_MIX)
    frames = [SyntheticFeed.json_frame(m) for m in feed.frames(400, 1, 50)]
    mp_frames = [SyntheticFeed.msgpack_frame(m) for m in feed.frames(400, 1, 50)]
    n_messages = sum(orjson.loads(f).__len__() for f in frames)
    rings = TickRings(len(symbols), 64)
    parser = TickParser(symbols, rings)
    for frame in frames[:5]:
        parser.parse_json(frame)  # warm-up
    tracemalloc.start()
    try:
        blocks_before = sys.getallocatedblocks()
        snap_before = tracemalloc.take_snapshot()
        for _ in range(3):
            for frame in frames:
                parser.parse_json(frame)
            for frame in mp_frames:
                parser.parse_msgpack(frame)
        snap_after = tracemalloc.take_snapshot()
        blocks_after = sys.getallocatedblocks()
    finally:
        tracemalloc.stop()
    assert parser.seq > 3 * n_messages  # everything was written, nothing dropped
    assert not parser.drop_counts.any()
    grown = sum(s.size_diff for s in snap_after.compare_to(snap_before, "filename") if s.size_diff)
    assert grown < 64 * 1024, grown  # tracemalloc's own bookkeeping only, not per message
    assert blocks_after - blocks_before < 100, blocks_after - blocks_before


def test_reference_decoder_is_independent_of_parser_state() -> None:
    ref = ReferenceDecoder(SYMBOLS)
    res = ref.decode_json(b'[{"T":"i","S":"SPY","p":1,"t":"2024-01-02T03:04:05Z"},{"T":"zz"}]')
    assert len(res.records) == 1 and res.drops == {"unknown_type": 1}
