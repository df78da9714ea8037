"""Tick features: schema v1, the native incremental kernel and its slow reference.

- :mod:`relentless_fast.features.schema`: names, order, parameters and version (the one place).
- :class:`relentless_fast._features.FeatureKernel`: the hot-path kernel (re-exported here).
- :mod:`relentless_fast.features.reference`: slow, obviously-correct reference used by tests and as
  the benchmark baseline.
- :func:`bar_features`: the same kernel over a bar series, for model training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from relentless_fast.features.schema import (
    FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    N_FEATURES,
    NEUTRAL_VALUES,
    RATE_TAU_S,
)

if TYPE_CHECKING:
    from relentless_fast._features import FeatureKernel

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SCHEMA_VERSION",
    "NEUTRAL_VALUES",
    "N_FEATURES",
    "FeatureKernel",
    "bar_features",
]


def __getattr__(name: str) -> Any:
    # Lazy: schema and reference import without the native module (and without an import cycle,
    # since the native module itself imports the schema).
    if name == "FeatureKernel":
        from relentless_fast._features import FeatureKernel

        return FeatureKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def bar_features(
    ts_ns: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    vwap: npt.ArrayLike | None = None,
    trade_count: npt.ArrayLike | None = None,
    *,
    rate_tau_s: float = RATE_TAU_S,
) -> npt.NDArray[np.float32]:
    """Schema v1 feature rows of one symbol's bar series, one row after each bar (float32[N, F]).

    Bars are taken in the given order. Missing ``vwap`` means ``(high + low + close) / 3``, missing
    ``trade_count`` counts each bar as one event. Spread, imbalance and has_quote stay neutral.
    ``rate_tau_s`` defaults to the schema's (60 s); daily bars may want a day-scale constant.
    """
    ts = np.ascontiguousarray(ts_ns, dtype=np.int64)
    n = len(ts)

    def f64(a: npt.ArrayLike | None) -> npt.NDArray[np.float64]:
        if a is None:
            return np.full(n, np.nan)
        return np.ascontiguousarray(a, dtype=np.float64)

    counts = (
        np.zeros(n, dtype=np.uint64)
        if trade_count is None
        else np.ascontiguousarray(trade_count, dtype=np.uint64)
    )
    from relentless_fast._features import FeatureKernel

    kernel = FeatureKernel(None, 1, rate_tau_s=rate_tau_s)
    return kernel.run_bars(0, ts, f64(high), f64(low), f64(close), f64(volume), f64(vwap), counts)
