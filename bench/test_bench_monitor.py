"""monitor: the audit log's hot-path cost per batch, and the cost of one /metrics rendering.

Groups (side by side in one run, same packed signals):

- ``audit-append-<B>``: ``AuditLog.append(view, B)`` with its writer thread running, versus the
  floor (one memoryview copy of the batch into a pre-faulted ring of the same size) and versus the
  naive way (``os.write`` of the batch to a journal on the calling thread, the disk on the loop).
  Batches are offered at about 1 M signals/s at most (a pause of B µs after each), so the writer
  keeps up as in an engine, and caches are as cold as between engine bursts.
- ``metrics-render``: ``render`` of a full engine snapshot (what one scrape costs the loop).

``extra_info``: P50/P99/P99.9 per call of each, ``ratio_p50`` = ours / floor, ``correct`` (every
appended signal is in the Parquet output after close, none dropped).

Run: ``.venv/bin/pytest bench/test_bench_monitor.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks sizes).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

import relentless_fast_signal as rs
from bench.latency import percentiles, scaled
from relentless_fast.feeds.base import FeedCounters
from relentless_fast.monitor.audit import AuditCounters, AuditLog
from relentless_fast.monitor.metrics import render
from relentless_fast.outputs.tcp import TcpCounters
from relentless_fast.outputs.udp import UdpCounters

SAMPLES = scaled(5_000, 50)
BUFFER_SIGNALS = 1 << 18


def _packed(n: int) -> memoryview:
    recs = np.zeros(n, rs.SIGNAL_RECORD_DTYPE)
    recs["sequence"] = np.arange(1, n + 1)
    recs["symbol_id"] = np.arange(n) % 500
    recs["price_target"] = 101.0
    out = bytearray(64 * n)
    rs.pack_into(recs, out)
    return memoryview(out)


def _paced(fn: Any, n: int, pause_s: float) -> np.ndarray:
    out = np.empty(n, np.int64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
        time.sleep(pause_s)
    return out


@pytest.mark.parametrize("batch", [1, 16, 128, 1024])
def test_audit_append(benchmark: Any, batch: int, tmp_path: Path) -> None:
    benchmark.group = f"audit-append-{batch}"
    view = _packed(batch)
    n = min(SAMPLES, 4 * BUFFER_SIGNALS // batch)
    pause = batch * 1e-6
    log = AuditLog(tmp_path / "audit", "BENCH", buffer_signals=BUFFER_SIGNALS, fsync_interval_s=0)
    log.open()
    try:
        ours = _paced(lambda: log.append(view, batch), n, pause)
        benchmark.pedantic(log.append, args=(view, batch), rounds=scaled(200, 5), iterations=1)
    finally:
        log.close()
    ring = bytearray(BUFFER_SIGNALS * 64)
    np.frombuffer(ring, np.uint8)[::4096] = 1
    rv = memoryview(ring)
    size = batch * 64
    pos = [0]

    def floor() -> None:
        p = pos[0] if pos[0] + size <= len(ring) else 0
        rv[p : p + size] = view
        pos[0] = p + size

    floor_ns = _paced(floor, n, pause)
    fd = os.open(tmp_path / "naive.journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        naive_ns = _paced(lambda: os.write(fd, view), n, pause)
    finally:
        os.close(fd)
    files = [str(p) for p in (tmp_path / "audit").glob("*.parquet")]
    con = duckdb.connect()
    rows = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchall()[0][0]
    con.close()
    c = log.counters
    for name, arr in (("ours", ours), ("floor", floor_ns), ("naive_write", naive_ns)):
        benchmark.extra_info.update(
            {f"{name}_{k}": v for k, v in percentiles(arr).items() if k != "n"}
        )
    benchmark.extra_info["ratio_p50"] = float(np.median(ours) / np.median(floor_ns))
    benchmark.extra_info["dropped"] = c.signals_dropped
    benchmark.extra_info["correct"] = bool(rows == c.signals_appended and c.signals_dropped == 0)
    assert rows == c.signals_appended


def test_metrics_render(benchmark: Any) -> None:
    benchmark.group = "metrics-render"
    snap: dict[str, Any] = {
        "session": "2611251634",
        "serving": True,
        "killed": False,
        "frames": 10**6,
        "ticks": 10**7,
        "parser_drops": {"truncated": 3},
        "rows_submitted": 10**6,
        "rows_coalesced": 10**5,
        "inference_drops": {},
        "batches": 10**4,
        "signals": 10**6,
        "last_sequence": 10**6,
        "suppressed": {"halted": 1, "luld": 2, "no_price": 3, "killed": 0},
        "context_version": 7,
        "context_stale": False,
        "context_swaps": 1,
        "latency_us": {"p50": 40.0, "p99": 150.0, "p99.9": 300.0, "max": 900.0},
        "rows_fallback": 0,
        "udp": dataclasses.asdict(UdpCounters()),
        "tcp": dataclasses.asdict(TcpCounters()),
        "feed": dataclasses.asdict(FeedCounters()),
    }
    extra = {"audit": dataclasses.asdict(AuditCounters())}
    text = benchmark(render, snap, extra)
    benchmark.extra_info["families"] = text.count("# TYPE ")
    benchmark.extra_info["bytes"] = len(text)
    benchmark.extra_info["correct"] = "relentless_fast_signals_total 1000000\n" in text
