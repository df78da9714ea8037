"""Stub of the micro-batcher's queue kernel (ext/_batchq.pyx); used by inference.batcher."""

from typing import final

import numpy as np
import numpy.typing as npt

_Taken = tuple[
    npt.NDArray[np.int32],
    npt.NDArray[np.float32],
    npt.NDArray[np.float32],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint16],
]

@final
class BatchQueue:
    """Bounded ring of pending rows (arrival order), optionally one row per symbol."""

    @property
    def n_symbols(self) -> int: ...
    @property
    def n_features(self) -> int: ...
    @property
    def context_dim(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def coalesce(self) -> bool: ...
    @property
    def coalesced_flag(self) -> int: ...
    @property
    def count(self) -> int:
        """Rows pending."""
    @property
    def oldest_enqueued_ns(self) -> int:
        """When the oldest pending row entered the queue (its window start); ValueError if empty."""
    def __init__(
        self,
        n_symbols: int,
        n_features: int,
        context_dim: int,
        capacity: int,
        coalesce: bool,
        coalesced_flag: int,
    ) -> None: ...
    def push(
        self,
        symbol_ids: npt.NDArray[np.int32],
        ticks: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32],
        event_ts_ns: npt.NDArray[np.int64],
        flags: npt.NDArray[np.uint16] | None,
        now_ns: int,
    ) -> tuple[int, int]:
        """Queue one frame's rows; returns ``(rows_coalesced, rows_dropped)``."""
    def take(self, k: int) -> _Taken:
        """Remove the ``k`` oldest rows; returns new arrays in arrival order."""
    def discard(self, k: int) -> None:
        """Drop the ``k`` oldest rows (their symbols are no longer pending)."""
