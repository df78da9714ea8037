"""Micro-batcher: flush rules, coalescing, bounded queue, accounting (no timing assertions)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast.inference.batch import FLAG_COALESCED, FLAG_CONTEXT_STALE, Batch, DropReason
from relentless_fast.inference.batcher import MicroBatcher

F, C = 3, 2


class Sink:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.open = True

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

    def capacity(self) -> bool:
        return self.open

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.batches)

    def row_ids(self) -> list[int]:
        return [int(v) for b in self.batches for v in b.ticks[:, 0]]


def make(sink: Sink, **kw: Any) -> MicroBatcher:
    args: dict[str, Any] = {
        "n_symbols": 64,
        "n_features": F,
        "context_dim": C,
        "window_us": 100_000,
        "max_batch": 4,
        "queue_rows": 16,
        "coalesce": False,
        "dispatch": sink,
        "has_capacity": sink.capacity,
    }
    args.update(kw)
    return MicroBatcher(**args)


_NEXT = [0]


def rows(symbols: list[int], flags: int = 0) -> tuple[Any, ...]:
    """Rows whose ticks[:, 0] is a unique row id (to follow rows through the batcher)."""
    n = len(symbols)
    ids = np.arange(_NEXT[0], _NEXT[0] + n, dtype=np.float32)
    _NEXT[0] += n
    ticks = np.zeros((n, F), np.float32)
    ticks[:, 0] = ids
    ctx = np.repeat(ids[:, None], C, axis=1)
    return (
        np.array(symbols, np.int32),
        ticks,
        ctx,
        ids.astype(np.int64) * 10,
        np.full(n, flags, np.uint16),
    )


def test_full_batches_leave_immediately_the_rest_waits() -> None:
    sink = Sink()
    b = make(sink)
    b.submit(*rows(list(range(10))))
    assert [len(x) for x in sink.batches] == [4, 4]
    assert b.pending == 2
    b.end_of_burst()  # 100 ms window, not expired, no loop: keeps waiting
    assert b.pending == 2
    b.flush()
    assert [len(x) for x in sink.batches] == [4, 4, 2]
    assert [int(s) for x in sink.batches for s in x.symbol_ids] == list(range(10))
    assert b.counters.flushes["full"] == 2
    assert b.counters.flushes["forced"] == 1
    batch = sink.batches[0]
    np.testing.assert_array_equal(batch.context[:, 0], batch.ticks[:, 0])
    np.testing.assert_array_equal(batch.event_ts_ns, batch.ticks[:, 0].astype(np.int64) * 10)


def test_sub_resolution_window_flushes_at_end_of_burst() -> None:
    sink = Sink()
    b = make(sink, window_us=50)
    b.submit(*rows([1, 2]))
    b.submit(*rows([3]))
    b.end_of_burst()
    assert b.pending == 0
    assert sink.rows == 3


def burst(symbols: list[int]) -> tuple[Any, Any, Any]:
    """``submit_burst``'s arguments: rows as :func:`rows` makes them, without context/flags."""
    sym, ticks, _ctx, ets, _flags = rows(symbols)
    return sym, ticks, ets


def test_submit_burst_dispatches_at_once_when_nothing_is_pending() -> None:
    sink = Sink()
    b = make(sink, window_us=50)
    sym, ticks, ets = burst([5, 1, 7])
    b.submit_burst(sym, ticks, ets)
    assert b.pending == 0
    [batch] = sink.batches
    assert [int(s) for s in batch.symbol_ids] == [5, 1, 7]
    np.testing.assert_array_equal(batch.ticks, ticks)
    np.testing.assert_array_equal(batch.event_ts_ns, ets)
    assert batch.context.shape == (3, C) and not batch.context.any()
    assert not batch.flags.any()
    assert (batch.arrival_ns > 0).all()
    assert b.counters.flushes["burst"] == 1
    assert b.counters.batches_dispatched == 1 and b.counters.rows_submitted == 3
    b.submit_burst(*burst([2]))
    assert [x.seq for x in sink.batches] == [0, 1]


def test_submit_burst_takes_the_queue_when_it_cannot_go_at_once() -> None:
    # Rows already pending: the burst joins them (coalescing applies) and all leave together.
    sink = Sink()
    b = make(sink, window_us=50, coalesce=True)
    sink.open = False
    b.submit(*rows([1, 2]))
    sink.open = True
    b.submit_burst(*burst([2, 3]))
    assert b.pending == 0
    assert [[int(s) for s in x.symbol_ids] for x in sink.batches] == [[1, 2, 3]]
    assert b.counters.rows_coalesced == 1
    # No capacity: held in the queue until the backend frees.
    sink.batches.clear()
    sink.open = False
    b.submit_burst(*burst([4]))
    assert b.pending == 1 and sink.batches == []
    sink.open = True
    b.on_capacity()
    assert sink.rows == 1
    # More rows than one batch: full batches, then the rest at burst end.
    sink.batches.clear()
    b.submit_burst(*burst(list(range(10, 20))))
    assert [len(x) for x in sink.batches] == [4, 4, 2]
    # A window the loop's timers can honour: the rows wait for it, as with ``submit``.
    slow = make(Sink(), window_us=100_000)
    slow.submit_burst(*burst([1]))
    assert slow.pending == 1


