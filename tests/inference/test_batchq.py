"""The batcher's compiled queue kernel: coalescing, overflow, wrap-around, bad input, parity."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast._batchq import BatchQueue

F, C = 3, 2
FLAG = 1 << 3
OTHER = 1 << 1


def queue(cap: int = 8, coalesce: bool = True, n_symbols: int = 16, c: int = C) -> BatchQueue:
    return BatchQueue(n_symbols, F, c, cap, coalesce, FLAG)


Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def frame(symbols: list[int], first_id: int, flags: int | None = None, c: int = C) -> Rows:
    """Rows whose ticks[:, 0] is a row id (``first_id``, ``first_id + 1``, ...)."""
    n = len(symbols)
    ids = np.arange(first_id, first_id + n, dtype=np.float32)
    ticks = np.zeros((n, F), np.float32)
    ticks[:, 0] = ids
    ticks[:, 1] = -ids
    ctx = np.repeat(ids[:, None] + 0.5, c, axis=1).astype(np.float32)
    return (
        np.array(symbols, np.int32),
        ticks,
        ctx,
        ids.astype(np.int64) * 10,
        None if flags is None else np.full(n, flags, np.uint16),
    )


def taken_rows(q: BatchQueue) -> list[tuple[int, int, int]]:
    """Take everything pending: (symbol, row id, flags) in queue order."""
    if q.count == 0:
        return []
    sym, ticks, ctx, ets, _arrival, flags = q.take(q.count)
    if ctx.shape[1]:
        np.testing.assert_array_equal(ctx[:, 0], ticks[:, 0] + 0.5)
    np.testing.assert_array_equal(ticks[:, 1], -ticks[:, 0])
    np.testing.assert_array_equal(ets, ticks[:, 0].astype(np.int64) * 10)
    return [(int(s), int(t), int(f)) for s, t, f in zip(sym, ticks[:, 0], flags, strict=True)]


def test_duplicates_in_one_frame_keep_the_last_row_in_its_arrival_place() -> None:
    q = queue()
    assert q.push(*frame([5, 5, 6, 5, 7, 7], 0, flags=OTHER), 100) == (3, 0)
    assert q.count == 3
    assert taken_rows(q) == [(6, 2, OTHER), (5, 3, OTHER | FLAG), (7, 5, OTHER | FLAG)]


def test_coalescing_keeps_slot_and_window_start_updates_values_and_arrival() -> None:
    q = queue()
    q.push(*frame([1, 2], 0), 100)
    assert q.push(*frame([2, 3], 2), 200) == (1, 0)
    assert q.oldest_enqueued_ns == 100
    sym, ticks, _ctx, _ets, arrival, flags = q.take(3)
    assert sym.tolist() == [1, 2, 3]
    assert ticks[:, 0].tolist() == [0, 2, 3]
    assert arrival.tolist() == [100, 200, 200]
    assert flags.tolist() == [0, FLAG, 0]
    # Taken symbols are no longer pending: the same symbol now appends.
    assert q.push(*frame([2], 4), 300) == (0, 0)
    assert taken_rows(q) == [(2, 4, 0)]


def test_overflow_with_coalescing_replaces_first_then_drops_oldest() -> None:
    q = queue(cap=4)
    q.push(*frame([1, 2, 3, 4], 0), 1)
    # 1 coalesces in place (no room needed); 8 and 9 need two slots: the two oldest go, and the
    # oldest is symbol 1's slot, replaced a moment ago.
    assert q.push(*frame([8, 1, 9], 4), 2) == (1, 2)
    assert taken_rows(q) == [(3, 2, 0), (4, 3, 0), (8, 4, 0), (9, 6, 0)]
    # The dropped symbols are free again: no stale slot makes them "coalesce".
    assert q.push(*frame([1, 2], 7), 3) == (0, 0)
    assert taken_rows(q) == [(1, 7, 0), (2, 8, 0)]


def test_frame_larger_than_the_queue_keeps_its_newest_rows() -> None:
    for coalesce in (False, True):
        q = queue(cap=3, coalesce=coalesce)
        q.push(*frame([9], 0), 1)
        assert q.push(*frame([1, 2, 3, 4, 5], 1), 2) == (0, 2 + 1)
        assert taken_rows(q) == [(3, 3, 0), (4, 4, 0), (5, 5, 0)]


def test_without_coalescing_duplicates_are_kept() -> None:
    q = queue(coalesce=False)
    assert q.push(*frame([4, 4, 4], 0), 1) == (0, 0)
    assert taken_rows(q) == [(4, 0, 0), (4, 1, 0), (4, 2, 0)]


def test_ring_wraps_around_for_push_take_and_coalescing() -> None:
    q = queue(cap=5)
    q.push(*frame([0, 1, 2, 3], 0), 1)
    assert q.take(3)[0].tolist() == [0, 1, 2]
    q.push(*frame([4, 5, 6, 7], 4), 2)  # head at 3: slots 3, 4, then 0, 1, 2
    assert q.count == 5
    assert q.push(*frame([6, 3], 8), 3) == (2, 0)  # both pending: one before, one after the wrap
    sym, ticks, *_ = q.take(4)  # crosses the end of the ring
    assert sym.tolist() == [3, 4, 5, 6]
    assert ticks[:, 0].tolist() == [9, 4, 5, 8]
    assert q.oldest_enqueued_ns == 2
    assert taken_rows(q) == [(7, 7, 0)]


@pytest.mark.parametrize("bad", [-1, 16, 2**31 - 1])
def test_out_of_range_ids_are_rejected_before_any_state_change(bad: int) -> None:
    q = queue(cap=4)
    q.push(*frame([1, 2, 3], 0), 1)
    rows = frame([1, 5, 5, bad, 6], 3)
    with pytest.raises(ValueError, match=rf"symbol id outside 0\.\.15: \[{bad}\]"):
        q.push(*rows, 2)
    assert q.count == 3
    # Nothing was replaced, appended or dropped, and the per-symbol state is as before.
    assert q.push(*frame([3], 10), 3) == (1, 0)
    assert taken_rows(q) == [(1, 0, 0), (2, 1, 0), (3, 10, FLAG)]


def test_bad_shapes_and_dtypes_are_clear_errors_and_change_nothing() -> None:
    q = queue()
    q.push(*frame([1], 0), 1)
    sym, ticks, ctx, ets, _ = frame([2, 3], 1)
    flags = np.zeros(2, np.uint16)
    cases: list[tuple[list[Any], str]] = [
        ([sym.astype(np.int64), ticks, ctx, ets, None], "symbol_ids must be int32, got int64"),
        ([sym, ticks.astype(np.float64), ctx, ets, None], "ticks must be float32, got float64"),
        ([sym, ticks, ctx, ets.astype(np.int32), None], "event_ts_ns must be int64"),
        ([sym, ticks, ctx, ets, flags.astype(np.int16)], "flags must be uint16"),
        ([sym, ticks[:1], ctx, ets, None], r"expected symbol_ids \(2,\), ticks \(2, 3\)"),
        ([sym, ticks, ctx[:, :1], ets, None], r"context \(2, 2\)"),
        ([sym, ticks, ctx, ets, flags[:1]], r"flags \(2,\)"),
        ([sym[:, None], ticks, ctx, ets, None], "expected symbol_ids"),
        ([sym, ticks.tolist(), ctx, ets, None], "ticks must be a float32 numpy array, got list"),
        ([sym, ticks, ctx, ets.astype(">i8"), None], "event_ts_ns must be int64, got >i8"),
        ([sym, ticks, ctx, unaligned(ets), None], "event_ts_ns must be aligned"),
    ]
    for (a, b, c, d, e), message in cases:
        with pytest.raises(ValueError, match=message):
            q.push(a, b, c, d, e, 2)
    assert taken_rows(q) == [(1, 0, 0)]


def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` at an odd address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def test_strided_inputs_are_read_through_their_strides() -> None:
    sym, ticks, ctx, ets, _ = frame([3, 1, 3, 2], 0)
    wide = np.zeros((4, 2 * F), np.float32)
    wide[:, ::2] = ticks
    contiguous, strided = queue(), queue()
    contiguous.push(sym, ticks, ctx, ets, None, 5)
    strided.push(
        np.repeat(sym, 2)[::2],
        wide[:, ::2],
        np.asfortranarray(ctx),
        np.repeat(ets, 3)[::3].astype(np.longlong),  # int64 by another type number
        np.zeros(8, np.uint16)[::2],
        5,
    )
    for a, b in zip(contiguous.take(3), strided.take(3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_read_only_inputs_and_zero_width_context() -> None:
    q = queue(c=0)
    rows = frame([1, 1], 0, c=0)
    for arr in rows[:4]:
        assert arr is not None
        arr.flags.writeable = False
    assert q.push(*rows, 1) == (1, 0)
    sym, ticks, ctx, *_ = q.take(1)
    assert sym.tolist() == [1] and ticks[0, 0] == 1 and ctx.shape == (1, 0)


def test_take_and_discard_bounds() -> None:
    q = queue()
    with pytest.raises(ValueError, match="no pending row"):
        _ = q.oldest_enqueued_ns
    with pytest.raises(ValueError, match="take: k must be within"):
        q.take(1)
    q.push(*frame([1, 2], 0), 1)
    with pytest.raises(ValueError, match=r"take: k must be within 1 \.\. 2"):
        q.take(3)
    with pytest.raises(ValueError, match=r"discard: k must be within 0 \.\. 2"):
        q.discard(-1)
    q.discard(1)
    assert q.push(*frame([1], 2), 2) == (0, 0)  # discarded symbol 1: appended, not coalesced
    assert taken_rows(q) == [(2, 1, 0), (1, 2, 0)]


def test_taken_arrays_own_their_memory() -> None:
    q = queue()
    q.push(*frame([1, 2], 0), 1)
    taken = q.take(2)
    q.push(*frame([3, 4], 2), 2)
    assert taken[0].tolist() == [1, 2] and taken[1][:, 0].tolist() == [0, 1]
    assert all(a.flags.owndata and a.flags.c_contiguous for a in taken)


def test_constructor_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_symbols"):
        BatchQueue(0, F, C, 4, True, FLAG)
    with pytest.raises(ValueError, match="capacity"):
        BatchQueue(4, F, C, 0, True, FLAG)
    with pytest.raises(ValueError, match="n_features"):
        BatchQueue(4, 0, C, 4, True, FLAG)
    with pytest.raises(ValueError, match="coalesced_flag"):
        BatchQueue(4, F, C, 4, True, 1 << 16)


class Reference:
    """The queue's rules one row at a time, in plain Python."""

    def __init__(self, cap: int, coalesce: bool) -> None:
        self.cap, self.coalesce = cap, coalesce
        self.rows: list[list[int]] = []  # [symbol, row id, flags, enqueued, arrival]

    def push(self, symbols: list[int], first_id: int, now: int) -> tuple[int, int]:
        frame = [[s, first_id + i, 0, now, now] for i, s in enumerate(symbols)]
        coalesced = dropped = 0
        if self.coalesce:
            last = {r[0]: i for i, r in enumerate(frame)}
            dup = {s for s in last if symbols.count(s) > 1}
            coalesced += len(frame) - len(last)
            frame = [r for i, r in enumerate(frame) if last[r[0]] == i]
            for r in frame:
                r[2] = FLAG if r[0] in dup else 0
            pending = {r[0]: r for r in self.rows}
            fresh = []
            for r in frame:
                if r[0] in pending:
                    old = pending[r[0]]
                    old[1], old[2], old[4] = r[1], FLAG, now
                    coalesced += 1
                else:
                    fresh.append(r)
            frame = fresh
        self.rows.extend(frame)
        while len(self.rows) > self.cap:
            self.rows.pop(0)
            dropped += 1
        return coalesced, dropped

    def take(self, k: int) -> list[list[int]]:
        out, self.rows = self.rows[:k], self.rows[k:]
        return out


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.lists(st.integers(0, 9), max_size=14), st.integers(0, 12)), max_size=20
    ),
    coalesce=st.booleans(),
    cap=st.integers(1, 9),
)
def test_matches_the_one_row_at_a_time_reference(
    steps: list[tuple[list[int], int]], coalesce: bool, cap: int
) -> None:
    q = BatchQueue(10, F, C, cap, coalesce, FLAG)
    ref = Reference(cap, coalesce)
    next_id = 0
    for now, (symbols, k) in enumerate(steps, start=1):
        if symbols:
            got = q.push(*frame(symbols, next_id), now)
            assert got == ref.push(symbols, next_id, now)
            next_id += len(symbols)
        assert q.count == len(ref.rows)
        if q.count:
            assert q.oldest_enqueued_ns == ref.rows[0][3]
        k = min(k, q.count)
        if k:
            sym, ticks, _ctx, _ets, arrival, flags = q.take(k)
            want = ref.take(k)
            assert sym.tolist() == [r[0] for r in want]
            assert ticks[:, 0].astype(int).tolist() == [r[1] for r in want]
            assert flags.tolist() == [r[2] for r in want]
            assert arrival.tolist() == [r[4] for r in want]
