"""Micro-batcher: rows in bulk per frame, batches out on full, on window, or at burst end.

Rows live in a preallocated ring of float32 arrays (no Python object per row), kept by the
compiled :class:`relentless_fast._batchq.BatchQueue`: it checks each frame, coalesces, appends,
drops the oldest on overflow and takes batches. This module is the policy around it: when a batch
leaves (window, timer, end of burst, full) and whether the backend can take it. Submitting never
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

from relentless_fast._batchq import BatchQueue
from relentless_fast.inference.batch import (
    FLAG_COALESCED,
    Batch,
    DropReason,
    InferenceCounters,
)

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
        self.n_symbols = n_symbols
        self.counters = counters if counters is not None else InferenceCounters()
        self._queue = BatchQueue(
            n_symbols, n_features, context_dim, queue_rows, coalesce, FLAG_COALESCED
        )
        self._dispatch = dispatch
        self._has_capacity = has_capacity if has_capacity is not None else _always
        self._loop = loop
        self._sub_resolution = window_us < timer_resolution_us
        self._resolution_ns = int(timer_resolution_us * 1000)
        self._timer: asyncio.TimerHandle | None = None
        self._seq = 0

    @property
    def pending(self) -> int:
        """Rows waiting in the queue."""
        return self._queue.count

    def submit(
        self,
        symbol_ids: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32],
        event_ts_ns: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16] | None = None,
    ) -> None:
        """Queue the rows of one frame (arrays of equal length; copied in); never blocks.

        Bad shapes, dtypes or symbol ids raise ValueError and leave the batcher untouched.
        """
        n = int(symbol_ids.shape[0])
        if n == 0:
            return
        now = time.perf_counter_ns()
        coalesced, dropped = self._queue.push(symbol_ids, ticks, context, event_ts_ns, flags, now)
        counters = self.counters
        counters.rows_submitted += n
        counters.rows_coalesced += coalesced
        if dropped:
            counters.drop(DropReason.QUEUE_OVERFLOW, dropped)
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
        context = np.zeros((n, self._queue.context_dim), np.float32)
        queued = self._queue.count or not self._sub_resolution or n > self.max_batch
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
        if self._queue.count:
            self._flush_due(time.perf_counter_ns(), burst=True)

    def poll(self) -> None:
        """Flush what is due now (window expired), e.g. from the caller's own timer."""
        if self._queue.count:
            self._flush_due(time.perf_counter_ns(), burst=False)

    def on_capacity(self) -> None:
        """The backend can take batches again: dispatch what is due."""
        if self._queue.count:
            self._flush_due(time.perf_counter_ns(), burst=True)

    def flush(self) -> None:
        """Dispatch every pending row now (as capacity allows)."""
        self._drain("forced")

    def close(self) -> int:
        """Drop what is still pending (counted as ``SHUTDOWN``); returns the number of rows."""
        n = self._queue.count
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if n:
            self._queue.discard(n)
            self.counters.drop(DropReason.SHUTDOWN, n)
        return n

    # -- internals --------------------------------------------------------------------------

    def _take(self, k: int, reason: str) -> None:
        batch = Batch(self._seq, *self._queue.take(k))
        self._seq += 1
        self.counters.flushes[reason] += 1
        self.counters.batches_dispatched += 1
        self._dispatch(batch)

    def _drain(self, reason: str) -> None:
        """Everything pending, in batches of at most ``max_batch``, while capacity lasts."""
        queue = self._queue
        while queue.count and self._has_capacity():
            self._take(min(queue.count, self.max_batch), reason)

    def _flush_due(self, now: int, *, burst: bool) -> None:
        queue = self._queue
        while queue.count >= self.max_batch and self._has_capacity():
            self._take(self.max_batch, "full")
        if not queue.count:
            return
        expired = now - queue.oldest_enqueued_ns >= self.window_ns
        if expired or (burst and self._sub_resolution):
            self._drain("window" if expired and not burst else "burst")
        self._arm_timer(now)

    def _arm_timer(self, now: int) -> None:
        """A loop timer at the oldest pending row's deadline, unless one is set or no loop."""
        if self._queue.count and self._loop is not None and self._timer is None:
            deadline_ns = self._queue.oldest_enqueued_ns + self.window_ns
            self._timer = self._loop.call_later(max(0.0, (deadline_ns - now) / 1e9), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._queue.count:
            return
        now = time.perf_counter_ns()
        # The loop's clock is coarser than ours, so the timer may fire a little early: flush when
        # within one timer tick of the deadline; otherwise (the oldest row changed) re-arm.
        if now + self._resolution_ns >= self._queue.oldest_enqueued_ns + self.window_ns:
            self._drain("timer")
        self._arm_timer(now)


def _always() -> bool:
    return True
