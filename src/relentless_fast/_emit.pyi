"""Stub of the engine's native emit path (ext/_emit.pyx)."""

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

FLAG_CONTEXT_STALE: Final[int]
FLAG_HALTED: Final[int]
LULD_FLAG: Final[int]
LULD_SUPPRESS: Final[int]
LULD_IGNORE: Final[int]

@disjoint_base
class Emitter:
    """Per-burst row staging and signal filling over the engine's preallocated arrays."""

    @property
    def ids(self) -> npt.NDArray[np.int32]:
        """int32[S]: the symbols of the last ``collect`` / ``stage``, in id order."""
    @property
    def latency_ns(self) -> npt.NDArray[np.int64]:
        """int64 ring of latency samples (frame in to record filled, ns)."""
    @property
    def latency_count(self) -> int: ...
    @property
    def rows(self) -> int:
        """Rows staged or collected for the model."""
    @property
    def batches(self) -> int:
        """Batches staged for the embedded fast path."""
    @property
    def marked(self) -> int:
        """Symbol updates marked (one per touched symbol per frame)."""
    @property
    def suppressed_halted(self) -> int: ...
    @property
    def suppressed_luld(self) -> int: ...
    @property
    def suppressed_no_price(self) -> int: ...
    @property
    def merged(self) -> int:
        """Symbol updates folded into a later one of the same burst."""
    @property
    def staged(self) -> int:
        """Rows loaded into the bucket last staged."""
    @property
    def n_buckets(self) -> int: ...
    def __init__(
        self,
        features: npt.NDArray[np.float32],
        last_price: npt.NDArray[np.float64],
        event_ts_ns: npt.NDArray[np.int64],
        halted: npt.NDArray[np.bool_],
        limit_up: npt.NDArray[np.float64],
        limit_down: npt.NDArray[np.float64],
        records: npt.NDArray[np.void],
        *,
        strategy_id: int = 0,
        suppress_halted: bool = True,
        luld_policy: int = 0,
        latency_samples: int = 65536,
    ) -> None: ...
    def set_context(self, rows: npt.NDArray[np.float32], version: int, stale: bool) -> None:
        """Use ``rows`` (float32[S, C]) from the next ``stage`` on."""
    def add_bucket(
        self,
        ticks: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32],
        outputs: tuple[npt.NDArray[np.float32], ...],
    ) -> None:
        """A model bucket's input and output tensor views (outputs in contract order)."""
    def mark(self, touched: npt.NDArray[np.uint32], n: int, t0_ns: int) -> int:
        """The first ``n`` touched ids have a new row, from a frame that arrived at ``t0_ns``."""
    def discard(self) -> int:
        """Drop the pending symbols; returns how many there were."""
    def collect(self) -> int:
        """Take the pending symbols as rows (``ids[:n]``); returns ``n``."""
    def stage(self) -> int:
        """``collect``, then load the first chunk into a bucket: its index, or -1."""
    def stage_next(self) -> int:
        """Load the next chunk after ``finish``: a bucket index, or -1 when done."""
    def finish(self, seq0: int, emit_ts_ns: int, now_ns: int, model_version: int) -> int:
        """Signals for the invoked bucket's rows into ``records[:m]``; returns ``m``."""
    def fill(
        self,
        ids: npt.NDArray[np.int32],
        flags: npt.NDArray[np.uint16],
        action_probs: npt.NDArray[np.float32],
        confidence: npt.NDArray[np.float32],
        price_target_rel: npt.NDArray[np.float32],
        stop_loss_rel: npt.NDArray[np.float32],
        position_size: npt.NDArray[np.float32],
        risk_score: npt.NDArray[np.float32],
        urgency: npt.NDArray[np.float32],
        context_version: int,
        model_version: int,
        seq0: int,
        emit_ts_ns: int,
        now_ns: int,
    ) -> int:
        """Signals for rows served elsewhere into ``records[:m]``; returns ``m``."""

def fill_model_fields(
    records: npt.NDArray[np.void],
    outputs: Mapping[str, npt.NDArray[np.float32]],
    price: npt.NDArray[np.float64],
) -> None:
    """The model-decided fields of ``records[i]`` from ``outputs`` and ``price[i]``."""
