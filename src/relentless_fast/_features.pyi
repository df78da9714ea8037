"""Stub of the native feature kernel (ext/_features.pyx); see relentless_fast.features.schema."""

from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

FEATURE_SCHEMA_VERSION: Final[int]
N_FEATURES: Final[int]

class _Rings(Protocol):
    def data(self, kind: int, /) -> npt.NDArray[np.void]: ...
    def heads(self, kind: int, /) -> npt.NDArray[np.uint64]: ...
    def capacity(self, kind: int, /) -> int: ...

@disjoint_base
class FeatureKernel:
    """Incremental feature rows (schema v1) for ``n_symbols`` symbols, fed from the tick rings."""

    @property
    def features(self) -> npt.NDArray[np.float32]:
        """float32[n_symbols, N_FEATURES], rewritten in place by update/run_bars/reset."""
    @property
    def last_price(self) -> npt.NDArray[np.float64]:
        """float64[n_symbols]: each symbol's last price event (NaN before the first), in place."""
    @property
    def event_ts_ns(self) -> npt.NDArray[np.int64]:
        """int64[n_symbols]: exchange time of each symbol's last consumed record, in place."""
    @property
    def n_symbols(self) -> int: ...
    @property
    def bars(self) -> bool: ...
    @property
    def rate_tau_s(self) -> float: ...
    @property
    def tz(self) -> str: ...
    def __init__(
        self,
        rings: _Rings | None,
        n_symbols: int,
        *,
        bars: bool = False,
        rate_tau_s: float = 60.0,
        tz: str = "America/New_York",
    ) -> None: ...
    def update(self, touched_ids: npt.NDArray[np.uint32], n: int) -> int:
        """Consume the new records of the first ``n`` touched ids; return records consumed."""
    def run_bars(
        self,
        symbol_id: int,
        ts_ns: npt.NDArray[np.int64],
        high: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        close: npt.NDArray[np.float64],
        volume: npt.NDArray[np.float64],
        vwap: npt.NDArray[np.float64],
        trade_count: npt.NDArray[np.uint64],
        out: npt.NDArray[np.float32] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Feed a bar series to one symbol; return the row after each bar (float32[N, F])."""
    def reset(self, symbol_id: int) -> None:
        """Forget a symbol's state; its cursors jump to the current ring heads."""
    def row(self, symbol_id: int) -> npt.NDArray[np.float32]:
        """A copy of one symbol's feature row."""
    def cursors(self) -> npt.NDArray[np.uint64]:
        """Read cursors, uint64[N_KINDS, n_symbols] (copy)."""
    def counters(self) -> dict[str, int]:
        """Loss and drop counters by reason."""
