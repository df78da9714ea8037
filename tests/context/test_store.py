"""Delivery: atomic snapshot, Redis publish, the reader (latest, wait, staleness), the schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from relentless_fast._proto.relentless_fast_pb2 import DailyContext
from relentless_fast.context import embedding, scheduler
from relentless_fast.context.publish import publish_redis, read_snapshot, write_snapshot
from relentless_fast.context.store import (
    ContextStore,
    ContextVersionError,
    LoadedContext,
    trading_days_behind,
)
from tests.context.conftest import RedisProcess

REPO = Path(__file__).resolve().parents[2]
PREFIX = "rf:test"


def make_ctx(version: int, as_of: str = "2025-01-21", n_symbols: int = 3) -> DailyContext:
    ctx = DailyContext(
        as_of_date=as_of,
        version=version,
        embedding_version=embedding.CONTEXT_EMBEDDING_VERSION,
        fed_funds_rate=4.0 + version / 100,
        fed_stance="neutral",
    )
    ctx.sector_scores["energy"] = 0.5
    for i in range(n_symbols):
        ctx.symbols.add(symbol=f"S{i}", symbol_id=i, sector="technology", news_sentiment=0.1 * i)
    ctx.sources.add(source="fred", fresh=True, as_of_unix_ns=1)
    return ctx


def test_snapshot_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "d" / "ctx.pb"
    assert read_snapshot(path) is None
    write_snapshot(path, make_ctx(1))
    write_snapshot(path, make_ctx(2))
    assert read_snapshot(path) == make_ctx(2)
    assert sorted(p.name for p in path.parent.iterdir()) == ["ctx.pb"]  # no temp file left


def test_snapshot_write_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ctx.pb"
    write_snapshot(path, make_ctx(1))

    def boom(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_snapshot(path, make_ctx(2))
    assert read_snapshot(path) == make_ctx(1)
    assert [p.name for p in tmp_path.iterdir()] == ["ctx.pb"]


def test_loaded_context_embedding_and_version_check(tmp_path: Path) -> None:
    loaded = LoadedContext.from_context(make_ctx(5))
    assert loaded.version == 5 and loaded.as_of == dt.date(2025, 1, 21)
    assert loaded.global_part.shape == (embedding.GLOBAL_DIM,)
    assert loaded.symbols.shape == (3, embedding.SYMBOL_DIM)
    by_name = loaded.symbols_for({"S2": 0, "S0": 1})
    np.testing.assert_array_equal(by_name[0], loaded.symbols[2])
    bad = make_ctx(6)
    bad.embedding_version = 99
    with pytest.raises(ContextVersionError, match="embedding v99"):
        LoadedContext.from_context(bad)
    write_snapshot(tmp_path / "c.pb", make_ctx(7))
    latest = ContextStore(snapshot_path=tmp_path / "c.pb").latest()
    assert latest is not None and latest.version == 7
    assert ContextStore(snapshot_path=tmp_path / "none.pb").latest() is None
    with pytest.raises(ValueError, match="snapshot path or a redis"):
        ContextStore()


@pytest.mark.parametrize(
    ("as_of", "today", "behind", "fresh"),
    [
        ("2025-01-17", "2025-01-17", 0, True),  # same day
        ("2025-01-17", "2025-01-18", 0, True),  # Saturday
        ("2025-01-24", "2025-01-27", 1, True),  # Monday uses Friday's: fresh
        ("2025-01-17", "2025-01-21", 1, True),  # Tuesday after the MLK-day holiday
        ("2025-01-23", "2025-01-27", 2, False),  # Thursday's on Monday: stale
        ("2025-01-08", "2025-01-10", 1, True),  # 2025-01-09 market closed (national mourning)
    ],
)
def test_staleness_in_trading_days(as_of: str, today: str, behind: int, fresh: bool) -> None:
    d0, d1 = dt.date.fromisoformat(as_of), dt.date.fromisoformat(today)
    assert trading_days_behind(d0, d1) == behind
    assert LoadedContext.from_context(make_ctx(1, as_of)).is_fresh(d1) is fresh


async def test_file_watch_wait_newer(tmp_path: Path) -> None:
    path = tmp_path / "c.pb"
    store = ContextStore(snapshot_path=path, poll_interval_s=0.01)
    with pytest.raises(TimeoutError):
        await store.wait_newer(0, timeout_s=0.1)  # nothing published yet
    write_snapshot(path, make_ctx(1))
    assert (await store.wait_newer(0, timeout_s=5)).version == 1
    waiter = asyncio.create_task(store.wait_newer(1, timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    write_snapshot(path, make_ctx(2))
    assert (await waiter).version == 2


def test_redis_publish_layout_and_latest(redis_server: RedisProcess) -> None:
    import redis

    ctx = make_ctx(3)
    publish_redis(redis_server.url, PREFIX, ctx)
    client = redis.Redis.from_url(redis_server.url)
    try:
        emb: dict[bytes, bytes] = client.hgetall(f"{PREFIX}:emb:2025-01-21")  # type: ignore[assignment]
        assert int(emb[b"version"]) == 3 and int(emb[b"n_symbols"]) == 3
        g = np.frombuffer(emb[b"global"], dtype=np.float32)
        s = np.frombuffer(emb[b"symbols"], dtype=np.float32).reshape(3, embedding.SYMBOL_DIM)
        np.testing.assert_array_equal(g, embedding.build_global(ctx))
        np.testing.assert_array_equal(s, embedding.build_symbols(ctx, 3))
        old = make_ctx(9, as_of="2025-01-02")
        publish_redis(redis_server.url, PREFIX, old, make_current=False)  # a backfilled day
        assert client.exists(f"{PREFIX}:ctx:2025-01-02")
    finally:
        client.close()
    latest = ContextStore(redis_url=redis_server.url, prefix=PREFIX).latest()
    assert latest is not None and latest.context == ctx


def test_redis_down_falls_back_to_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path / "c.pb", make_ctx(4))
    store = ContextStore(snapshot_path=tmp_path / "c.pb", redis_url="redis://127.0.0.1:9/0")
    latest = store.latest()
    assert latest is not None and latest.version == 4


async def test_redis_wait_newer_pubsub(redis_server: RedisProcess) -> None:
    store = ContextStore(redis_url=redis_server.url, prefix=PREFIX)
    publish_redis(redis_server.url, PREFIX, make_ctx(1))
    assert (await store.wait_newer(0, timeout_s=5)).version == 1  # already there: re-read
    waiter = asyncio.create_task(store.wait_newer(1, timeout_s=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await asyncio.to_thread(publish_redis, redis_server.url, PREFIX, make_ctx(2))
    assert (await waiter).version == 2


class _Lines:
    """Lines of a child's stdout, read by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.t.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.q.put(line.strip())

    def next(self, timeout: float = 20.0) -> str:
        return self.q.get(timeout=timeout)

    def empty_for(self, seconds: float) -> bool:
        try:
            self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


