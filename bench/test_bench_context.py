"""context: full ``context load`` against the replay server, and embedding + snapshot costs.

1. ``test_context_full_load``: one complete load (six sources, concurrently) for a 500-symbol
   universe against the local replay server (``tests/context/world.py``: documented shapes, per
   company one submissions JSON and one Form 4), with the production rate limits: EDGAR at 10
   requests/s, the others as configured. Recorded: wall time, requests per source, the smallest
   gap between two EDGAR request starts (must be >= 100 ms) and the ratio of the wall time to the
   EDGAR floor (EDGAR requests / 10 per second), which is the baseline a load cannot beat.
2. ``test_context_embedding_and_snapshot``: for a 500-symbol context, the embedding build
   (``build_global`` + ``build_symbols``), the atomic snapshot publish, and the reader's side
   (snapshot parse + embedding), each timed per call with P50/P99/P99.9.

Run: ``.venv/bin/pytest bench/test_bench_context.py -s`` (``RF_BENCH_SMOKE=1`` shrinks the
universe to 20 symbols and the sample counts).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from bench.latency import percentiles, sample_ns, scaled
from relentless_fast.context import embedding
from relentless_fast.context.loader import load_once
from relentless_fast.context.publish import read_snapshot, write_snapshot
from relentless_fast.context.store import LoadedContext
from tests.context.replay import ReplayServer
from tests.context.world import CONGRESS_KEY, FRED_KEY, World, make_tickers

N_SYMBOLS = scaled(500, 20)
AS_OF = dt.date(2025, 1, 21)
SEC_RPS = 10.0


@pytest.fixture
def loaded_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FRED_API_KEY", FRED_KEY)
    monkeypatch.setenv("CONGRESS_API_KEY", CONGRESS_KEY)
    with ReplayServer() as server:
        world = World(AS_OF, make_tickers(N_SYMBOLS), server)
        world.install()
        cfg = world.config(
            tmp_path,
            sec_max_rps=SEC_RPS,
            fred_max_rps=2.0,
            fred_burst=10,
            congress_max_rps=1.3,
            congress_burst=40,
            max_attempts=4,
            backoff_base_s=0.5,
            http_timeout_s=20.0,
        )
        yield world, cfg


def test_context_full_load(benchmark: Any, loaded_world: Any) -> None:
    world, cfg = loaded_world
    results: list[Any] = []

    def run() -> None:
        results.append(asyncio.run(load_once(cfg, AS_OF)))

    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1)
    wall = time.perf_counter() - t0
    result = results[-1]
    assert result.ok and result.context is not None
    assert all(s.fresh for s in result.context.sources)
    assert len(result.context.symbols) == N_SYMBOLS
    sec_starts = sorted(result.results["sec"].stats.start_times)
    min_gap = min((b - a for a, b in itertools.pairwise(sec_starts)), default=0.0)
    assert min_gap >= 1.0 / SEC_RPS - 1e-6  # EDGAR's fair-access limit honoured
    per_source = {
        "congress": len(world.server.hits("/v3/")),
        "fred": len(world.server.hits("/fred/")),
        "sec": len(world.server.hits("/submissions/")) + len(world.server.hits("/Archives/")),
        "news": len(world.server.hits("/feeds/")),
        "options": len(world.server.hits("/options/")),
    }
    floor_s = per_source["sec"] / SEC_RPS
    benchmark.extra_info.update(
        {
            "symbols": N_SYMBOLS,
            "wall_s": wall,
            "requests": result.requests,
            **{f"requests_{k}": v for k, v in per_source.items()},
            "sec_min_gap_ms": min_gap * 1e3,
            "sec_floor_s": floor_s,
            "wall_over_sec_floor": wall / floor_s if floor_s else 0.0,
            "retries": sum(r.stats.retries for r in result.results.values()),
        }
    )


def test_context_embedding_and_snapshot(benchmark: Any, loaded_world: Any, tmp_path: Path) -> None:
    _world, cfg = loaded_world
    # build one real context quickly (no EDGAR pacing needed for the encode/publish timings)
    fast_cfg = type(cfg).from_mapping(
        {**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "sec_max_rps": 10.0}
    )
    ctx = asyncio.run(load_once(fast_cfg, AS_OF)).context if N_SYMBOLS <= 20 else None
    if ctx is None:
        from tests.context.test_store import make_ctx

        ctx = make_ctx(1, n_symbols=N_SYMBOLS)
        for s in ctx.symbols:
            s.has_earnings_date, s.days_to_earnings, s.insider_transactions = True, 12.0, 3
    n = len(ctx.symbols)
    samples = scaled(2000, 50)

    def encode() -> None:
        embedding.build_global(ctx)
        embedding.build_symbols(ctx, n)

    encode_ns = sample_ns(encode, samples, warmup=20)
    snap = tmp_path / "bench_ctx.pb"
    publish_ns = sample_ns(lambda: write_snapshot(snap, ctx), scaled(300, 20), warmup=5)

    def reader() -> None:
        loaded = read_snapshot(snap)
        assert loaded is not None
        LoadedContext.from_context(loaded)

    read_ns = sample_ns(reader, scaled(1000, 30), warmup=10)
    benchmark.pedantic(encode, rounds=scaled(200, 5), iterations=1)
    enc, pub, rd = percentiles(encode_ns), percentiles(publish_ns), percentiles(read_ns)
    benchmark.extra_info.update(
        {
            "symbols": n,
            "snapshot_bytes": snap.stat().st_size,
            **{f"encode_{k}": v for k, v in enc.items()},
            **{f"snapshot_publish_{k}": v for k, v in pub.items()},
            **{f"reader_parse_encode_{k}": v for k, v in rd.items()},
            "publish_over_encode_p50": pub["p50_ns"] / enc["p50_ns"],
        }
    )
    assert embedding.build_symbols(ctx, n).shape == (n, embedding.SYMBOL_DIM)
