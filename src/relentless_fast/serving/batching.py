"""Server-side batching with TF Serving's ``BatchingParameters`` semantics.

Requests (tasks) to one signature of one version join the open batch until it would exceed
``max_batch_size``; a batch closes when full or ``batch_timeout_micros`` after its first task
arrived. At most ``max_enqueued_batches`` batches (the open one included) wait for one of
``num_batch_threads`` threads; a task that would need another is refused with UNAVAILABLE and TF
Serving's message. A batch runs once, padded up to the next ``allowed_batch_sizes`` entry with
copies of its first row (the padding rows' outputs are dropped), and each task gets its own rows
of the outputs. A task larger than ``max_batch_size`` is refused (no large-batch splitting).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relentless_fast.serving.config import BatchingOptions
from relentless_fast.serving.errors import QUEUE_FULL, ServingError, invalid, unavailable

Array = np.ndarray[Any, Any]
RunFn = Callable[[Mapping[str, Array]], dict[str, Array]]


@dataclass
class _Task:
    inputs: Mapping[str, Array]
    size: int
    future: Future[dict[str, Array]] = field(default_factory=Future)


@dataclass
class _Batch:
    deadline: float
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    closed: bool = False


@dataclass
class BatchStats:
    batches: int = 0
    tasks: int = 0
    rows: int = 0
    padded_rows: int = 0
    rejected_full: int = 0


class BatchScheduler:
    """One queue of batches for one signature of one servable, with its own worker threads."""

    def __init__(self, run: RunFn, opts: BatchingOptions, name: str = "batch") -> None:
        self._run = run
        self.opts = opts
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._worker, name=f"{name}-{i}", daemon=True)
            for i in range(opts.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, inputs: Mapping[str, Array], size: int) -> Future[dict[str, Array]]:
        """Queue one task; raises UNAVAILABLE when the queue is full."""
        o = self.opts
        if size > o.max_batch_size:
            raise invalid(
                f"Task size {size} is larger than maximum input batch size {o.max_batch_size}"
            )
        task = _Task(inputs, size)
        with self._cond:
            if self._stopped:
                raise unavailable("Servable is being unloaded")
            last = self._queue[-1] if self._queue else None
            if last is None or last.closed or last.size + size > o.max_batch_size:
                if last is not None and not last.closed:
                    last.closed = True
                    self._cond.notify()
                if len(self._queue) >= o.max_enqueued_batches:
                    self.stats.rejected_full += 1
                    raise unavailable(QUEUE_FULL)
                last = _Batch(deadline=time.monotonic() + o.batch_timeout_micros / 1e6)
                self._queue.append(last)
            last.tasks.append(task)
            last.size += size
            if last.size >= o.max_batch_size:
                last.closed = True
            self._cond.notify()
        return task.future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for b in self._queue:
                for task in b.tasks:
                    task.future.set_exception(unavailable("Servable is being unloaded"))
            self._queue.clear()
            self._cond.notify_all()
        for th in self._threads:
            th.join(timeout=5)

    def _next_batch(self) -> _Batch | None:
        with self._cond:
            while True:
                if self._stopped:
                    return None
                if self._queue:
                    head = self._queue[0]
                    wait = head.deadline - time.monotonic()
                    if head.closed or wait <= 0:
                        head.closed = True
                        return self._queue.popleft()
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _worker(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _execute(self, batch: _Batch) -> None:
        tasks = batch.tasks
        n = batch.size
        padded = self.opts.padded_size(n)
        names = list(tasks[0].inputs)
        try:
            merged = {}
            for k in names:
                parts = [t.inputs[k] for t in tasks]
                if padded > n:
                    pad = np.repeat(parts[0][:1], padded - n, axis=0)
                    parts.append(pad)
                merged[k] = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
            out = self._run(merged)
        except ServingError as exc:
            for t in tasks:
                t.future.set_exception(exc)
            return
        except Exception as exc:  # a failed batch fails its tasks, never the worker
            for t in tasks:
                t.future.set_exception(ServingError(_internal(), f"batch failed: {exc!r}"))
            return
        with self._cond:
            self.stats.batches += 1
            self.stats.tasks += len(tasks)
            self.stats.rows += n
            self.stats.padded_rows += padded - n
        start = 0
        for t in tasks:
            t.future.set_result({k: v[start : start + t.size] for k, v in out.items()})
            start += t.size


def _internal() -> Any:
    import grpc

    return grpc.StatusCode.INTERNAL
