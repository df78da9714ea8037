"""What flows between the micro-batcher, the backends and the engine: batches, results, counters.

A batch is a handful of numpy arrays (one row per symbol update); nothing here is per row.
Signal flag bits are those of signal layout v1 (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

FLAG_CANARY: Final = 1 << 0
FLAG_CONTEXT_STALE: Final = 1 << 1
FLAG_FALLBACK: Final = 1 << 2
FLAG_COALESCED: Final = 1 << 3
FLAG_HALTED: Final = 1 << 4

LABEL_STABLE: Final = "stable"
LABEL_CANARY: Final = "canary"

Outputs = dict[str, npt.NDArray[np.float32]]


class DropReason(IntEnum):
    """Why a row got no result (every row gets a result or one of these, counted)."""

    QUEUE_OVERFLOW = 0
    """The bounded queue was full after coalescing: the oldest pending row was dropped."""
    NO_BACKEND = 1
    """The primary failed and no embedded backend is configured to serve the batch."""
    BACKEND_ERROR = 2
    """The backend that should serve the batch (embedded, or the fallback) raised."""
    SHUTDOWN = 3
    """Still pending or in flight when the pipeline was closed."""


@dataclass(slots=True)
class Batch:
    """Rows taken from the batcher's queue, in arrival order (arrays own their memory)."""

    seq: int
    symbol_ids: npt.NDArray[np.int32]
    ticks: npt.NDArray[np.float32]
    context: npt.NDArray[np.float32]
    event_ts_ns: npt.NDArray[np.int64]
    arrival_ns: npt.NDArray[np.int64]
    """``perf_counter_ns`` when the row (or the newest row that replaced it) was submitted."""
    flags: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.symbol_ids.shape[0])

    def select(self, index: npt.NDArray[np.intp]) -> Batch:
        """The rows at ``index`` (a copy)."""
        return Batch(
            self.seq,
            self.symbol_ids[index],
            self.ticks[index],
            self.context[index],
            self.event_ts_ns[index],
            self.arrival_ns[index],
            self.flags[index],
        )


@dataclass(slots=True)
class BatchResult:
    """Model outputs for some rows of one batch, all served by one model version and backend.

    ``flags`` already carries the canary / fallback / coalesced / context-stale bits of each row.
    A batch split between stable and canary symbols yields one result per label.
    """

    batch_seq: int
    label: str
    backend: str
    model_version: int
    symbol_ids: npt.NDArray[np.int32]
    event_ts_ns: npt.NDArray[np.int64]
    arrival_ns: npt.NDArray[np.int64]
    flags: npt.NDArray[np.uint16]
    outputs: Outputs
    done_ns: int

    def __len__(self) -> int:
        return int(self.symbol_ids.shape[0])


@dataclass(slots=True)
class LabelStats:
    """Per-label counters of the primary backend (latency samples in a fixed ring)."""

    calls: int = 0
    rows: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_ns: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(4096, np.int64))
    n_latency: int = 0

    def record_latency(self, ns: int) -> None:
        self.latency_ns[self.n_latency % self.latency_ns.shape[0]] = ns
        self.n_latency += 1

    def record_error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def percentiles_ns(self) -> dict[str, float]:
        """P50/P99/P99.9 of the last samples (empty dict when none)."""
        n = min(self.n_latency, self.latency_ns.shape[0])
        if n == 0:
            return {}
        p50, p99, p999 = np.percentile(self.latency_ns[:n], [50, 99, 99.9])
        return {"p50_ns": float(p50), "p99_ns": float(p99), "p99_9_ns": float(p999)}


@dataclass(slots=True)
class InferenceCounters:
    """Row accounting shared by the batcher and the pipeline.

    Invariant once idle: ``rows_submitted == rows_delivered + rows_coalesced + sum(dropped)``.
    """

    rows_submitted: int = 0
    rows_coalesced: int = 0
    rows_delivered: int = 0
    rows_fallback: int = 0
    batches_dispatched: int = 0
    batches_fallback: int = 0
    deadline_misses: int = 0
    late_replies_discarded: int = 0
    dropped: dict[DropReason, int] = field(default_factory=lambda: dict.fromkeys(DropReason, 0))
    flushes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("full", "window", "burst", "timer", "forced"), 0)
    )

    def drop(self, reason: DropReason, n: int) -> None:
        self.dropped[reason] += n

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())