def test_expired_window_flushes_on_next_frame() -> None:
    sink = Sink()
    b = make(sink, window_us=1000)
    b.submit(*rows([1]))
    b.end_of_burst()  # window == timer resolution and not expired: waits (no loop)
    assert b.pending == 1
    time.sleep(0.003)
    b.submit(*rows([2]))
    assert b.pending == 0
    assert [int(s) for s in sink.batches[0].symbol_ids] == [1, 2]
    assert b.counters.flushes["window"] == 1


def test_coalescing_across_frames_replaces_in_place() -> None:
    sink = Sink()
    b = make(sink, coalesce=True)
    b.submit(*rows([7, 8]))
    first = _NEXT[0]
    b.submit(*rows([7], flags=FLAG_CONTEXT_STALE))
    assert b.pending == 2
    assert b.counters.rows_coalesced == 1
    b.flush()
    (batch,) = sink.batches
    assert batch.symbol_ids.tolist() == [7, 8]
    assert batch.ticks[0, 0] == first  # the newer row, in the older row's place
    assert batch.flags.tolist() == [FLAG_COALESCED | FLAG_CONTEXT_STALE, 0]


def test_coalescing_within_one_frame_keeps_the_last_row() -> None:
    sink = Sink()
    b = make(sink, coalesce=True)
    start = _NEXT[0]
    b.submit(*rows([5, 5, 6, 5]))
    b.flush()
    (batch,) = sink.batches
    assert batch.symbol_ids.tolist() == [6, 5]
    assert batch.ticks[:, 0].tolist() == [start + 2, start + 3]
    assert batch.flags.tolist() == [0, FLAG_COALESCED]
    assert b.counters.rows_coalesced == 2


def test_overflow_drops_oldest_and_never_blocks() -> None:
    sink = Sink()
    sink.open = False  # backend saturated: rows are held, not dispatched
    b = make(sink, queue_rows=4)
    start = _NEXT[0]
    b.submit(*rows([1, 2, 3]))
    b.submit(*rows([4, 5, 6]))
    assert b.pending == 4
    assert b.counters.dropped[DropReason.QUEUE_OVERFLOW] == 2
    b.submit(*rows(list(range(10, 20))))  # more than the whole queue in one frame
    assert b.counters.dropped[DropReason.QUEUE_OVERFLOW] == 2 + 4 + 6
    sink.open = True
    b.flush()
    assert sink.row_ids() == list(range(start + 12, start + 16))


def test_overflow_after_coalescing() -> None:
    sink = Sink()
    sink.open = False
    b = make(sink, queue_rows=4, coalesce=True)
    b.submit(*rows([1, 2, 3, 4]))
    b.submit(*rows([2, 9]))  # 2 coalesces (no room needed); 9 needs one slot: drops 1
    assert b.counters.rows_coalesced == 1
    assert b.counters.dropped[DropReason.QUEUE_OVERFLOW] == 1
    sink.open = True
    b.flush()
    assert [int(s) for s in sink.batches[0].symbol_ids] == [2, 3, 4, 9]


def test_backpressure_holds_rows_until_capacity() -> None:
    sink = Sink()
    sink.open = False
    b = make(sink, window_us=10)
    b.submit(*rows([1, 2, 3, 4, 5]))
    b.end_of_burst()
    assert sink.batches == []
    sink.open = True
    b.on_capacity()
    assert sink.rows == 5


def test_close_counts_pending_rows() -> None:
    sink = Sink()
    b = make(sink)
    b.submit(*rows([1, 2]))
    assert b.close() == 2
    assert b.counters.dropped[DropReason.SHUTDOWN] == 2
    assert b.pending == 0


@pytest.mark.parametrize("bad", [0.5, 100_001])
def test_window_bounds(bad: float) -> None:
    with pytest.raises(ValueError, match="window_us"):
        make(Sink(), window_us=bad)
    with pytest.raises(ValueError, match="max_batch"):
        make(Sink(), max_batch=8, queue_rows=4)


async def test_timer_flushes_a_window_above_loop_resolution() -> None:
    sink = Sink()
    b = make(sink, window_us=2000, loop=asyncio.get_running_loop())
    b.submit(*rows([1]))
    b.end_of_burst()
    assert b.pending == 1
    for _ in range(200):
        await asyncio.sleep(0.005)
        if sink.batches:
            break
    assert sink.rows == 1
    assert b.counters.flushes["timer"] == 1


