"""Micro-batcher: rows in bulk per frame, batches out on full, on window, or at burst end.

Rows live in a preallocated ring of float32 arrays (no Python object per row). Submitting never
blocks: when the queue is full, the newest row for a symbol first replaces its pending row
(coalescing), then the oldest pending rows are dropped and counted.

Window semantics (``window_us``, 1 µs ... 100 ms)
-------------------------------------------------
The window opens when a row enters an empty queue (or becomes the oldest pending row after a
flush) and bounds how long that row waits for companions. A batch leaves when

- ``max_batch`` rows are pending (``full``), checked on every :meth:`MicroBatcher.submit`;
- a submit finds the oldest pending row's window expired (``window``): frames arriving after
  the deadline flush everything pending, including their own rows;
- :meth:`MicroBatcher.end_of_burst` runs after the caller has handled one read burst
  (``data_received`` and friends) and the window has expired, or the window is shorter than the
  event loop's timer resolution (``burst``): uvloop timers tick in milliseconds, so a timer
  cannot honour a 50 µs window; flushing when the burst ends is the earliest point at which
  nothing else can arrive before the loop would sleep. A row therefore waits at most
  ``max(window, the rest of its read burst)``.
- otherwise a loop timer fires at the deadline (``timer``), with the loop's resolution.

Rows are held, not dispatched, while the backend reports no capacity (bounded in-flight
batches); :meth:`MicroBatcher.on_capacity` resumes. Holding lets coalescing absorb bursts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from relentless_fast.inference.batch import (
    FLAG_COALESCED,
    Batch,
    DropReason,
    InferenceCounters,
)

_Rows = tuple[
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint16],
]

MIN_WINDOW_US = 1.0
MAX_WINDOW_US = 100_000.0
LOOP_TIMER_RESOLUTION_US = 1000.0
"""uvloop (libuv) timers have millisecond resolution; asyncio's are no finer in practice."""


