"""TickRings: mirrored layout, wraparound, overflow counting and zero-copy last-n views."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.records import DTYPES, Kind

SYMBOLS = ["AAA", "BBB"]


def _trades(symbol: str, ids: range) -> bytes:
    return orjson.dumps(
        [
            {"T": "t", "S": symbol, "i": i, "p": float(i), "s": 1, "t": "2024-01-02T03:04:05Z"}
            for i in ids
        ]
    )


def test_shapes_dtypes_and_capacities() -> None:
    rings = TickRings(3, {Kind.TRADE: 5, Kind.QUOTE: 7})
    assert rings.n_symbols == 3
    for kind in Kind:
        data = rings.data(kind)
        cap = rings.capacity(kind)
        assert data.dtype == DTYPES[kind]
        assert data.shape == (3, 2 * cap)
        assert data.flags.c_contiguous
        assert rings.heads(kind).dtype == np.uint64 and rings.heads(kind).shape == (3,)
        assert rings.overflow(kind).dtype == np.uint64
    assert rings.capacity(Kind.TRADE) == 5 and rings.capacity(Kind.QUOTE) == 7
    assert rings.capacity(Kind.BAR) == 64  # default for kinds the mapping leaves out
    assert TickRings(1, 3).capacity(Kind.LULD) == 3
    with pytest.raises(ValueError):
        TickRings(0, 4)
    with pytest.raises(ValueError):
        TickRings(2, 0)
    with pytest.raises(ValueError):
        TickRings(2, {Kind.TRADE: -1})


@pytest.mark.parametrize("cap", [1, 2, 5, 8])
def test_mirror_invariant_wraparound_and_overflow(cap: int) -> None:
    rings = TickRings(len(SYMBOLS), cap)
    parser = TickParser(SYMBOLS, rings)
    written = 0
    for batch in (1, 3, cap, 2 * cap + 1, 7):
        parser.parse_json(_trades("BBB", range(written, written + batch)))
        written += batch
        head = int(rings.heads(Kind.TRADE)[1])
        assert head == written
        assert rings.overflow(Kind.TRADE)[1] == max(0, written - cap)
        data = rings.data(Kind.TRADE)[1]
        for j in range(max(0, head - cap), head):  # record j at j % cap and j % cap + cap
            assert data[j % cap]["trade_id"] == j
            assert data[j % cap + cap]["trade_id"] == j
        for n in (0, 1, cap, cap + 3, written + 10):
            view = rings.last(Kind.TRADE, 1, n)
            m = min(n, cap, head)
            assert view["trade_id"].tolist() == list(range(head - m, head))
    assert rings.heads(Kind.TRADE)[0] == 0 and rings.last(Kind.TRADE, 0, 5).size == 0


def test_last_is_a_zero_copy_view_valid_until_next_parse() -> None:
    rings = TickRings(len(SYMBOLS), 4)
    parser = TickParser(SYMBOLS, rings)
    parser.parse_json(_trades("AAA", range(3)))
    view = rings.last(Kind.TRADE, 0, 3)
    assert np.shares_memory(view, rings.data(Kind.TRADE))
    assert view.base is not None
    parser.parse_json(_trades("AAA", range(10, 16)))  # overwrites what the old view showed
    assert view["trade_id"].tolist() != [0, 1, 2]
    assert rings.last(Kind.TRADE, 0, 4)["trade_id"].tolist() == [12, 13, 14, 15]


def test_last_argument_errors() -> None:
    rings = TickRings(2, 4)
    with pytest.raises(IndexError):
        rings.last(Kind.TRADE, 2, 1)
    with pytest.raises(IndexError):
        rings.last(Kind.TRADE, -1, 1)
    with pytest.raises(ValueError):
        rings.last(Kind.TRADE, 0, -1)
    with pytest.raises(ValueError):
        rings.data(99)


def test_kinds_have_separate_rings_and_heads() -> None:
    rings = TickRings(len(SYMBOLS), 4)
    parser = TickParser(SYMBOLS, rings)
    parser.parse_json(
        b'[{"T":"q","S":"AAA","bp":1,"ap":2,"bs":1,"as":1,"t":"2024-01-02T03:04:05Z"},'
        b'{"T":"l","S":"BBB","u":3,"d":2,"i":"B","t":"2024-01-02T03:04:05Z"}]'
    )
    assert rings.heads(Kind.QUOTE).tolist() == [1, 0]
    assert rings.heads(Kind.LULD).tolist() == [0, 1]
    assert int(sum(rings.heads(k).sum() for k in Kind)) == 2
    assert rings.last(Kind.LULD, 1, 1)["indicator"][0] == ord("B")
    assert rings.last(Kind.QUOTE, 0, 1)["seq"][0] == 1
    assert rings.last(Kind.LULD, 1, 1)["seq"][0] == 2