def _reference(frames: list[tuple[list[int], bool]], cap: int, coalesce: bool) -> list[int]:
    """Row ids left pending after the frames, by the documented rules, one row at a time."""
    queue: list[tuple[int, int]] = []  # (symbol, row id)
    drops = 0
    next_id = 0
    for symbols, _ in frames:
        frame = [(s, next_id + i) for i, s in enumerate(symbols)]
        next_id += len(symbols)
        if coalesce:
            last = {s: i for i, (s, _) in enumerate(frame)}
            frame = [r for i, r in enumerate(frame) if last[r[0]] == i]
            pending = {s: i for i, (s, _) in enumerate(queue)}
            new = []
            for s, rid in frame:
                if s in pending:
                    queue[pending[s]] = (s, rid)
                else:
                    new.append((s, rid))
            frame = new
        queue.extend(frame)
        while len(queue) > cap:
            queue.pop(0)
            drops += 1
    return [rid for _, rid in queue]


@settings(max_examples=80, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.lists(st.integers(0, 9), min_size=0, max_size=12), st.booleans()),
        max_size=12,
    ),
    coalesce=st.booleans(),
    cap=st.integers(4, 12),
)
def test_every_row_is_dispatched_coalesced_or_dropped(
    frames: list[tuple[list[int], bool]], coalesce: bool, cap: int
) -> None:
    """Against a one-row-at-a-time reference; the ring wraps around many times."""
    sink = Sink()
    sink.open = False
    b = make(sink, queue_rows=cap, max_batch=4, coalesce=coalesce, n_symbols=10)
    _NEXT[0] = 0
    for symbols, _ in frames:
        b.submit(*rows(symbols))
    want = _reference(frames, cap, coalesce)
    sink.open = True
    b.flush()
    assert sink.row_ids() == want
    c = b.counters
    assert c.rows_submitted == sink.rows + c.rows_coalesced + c.rows_dropped
    if coalesce:
        for batch in sink.batches:
            assert len(set(batch.symbol_ids.tolist())) == len(batch)


def test_interleaved_dispatch_and_wraparound() -> None:
    sink = Sink()
    b = make(sink, queue_rows=6, max_batch=4, coalesce=True, n_symbols=50)
    _NEXT[0] = 0
    rng = np.random.default_rng(0)
    for _ in range(300):
        sink.open = bool(rng.random() < 0.6)
        b.submit(*rows(rng.integers(0, 50, rng.integers(0, 7)).tolist()))
    sink.open = True
    b.flush()
    c = b.counters
    assert c.rows_submitted == sink.rows + c.rows_coalesced + c.rows_dropped
    ids = sink.row_ids()
    assert len(set(ids)) == len(ids)  # no row dispatched twice


def test_bad_input_is_a_clear_error() -> None:
    b = make(Sink())
    sym, ticks, ctx, ets, _ = rows([1, 2])
    with pytest.raises(ValueError, match="symbol id outside"):
        b.submit(np.array([1, 64], np.int32), ticks, ctx, ets)
    with pytest.raises(ValueError, match="symbol id outside"):
        b.submit(np.array([-1, 2], np.int32), ticks, ctx, ets)
    with pytest.raises(ValueError, match="int32"):
        b.submit(sym.astype(np.int64), ticks, ctx, ets)
    with pytest.raises(ValueError, match="expected symbol_ids"):
        b.submit(sym, ticks[:1], ctx, ets)  # would broadcast silently
    with pytest.raises(ValueError, match="expected symbol_ids"):
        b.submit(sym, ticks, ctx[:, :1], ets)
    assert b.pending == 0
    assert b.counters.rows_submitted == 0


def test_a_rejected_frame_changes_nothing_mid_stream() -> None:
    """Checked before any coalescing, append or drop: pending rows and counters stay as before."""
    sink = Sink()
    sink.open = False
    b = make(sink, coalesce=True, queue_rows=4)
    start = _NEXT[0]
    b.submit(*rows([1, 2, 3]))
    c = b.counters
    before = (b.pending, c.rows_submitted, c.rows_coalesced, c.rows_dropped)
    # Would coalesce 1, dedupe 5 and overflow the queue, but the last id is out of range.
    sym, ticks, ctx, ets, flags = rows([1, 5, 5, 6, 64])
    with pytest.raises(ValueError, match="symbol id outside"):
        b.submit(sym, ticks, ctx, ets, flags)
    with pytest.raises(ValueError, match="ticks must be float32, got float64"):
        b.submit(sym[:4], ticks[:4].astype(np.float64), ctx[:4], ets[:4], flags[:4])
    assert (b.pending, c.rows_submitted, c.rows_coalesced, c.rows_dropped) == before
    sink.open = True
    b.flush()
    (batch,) = sink.batches
    assert batch.symbol_ids.tolist() == [1, 2, 3]
    assert batch.ticks[:, 0].tolist() == [start, start + 1, start + 2]
    assert not batch.flags.any()