def _reader(target: str) -> tuple[subprocess.Popen[str], _Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.context.reader_proc", target, PREFIX],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines = _Lines(proc.stdout)
    assert lines.next() == "ready"
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def test_reader_process_sees_each_version_once_across_redis_restart(
    redis_server: RedisProcess,
) -> None:
    proc, lines = _reader(redis_server.url)
    try:
        seen: list[int] = []
        for v in (1, 2):
            publish_redis(redis_server.url, PREFIX, make_ctx(v))
            seen.append(int(lines.next().split()[0]))
        redis_server.stop()
        redis_server.start()  # same port, empty (no persistence)
        for v in (3, 4):
            publish_redis(redis_server.url, PREFIX, make_ctx(v))
            fields = lines.next().split()
            seen.append(int(fields[0]))
        assert int(fields[2]) >= 1  # the reader did reconnect
        assert lines.empty_for(1.5)  # no duplicate from the periodic or reconnect re-reads
        assert seen == [1, 2, 3, 4]
    finally:
        _stop(proc)


def test_reader_process_file_watch_sees_each_version_once(tmp_path: Path) -> None:
    path = tmp_path / "c.pb"
    proc, lines = _reader(str(path))
    try:
        seen = []
        for v in (1, 2, 3):
            write_snapshot(path, make_ctx(v))
            seen.append(int(lines.next().split()[0]))
        write_snapshot(path, make_ctx(3))  # same version rewritten: not a new one
        assert lines.empty_for(0.5)
        assert seen == [1, 2, 3]
    finally:
        _stop(proc)


NY = "America/New_York"


@pytest.mark.parametrize(
    ("now", "run_utc", "session"),
    [
        ("2025-01-16T12:00:00+00:00", "2025-01-17T10:30:00+00:00", "2025-01-17"),  # winter: UTC-5
        ("2025-01-17T11:00:00+00:00", "2025-01-21T10:30:00+00:00", "2025-01-21"),  # weekend + MLK
        ("2025-03-07T12:00:00+00:00", "2025-03-10T09:30:00+00:00", "2025-03-10"),  # DST begins
        ("2025-10-31T10:00:00+00:00", "2025-11-03T10:30:00+00:00", "2025-11-03"),  # DST ends
        ("2025-07-03T09:00:00+00:00", "2025-07-03T09:30:00+00:00", "2025-07-03"),  # summer, before
        (
            "2025-07-03T09:31:00+00:00",
            "2025-07-07T09:30:00+00:00",
            "2025-07-07",
        ),  # July 4 + weekend
    ],
)
def test_next_run_follows_zone_and_calendar(now: str, run_utc: str, session: str) -> None:
    when, day = scheduler.next_run(dt.datetime.fromisoformat(now), "05:30", NY)
    assert when == dt.datetime.fromisoformat(run_utc)
    assert day == dt.date.fromisoformat(session)


def test_next_run_needs_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        scheduler.next_run(dt.datetime(2025, 1, 1), "05:30", NY)


async def test_run_schedule_survives_a_failing_day(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [dt.datetime(2025, 1, 16, 12, 0, tzinfo=dt.UTC)]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += dt.timedelta(seconds=seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    days: list[dt.date] = []

    async def job(day: dt.date) -> int:
        days.append(day)
        if len(days) == 1:
            raise RuntimeError("source exploded")
        return 0

    await scheduler.run_schedule(job, "05:30", NY, clock=lambda: now[0], max_runs=3)
    assert days == [dt.date(2025, 1, 17), dt.date(2025, 1, 21), dt.date(2025, 1, 22)]
    assert sleeps[0] == pytest.approx(22.5 * 3600)