class MicroBatcher:
    """Bounded, coalescing micro-batcher over preallocated arrays.

    Parameters
    ----------
    n_symbols, n_features, context_dim:
        Symbol id range and row widths.
    window_us:
        Batching window in microseconds (1 ... 100 000).
    max_batch:
        Largest batch dispatched.
    queue_rows:
        Capacity of the pending queue (>= ``max_batch``).
    coalesce:
        A newer row for a symbol replaces its pending row (counted, ``coalesced`` flag).
    dispatch:
        Called with each :class:`Batch` (on the caller's thread / the event loop).
    has_capacity:
        Whether ``dispatch`` may be called now (backpressure); always by default.
    counters:
        Shared row accounting (one is created if not given).
    loop:
        Event loop for window timers; ``None`` means no timers (the caller drives
        :meth:`end_of_burst` / :meth:`poll`).
    """

    def __init__(
        self,
        *,
        n_symbols: int,
        n_features: int,
        context_dim: int,
        window_us: float,
        max_batch: int,
        queue_rows: int,
        coalesce: bool,
        dispatch: Callable[[Batch], None],
        has_capacity: Callable[[], bool] | None = None,
        counters: InferenceCounters | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        timer_resolution_us: float = LOOP_TIMER_RESOLUTION_US,
    ) -> None:
        if not MIN_WINDOW_US <= window_us <= MAX_WINDOW_US:
            raise ValueError(
                f"window_us must be within [{MIN_WINDOW_US}, {MAX_WINDOW_US}], got {window_us}"
            )
        if max_batch < 1 or queue_rows < max_batch:
            raise ValueError(f"need 1 <= max_batch ({max_batch}) <= queue_rows ({queue_rows})")
        self.window_ns = int(window_us * 1000)
        self.max_batch = max_batch
        self.capacity = queue_rows
        self.coalesce = coalesce
        self.counters = counters if counters is not None else InferenceCounters()
        self._dispatch = dispatch
        self._has_capacity = has_capacity if has_capacity is not None else _always
        self._loop = loop
        self._sub_resolution = window_us < timer_resolution_us
        self._resolution_ns = int(timer_resolution_us * 1000)
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0
        cap = queue_rows
        self._sym = np.zeros(cap, np.int32)
        self._ticks = np.zeros((cap, n_features), np.float32)
        self._ctx = np.zeros((cap, context_dim), np.float32)
        self._event_ts = np.zeros(cap, np.int64)
        self._arrival = np.zeros(cap, np.int64)
        self._enqueued = np.zeros(cap, np.int64)  # window start; not moved by coalescing
        self._flags = np.zeros(cap, np.uint16)
        self._slot_of = np.full(n_symbols, -1, np.int32)  # pending slot per symbol (coalescing)
        self._stamp = np.zeros(n_symbols, np.int64)  # scratch for in-frame duplicate detection
        self._ar = np.arange(cap, dtype=np.int64)
        self._head = 0
        self._count = 0
        self.n_symbols = n_symbols

    @property
    def pending(self) -> int:
        """Rows waiting in the queue."""
        return self._count

    def submit(
        self,
        symbol_ids: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32],
        event_ts_ns: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16] | None = None,
    ) -> None:
        """Queue the rows of one frame (arrays of equal length; copied in); never blocks."""
        n = int(symbol_ids.shape[0])
        if n == 0:
            return
        self._check(symbol_ids, ticks, context, event_ts_ns, flags)
        now = time.perf_counter_ns()
        self.counters.rows_submitted += n
        if flags is None:
            flags = np.zeros(n, np.uint16)
        if self.coalesce:
            symbol_ids, ticks, context, event_ts_ns, flags = self._dedupe_frame(
                symbol_ids, ticks, context, event_ts_ns, flags
            )
            slots = self._slot_of[symbol_ids]
            hit = slots >= 0
            if hit.any():
                n_hit = int(np.count_nonzero(hit))
                if self._count + symbol_ids.shape[0] - n_hit <= self.capacity:
                    self._scatter(symbol_ids, ticks, context, event_ts_ns, flags, slots, hit, now)
                    self.counters.rows_coalesced += n_hit
                    self._flush_due(now, burst=False)
                    return
                symbol_ids, ticks, context, event_ts_ns, flags = self._replace_pending(
                    symbol_ids, ticks, context, event_ts_ns, flags, slots, hit, now
                )
                self.counters.rows_coalesced += n_hit
        self._append(symbol_ids, ticks, context, event_ts_ns, flags, now)
        self._flush_due(now, burst=False)

    def submit_burst(
        self,
        symbol_ids: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        event_ts_ns: npt.NDArray[np.int64],
    ) -> None:
        """The rows of one whole read burst, then :meth:`end_of_burst`, in one call.

        For a caller that already holds one row per symbol (distinct ids, each within
        ``0..n_symbols-1``; not checked) and owns the arrays: they are handed over, not copied,
        and must not be written afterwards. When nothing is pending, the backend has capacity,
        the rows fit one batch and the window is shorter than the loop's timer resolution, the
        batch leaves at once without passing through the queue (the outcome of
        ``submit`` + ``end_of_burst`` then: one ``burst`` flush); otherwise the rows take that
        path. Context rows are zeros (the dispatcher fuses the context).
        """
        n = int(symbol_ids.shape[0])
        if n == 0:
            return
        context = np.zeros((n, self._ctx.shape[1]), np.float32)
        queued = self._count or not self._sub_resolution or n > self.max_batch
        if queued or not self._has_capacity():
            self.submit(symbol_ids, ticks, context, event_ts_ns)
            self.end_of_burst()
            return
        now = time.perf_counter_ns()
        counters = self.counters
        counters.rows_submitted += n
        batch = Batch(
            self._seq,
            symbol_ids,
            ticks,
            context,
            event_ts_ns,
            np.full(n, now, np.int64),
            np.zeros(n, np.uint16),
        )
        self._seq += 1
        counters.flushes["burst"] += 1
        counters.batches_dispatched += 1
        self._dispatch(batch)

    def end_of_burst(self) -> None:
        """Call once the current read burst is handled (see the module docstring)."""
        if self._count:
            self._flush_due(time.perf_counter_ns(), burst=True)

    def poll(self) -> None:
        """Flush what is due now (window expired), e.g. from the caller's own timer."""
        if self._count:
            self._flush_due(time.perf_counter_ns(), burst=False)

    def on_capacity(self) -> None:
        """The backend can take batches again: dispatch what is due."""
        if self._count:
            self._flush_due(time.perf_counter_ns(), burst=True)

    def flush(self) -> None:
        """Dispatch every pending row now (as capacity allows)."""
        while self._count and self._has_capacity():
            self._take(min(self._count, self.max_batch), "forced")

    def close(self) -> int:
        """Drop what is still pending (counted as ``SHUTDOWN``); returns the number of rows."""
        n = self._count
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if n:
            self._discard_oldest(n)
            self.counters.drop(DropReason.SHUTDOWN, n)
        return n

    # -- internals --------------------------------------------------------------------------

    def _check(
        self,
        sym: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        ctx: npt.NDArray[np.float32],
        ets: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16] | None,
    ) -> None:
        """Shapes and symbol ids, so bad input is a clear error, never a silent broadcast."""
        n = sym.shape[0]
        if (
            sym.ndim != 1
            or ticks.shape != (n, self._ticks.shape[1])
            or ctx.shape != (n, self._ctx.shape[1])
            or ets.shape != (n,)
            or (flags is not None and flags.shape != (n,))
        ):
            raise ValueError(
                f"submit: expected symbol_ids ({n},), ticks ({n}, {self._ticks.shape[1]}), "
                f"context ({n}, {self._ctx.shape[1]}), event_ts_ns ({n},); got {sym.shape}, "
                f"{ticks.shape}, {ctx.shape}, {ets.shape}"
            )
        if sym.dtype != np.int32:
            raise ValueError(f"submit: symbol_ids must be int32, got {sym.dtype}")
        # One comparison catches negative ids too: they wrap to huge unsigned values.
        if (sym.view(np.uint32) >= self.n_symbols).any():
            raise ValueError(f"submit: symbol id outside 0..{self.n_symbols - 1}: {sym.tolist()}")

    def _dedupe_frame(
        self,
        sym: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        ctx: npt.NDArray[np.float32],
        ets: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16],
    ) -> _Rows:
        """Several rows for one symbol in this frame: the last one wins (counted, flagged)."""
        n = sym.shape[0]
        if n < 2:
            return sym, ticks, ctx, ets, flags
        # Cheap test first: stamp each row's position at its symbol; a symbol seen twice keeps
        # only one stamp, whichever write wins, so some row reads back a different position.
        stamps = self._ar[:n] if n <= self.capacity else np.arange(n, dtype=np.int64)
        self._stamp[sym] = stamps
        if (self._stamp[sym] == stamps).all():
            return sym, ticks, ctx, ets, flags
        # A stable sort groups each symbol's rows in arrival order; a run's last row is newest.
        order = np.argsort(sym, kind="stable")
        ranked = sym[order]
        same_as_next = ranked[1:] == ranked[:-1]
        if not same_as_next.any():
            return sym, ticks, ctx, ets, flags
        last = np.ones(n, np.bool_)
        last[:-1] = ~same_as_next
        had_dup = np.zeros(n, np.bool_)
        had_dup[1:] = same_as_next
        kept, dup = order[last], had_dup[last]
        by_arrival = np.argsort(kept)
        keep = kept[by_arrival]
        self.counters.rows_coalesced += n - keep.shape[0]
        coalesced = dup[by_arrival].astype(np.uint16) * np.uint16(FLAG_COALESCED)
        return sym[keep], ticks[keep], ctx[keep], ets[keep], flags[keep] | coalesced

    def _scatter(
        self,
        sym: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        ctx: npt.NDArray[np.float32],
        ets: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16],
        slots: npt.NDArray[np.int32],
        hit: npt.NDArray[np.bool_],
        now: int,
    ) -> None:
        """Replace pending rows and append new ones in one write per array (queue has room)."""
        miss = ~hit
        n_new = sym.shape[0] - int(np.count_nonzero(hit))
        tail = (self._head + self._count) % self.capacity
        if tail + n_new <= self.capacity:
            new_pos = self._ar[tail : tail + n_new]
        else:
            new_pos = (tail + self._ar[:n_new]) % self.capacity
        dest = slots.astype(np.int64)
        dest[miss] = new_pos
        self._ticks[dest] = ticks
        self._ctx[dest] = ctx
        self._event_ts[dest] = ets
        self._arrival[dest] = now
        self._flags[dest] = np.where(hit, flags | FLAG_COALESCED, flags)
        new_sym = sym[miss]
        self._sym[new_pos] = new_sym
        self._enqueued[new_pos] = now
        self._slot_of[new_sym] = new_pos
        self._count += n_new

    def _replace_pending(
        self,
        sym: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        ctx: npt.NDArray[np.float32],
        ets: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16],
        slots: npt.NDArray[np.int32],
        hit: npt.NDArray[np.bool_],
        now: int,
    ) -> _Rows:
        """Overwrite pending rows in place; returns the rows that still need a slot."""
        s = slots[hit]
        self._ticks[s] = ticks[hit]
        self._ctx[s] = ctx[hit]
        self._event_ts[s] = ets[hit]
        self._arrival[s] = now
        self._flags[s] = flags[hit] | FLAG_COALESCED
        miss = ~hit
        return sym[miss], ticks[miss], ctx[miss], ets[miss], flags[miss]

    def _append(
        self,
        sym: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        ctx: npt.NDArray[np.float32],
        ets: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16],
        now: int,
    ) -> None:
        m = int(sym.shape[0])
        if m == 0:
            return
        cap = self.capacity
        if m > cap:  # more new rows than the whole queue: the oldest incoming go first
            self.counters.drop(DropReason.QUEUE_OVERFLOW, m - cap)
            sym, ticks, ctx, ets, flags = (
                sym[-cap:],
                ticks[-cap:],
                ctx[-cap:],
                ets[-cap:],
                flags[-cap:],
            )
            m = cap
        overflow = self._count + m - cap
        if overflow > 0:
            self._discard_oldest(overflow)
            self.counters.drop(DropReason.QUEUE_OVERFLOW, overflow)
        start = (self._head + self._count) % cap
        if start + m <= cap:
            pos: slice | npt.NDArray[np.int64] = slice(start, start + m)
        else:
            pos = (start + self._ar[:m]) % cap
        self._sym[pos] = sym
        self._ticks[pos] = ticks
        self._ctx[pos] = ctx
        self._event_ts[pos] = ets
        self._arrival[pos] = now
        self._enqueued[pos] = now
        self._flags[pos] = flags
        if self.coalesce:
            self._slot_of[sym] = self._ar[pos] if isinstance(pos, slice) else pos
        self._count += m

    def _positions(self, k: int) -> slice | npt.NDArray[np.int64]:
        head = self._head
        if head + k <= self.capacity:
            return slice(head, head + k)
        return (head + self._ar[:k]) % self.capacity

    def _discard_oldest(self, k: int) -> None:
        if self.coalesce:
            self._slot_of[self._sym[self._positions(k)]] = -1
        self._head = (self._head + k) % self.capacity
        self._count -= k

    def _take(self, k: int, reason: str) -> None:
        pos = self._positions(k)
        sym = self._sym[pos].copy()
        if self.coalesce:
            self._slot_of[sym] = -1
        batch = Batch(
            self._seq,
            sym,
            self._ticks[pos].copy(),
            self._ctx[pos].copy(),
            self._event_ts[pos].copy(),
            self._arrival[pos].copy(),
            self._flags[pos].copy(),
        )
        self._seq += 1
        self._head = (self._head + k) % self.capacity
        self._count -= k
        self.counters.flushes[reason] += 1
        self.counters.batches_dispatched += 1
        self._dispatch(batch)

    def _flush_due(self, now: int, *, burst: bool) -> None:
        while self._count >= self.max_batch and self._has_capacity():
            self._take(self.max_batch, "full")
        if not self._count:
            return
        expired = now - int(self._enqueued[self._head]) >= self.window_ns
        if expired or (burst and self._sub_resolution):
            reason = "window" if expired and not burst else "burst"
            while self._count and self._has_capacity():
                self._take(min(self._count, self.max_batch), reason)
        if self._count and self._loop is not None and self._timer is None:
            deadline_ns = int(self._enqueued[self._head]) + self.window_ns
            delay_s = max(0.0, (deadline_ns - now) / 1e9)
            self._timer = self._loop.call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._count:
            return
        now = time.perf_counter_ns()
        # The loop's clock is coarser than ours, so the timer may fire a little early: flush when
        # within one timer tick of the deadline; otherwise (the oldest row changed) re-arm.
        deadline_ns = int(self._enqueued[self._head]) + self.window_ns
        if now + self._resolution_ns >= deadline_ns:
            while self._count and self._has_capacity():
                self._take(min(self._count, self.max_batch), "timer")
        if self._count and self._loop is not None and self._timer is None:
            deadline_ns = int(self._enqueued[self._head]) + self.window_ns
            self._timer = self._loop.call_later(max(0.0, (deadline_ns - now) / 1e9), self._on_timer)


def _always() -> bool:
    return True
