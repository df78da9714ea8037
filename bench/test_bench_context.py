"""context: full ``context load`` against the replay server, and embedding + snapshot costs.

1. ``test_context_full_load``: complete loads (six sources, concurrently) for a 500-symbol
   universe against the local replay server (``tests/context/world.py``: documented shapes; one
   member in five has a Form 4 on the previous session), with the production rate limits: EDGAR
   strictly 10 requests/s, FRED and Congress.gov token buckets inside their quotas. Two loads:
   **cold** (empty database: every company's submissions JSON is read) for the session before, then
   **warm** (the next session: daily indexes, Form 4s, and submissions only for companies that
   reported). Recorded: wall time and requests per source of each, the smallest gap between two
   EDGAR request starts (must be >= 100 ms), and each wall time over its EDGAR floor (EDGAR
   requests / 10 per second), the baseline no load can beat.
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
        world = World(AS_OF, make_tickers(N_SYMBOLS), server, form4_every=5)
        world.install()
        cfg = world.config(
            tmp_path,
            sec_max_rps=SEC_RPS,
            fred_max_rps=1.5,
            fred_burst=30,
            congress_max_rps=1.3,
            congress_burst=40,
            max_attempts=4,
            backoff_base_s=0.5,
            http_timeout_s=20.0,
        )
        yield world, cfg


def _sec_requests(world: World) -> int:
    return len(world.server.hits("/submissions/")) + len(world.server.hits("/Archives/"))


def _record(prefix: str, result: Any, world: World, wall: float) -> dict[str, Any]:
    assert result.ok and result.context is not None
    assert all(s.fresh for s in result.context.sources)
    assert len(result.context.symbols) == N_SYMBOLS
    starts = sorted(result.results["sec"].stats.start_times)
    min_gap = min((b - a for a, b in itertools.pairwise(starts)), default=1.0)
    assert min_gap >= 1.0 / SEC_RPS - 1e-6  # EDGAR's fair-access limit honoured
    per_source = {
        "congress": len(world.server.hits("/v3/")),
        "fred": len(world.server.hits("/fred/")),
        "sec": _sec_requests(world),
        "news": len(world.server.hits("/feeds/")),
        "options": len(world.server.hits("/options/")),
    }
    floor_s = per_source["sec"] / SEC_RPS
    return {
        f"{prefix}_wall_s": wall,
        f"{prefix}_requests": result.requests,
        **{f"{prefix}_requests_{k}": v for k, v in per_source.items()},
        f"{prefix}_sec_min_gap_ms": min_gap * 1e3,
        f"{prefix}_wall_over_sec_floor": wall / floor_s if floor_s else 0.0,
        f"{prefix}_retries": sum(r.stats.retries for r in result.results.values()),
    }


def test_context_full_load(benchmark: Any, loaded_world: Any) -> None:
    world, cfg = loaded_world
    world.as_of = dt.date(2025, 1, 17)  # cold: the session before, empty database
    t0 = time.perf_counter()
    cold = asyncio.run(load_once(cfg, world.as_of))
    info = _record("cold", cold, world, time.perf_counter() - t0)
    world.as_of = AS_OF
    world.server.requests.clear()
    results: list[Any] = []

    def warm() -> None:
        results.append(asyncio.run(load_once(cfg, AS_OF)))

    t0 = time.perf_counter()
    benchmark.pedantic(warm, rounds=1, iterations=1)
    info.update(_record("warm", results[-1], world, time.perf_counter() - t0))
    benchmark.extra_info.update({"symbols": N_SYMBOLS, **info})


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
