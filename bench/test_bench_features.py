"""features: ns per touched symbol per frame, native kernel versus the numpy reference.

Both sides consume the same mixed stream (trades, quotes, a few corrections and cancels over
``N_SYMBOLS`` symbols) in frames of 1..50 messages, or of one message. Each frame is written into
the rings untimed; only ``update(touched, n)`` is timed, per frame, and divided by the number of
symbols the frame touched. The kernel runs under pytest-benchmark (one round per frame); the
reference is timed the same way in the same test, and the ratio of the two is recorded.
``extra_info`` also records the largest difference between the two sides' final rows.

Run: ``.venv/bin/pytest bench/test_bench_features.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks it to a few hundred messages).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from bench.latency import percentiles, scaled
from relentless_fast._features import FeatureKernel
from relentless_fast.features.reference import ReferenceFeatures
from relentless_fast.records import Kind
from tests.unit.fake_rings import Event, FakeFeed, random_stream, split_frames

N_SYMBOLS = 500
N_EVENTS = scaled(60_000, 400)
KINDS_P = (0.45, 0.5, 0.025, 0.025)


def _frames(max_len: int) -> list[list[Event]]:
    rng = np.random.default_rng(2026)
    n_events = N_EVENTS if max_len > 1 else N_EVENTS // 4
    events = random_stream(rng, N_SYMBOLS, n_events, mean_gap_s=0.002, kinds_p=KINDS_P)
    return split_frames(rng, events, max_len)


def _replay(impl: Any, feed: FakeFeed, frames: list[list[Event]]) -> list[float]:
    """Manual per-frame timing of ``impl.update``; returns ns per touched symbol per frame."""
    out = []
    clock = time.perf_counter_ns
    for frame in frames:
        ids, n = feed.push(frame)
        t0 = clock()
        impl.update(ids, n)
        out.append((clock() - t0) / n)
    return out


@pytest.mark.parametrize(("profile", "max_len"), [("frames_1_50", 50), ("frames_1", 1)])
def test_features_kernel_vs_reference(benchmark: Any, profile: str, max_len: int) -> None:
    frames = _frames(max_len)
    caps = {Kind.TRADE: 256, Kind.QUOTE: 256, Kind.CORRECTION: 64, Kind.CANCEL: 64}

    ref_feed = FakeFeed(N_SYMBOLS, caps)
    ref = ReferenceFeatures(ref_feed.rings, N_SYMBOLS)
    ref_ns = _replay(ref, ref_feed, frames)

    feed = FakeFeed(N_SYMBOLS, caps)
    kernel = FeatureKernel(feed.rings, N_SYMBOLS)
    kernel_ns: list[float] = []
    pending = iter(frames)
    clock = time.perf_counter_ns

    def setup() -> tuple[tuple[Any, int], dict[str, Any]]:
        ids, n = feed.push(next(pending))
        return (ids, n), {}

    def target(ids: Any, n: int) -> None:
        t0 = clock()
        kernel.update(ids, n)
        kernel_ns.append((clock() - t0) / n)

    benchmark.group = f"features-{profile}"
    benchmark.pedantic(target, setup=setup, rounds=len(frames), iterations=1, warmup_rounds=0)
    for frame in pending:  # under --benchmark-disable pedantic runs one round only
        target(*feed.push(frame))
    assert len(kernel_ns) == len(frames)

    diff = float(np.max(np.abs(kernel.features.astype(np.float64) - ref.features)))
    np.testing.assert_allclose(kernel.features, ref.features, rtol=1e-6, atol=1e-6)
    k, r = percentiles(kernel_ns), percentiles(ref_ns)
    benchmark.extra_info.update(
        {
            "frames": len(frames),
            "messages": sum(len(f) for f in frames),
            "symbols": N_SYMBOLS,
            "kernel_p50_ns_per_symbol": k["p50_ns"],
            "kernel_p99_ns_per_symbol": k["p99_ns"],
            "kernel_p99_9_ns_per_symbol": k["p99_9_ns"],
            "reference_p50_ns_per_symbol": r["p50_ns"],
            "reference_p99_ns_per_symbol": r["p99_ns"],
            "reference_p99_9_ns_per_symbol": r["p99_9_ns"],
            "speedup_p50": r["p50_ns"] / k["p50_ns"],
            "speedup_p99": r["p99_ns"] / k["p99_ns"],
            "max_abs_diff": diff,
            "correct": True,
        }
    )
