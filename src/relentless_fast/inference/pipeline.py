"""From a batch to results: canary split, primary backend, deadline, fallback, accounting.

The primary is the gRPC backend when one is configured, else the embedded backend. A remote call
that misses ``deadline_ms``, fails (``UNAVAILABLE`` and any other status), or is refused by the
open circuit breaker is served by the embedded backend; its rows carry the fallback flag. The
server-side deadline is ``deadline_ms + late_grace_ms``: a reply that arrives after the batch was
served by the fallback is discarded and counted (``late_replies_discarded``), never delivered, so
no row gets two results. A row gets a result or a counted :class:`~.batch.DropReason`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from relentless_fast.inference.batch import (
    FLAG_CANARY,
    FLAG_FALLBACK,
    LABEL_CANARY,
    LABEL_STABLE,
    Batch,
    BatchResult,
    DropReason,
    InferenceCounters,
    LabelStats,
    Outputs,
)
from relentless_fast.inference.breaker import BreakerState, CircuitBreaker
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.inference.grpc_backend import GrpcBackend, status_name
from relentless_fast.inference.routing import CanaryRouter

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PipelineOptions:
    """Deadlines of remote calls (ms)."""

    deadline_ms: float = 20.0
    late_grace_ms: float = 200.0


class InferencePipeline:
    """Serves batches from the micro-batcher and delivers :class:`BatchResult` objects.

    Parameters
    ----------
    on_result:
        Called once per (batch, label) group with the rows' outputs.
    embedded:
        In-process backend: the primary when ``remote`` is None, else the fallback.
    remote:
        gRPC backend (started by the caller).
    router:
        Canary routing; ``None`` sends every row to ``stable``.
    """

    def __init__(
        self,
        *,
        on_result: Callable[[BatchResult], None],
        embedded: EmbeddedBackend | None = None,
        remote: GrpcBackend | None = None,
        router: CanaryRouter | None = None,
        breaker: CircuitBreaker | None = None,
        options: PipelineOptions | None = None,
        counters: InferenceCounters | None = None,
    ) -> None:
        if embedded is None and remote is None:
            raise ValueError("an inference pipeline needs an embedded or a remote backend")
        self.on_result = on_result
        self.embedded = embedded
        self.remote = remote
        self.router = router
        self.breaker = breaker or CircuitBreaker()
        self.options = options or PipelineOptions()
        self.counters = counters if counters is not None else InferenceCounters()
        self.label_stats = {LABEL_STABLE: LabelStats(), LABEL_CANARY: LabelStats()}
        self.on_capacity: Callable[[], None] | None = None
        self.callback_errors = 0
        self._tasks: dict[asyncio.Task[None], int] = {}  # remote group in flight -> its rows
        self._canary_enabled = router is not None and router.fraction > 0
        if remote is not None:
            self._canary_enabled &= LABEL_CANARY in remote.labels
        elif embedded is not None:
            self._canary_enabled &= embedded.has_canary

    # -- batcher side ---------------------------------------------------------------------

    def has_capacity(self) -> bool:
        """False only while every remote channel is at its in-flight bound (breaker closed)."""
        if self.remote is None or self.breaker.state is BreakerState.OPEN:
            return True
        return self.remote.has_capacity()

    def dispatch(self, batch: Batch) -> None:
        """Serve one batch: embedded inline, remote as a task on the running loop."""
        for label, group in self._split(batch):
            if self.remote is None:
                self._serve_embedded(label, group, fallback=False)
            elif self.breaker.allow():
                task = asyncio.get_running_loop().create_task(self._serve_remote(label, group))
                self._tasks[task] = len(group)
                task.add_done_callback(self._task_done)
            else:
                self._serve_embedded(label, group, fallback=True)

    def _split(self, batch: Batch) -> list[tuple[str, Batch]]:
        if not self._canary_enabled or self.router is None:
            return [(LABEL_STABLE, batch)]
        mask = self.router.mask(batch.symbol_ids)
        if not mask.any():
            return [(LABEL_STABLE, batch)]
        if mask.all():
            return [(LABEL_CANARY, batch)]
        return [
            (LABEL_STABLE, batch.select(np.flatnonzero(~mask))),
            (LABEL_CANARY, batch.select(np.flatnonzero(mask))),
        ]

    # -- serving --------------------------------------------------------------------------

    def _serve_embedded(self, label: str, group: Batch, *, fallback: bool) -> None:
        n = len(group)
        if fallback:
            self.counters.batches_fallback += 1
        if self.embedded is None:
            self.counters.drop(DropReason.NO_BACKEND, n)
            return
        model_label = label if label in self.embedded.models else LABEL_STABLE
        try:
            outputs = self.embedded.run(model_label, group.ticks, group.context)
        except Exception:
            log.exception("embedded backend failed on batch %d (%d rows)", group.seq, n)
            self.counters.drop(DropReason.BACKEND_ERROR, n)
            return
        flags = 0
        if model_label == LABEL_CANARY:
            flags |= FLAG_CANARY
        if fallback:
            flags |= FLAG_FALLBACK
            self.counters.rows_fallback += n
        version = self.embedded.version(model_label)
        self._deliver(model_label, "embedded", version, group, outputs, flags)

    async def _serve_remote(self, label: str, group: Batch) -> None:
        assert self.remote is not None
        stats = self.label_stats[label]
        opts = self.options
        t0 = time.perf_counter_ns()
        call = asyncio.ensure_future(
            self.remote.predict(
                label, group.ticks, group.context, (opts.deadline_ms + opts.late_grace_ms) / 1e3
            )
        )
        call.add_done_callback(self._capacity_freed)
        try:
            done, _ = await asyncio.wait({call}, timeout=opts.deadline_ms / 1e3)
        except asyncio.CancelledError:
            call.cancel()
            raise
        stats.calls += 1
        stats.rows += len(group)
        if done:
            exc = call.exception()
            if exc is None:
                outputs, version = call.result()
                bad = _bad_shape(outputs, len(group))
                if bad is None:
                    stats.record_latency(time.perf_counter_ns() - t0)
                    self.breaker.record_success()
                    flags = FLAG_CANARY if label == LABEL_CANARY else 0
                    self._deliver(label, "grpc", version, group, outputs, flags)
                    return
                log.error("batch %d: bad response from %s: %s", group.seq, self.remote.target, bad)
                code = "BAD_RESPONSE"
            else:
                code = status_name(exc)
        else:
            code = "DEADLINE_EXCEEDED"
            self.counters.deadline_misses += 1
            call.add_done_callback(self._late_reply)
        stats.record_error(code)
        self.breaker.record_failure()
        self._serve_embedded(label, group, fallback=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        n = self._tasks.pop(task, 0)
        if task.cancelled():  # closed before the group was served (even before it started)
            self.counters.drop(DropReason.SHUTDOWN, n)
        elif task.exception() is not None:
            log.error("remote serving task failed", exc_info=task.exception())
            self.counters.drop(DropReason.BACKEND_ERROR, n)

    def _late_reply(self, call: asyncio.Future[tuple[Outputs, int]]) -> None:
        if not call.cancelled() and call.exception() is None:
            self.counters.late_replies_discarded += 1

    def _capacity_freed(self, _: asyncio.Future[tuple[Outputs, int]]) -> None:
        if self.on_capacity is not None:
            self.on_capacity()

    def _deliver(
        self, label: str, backend: str, version: int, group: Batch, outputs: Outputs, flags: int
    ) -> None:
        n = len(group)
        row_flags = group.flags | np.uint16(flags) if flags else group.flags
        result = BatchResult(
            group.seq,
            label,
            backend,
            version,
            group.symbol_ids,
            group.event_ts_ns,
            group.arrival_ns,
            row_flags,
            outputs,
            time.perf_counter_ns(),
        )
        self.counters.rows_delivered += n
        try:
            self.on_result(result)
        except Exception:
            self.callback_errors += 1
            log.exception("on_result callback failed on batch %d", group.seq)

    # -- lifecycle ------------------------------------------------------------------------

    async def warmup(self, batch_sizes: tuple[int, ...] | None = None) -> None:
        """Run every backend at each allowed batch size (before the engine reports ready)."""
        if self.embedded is not None:
            self.embedded.warmup()
        if self.remote is not None:
            sizes = batch_sizes or (self.embedded.batch_sizes if self.embedded else (1,))
            await self.remote.warmup(sizes)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait until every dispatched batch has been served or dropped."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def close(self) -> None:
        """Cancel what is still in flight (rows counted as ``SHUTDOWN``)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _bad_shape(outputs: Outputs, n: int) -> str | None:
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != n:
            return f"output {name!r} has shape {arr.shape}, expected {n} rows"
    return None if outputs else "no outputs"
