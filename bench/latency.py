"""Per-call latency sampling for the bench suites (pytest-benchmark keeps round means only).

Use :func:`sample_ns` to time individual calls with ``time.perf_counter_ns`` and
:func:`percentiles` to summarise them; store the result in ``benchmark.extra_info`` so the JSON
that ``--benchmark-autosave`` writes keeps P50/P99/P99.9 next to pytest-benchmark's own figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

SMOKE = os.environ.get("RF_BENCH_SMOKE") == "1"
"""Smoke mode (CI): benches shrink their sizes and only check that they still work."""


def scaled(full: int, smoke: int) -> int:
    """``smoke`` in smoke mode, else ``full``."""
    return smoke if SMOKE else full


def sample_ns(fn: Callable[[], object], n: int, warmup: int = 100) -> npt.NDArray[np.int64]:
    """Call ``fn`` ``warmup`` times untimed, then ``n`` times, returning each call's ns."""
    for _ in range(warmup):
        fn()
    out = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def percentiles(samples_ns: npt.ArrayLike, scale: float = 1.0) -> dict[str, float]:
    """P50/P99/P99.9/max (and mean) of ``samples_ns``, each divided by ``scale`` (e.g. per tick)."""
    arr = np.asarray(samples_ns, dtype=np.float64) / scale
    p50, p99, p999 = np.percentile(arr, [50, 99, 99.9])
    return {
        "p50_ns": float(p50),
        "p99_ns": float(p99),
        "p99_9_ns": float(p999),
        "max_ns": float(arr.max()),
        "mean_ns": float(arr.mean()),
        "n": int(arr.size),
    }
