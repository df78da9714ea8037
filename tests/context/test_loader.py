"""Full loads against the replay server: build, DuckDB, snapshot, partial days, CLI, kill safety."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relentless_fast.context import embedding
from relentless_fast.context.cli import main as cli_main
from relentless_fast.context.config import ContextConfig
from relentless_fast.context.loader import load_once, rebuild
from relentless_fast.context.publish import read_snapshot
from relentless_fast.context.storage import PAUSE_ENV, ContextDB
from tests.context.conftest import AS_OF, RedisProcess
from tests.context.world import World

REPO = Path(__file__).resolve().parents[2]


def write_toml(cfg: ContextConfig, path: Path) -> Path:
    lines = ["[context]"]
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        lines.append(f"{f.name} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_full_load_builds_stores_and_publishes(world: World, tmp_path: Path) -> None:
    cfg = world.config(tmp_path)
    result = await load_once(cfg, AS_OF)
    assert result.ok, {s: r.error for s, r in result.results.items()}
    ctx = result.context
    assert ctx is not None
    assert all(s.fresh and s.reason == "" for s in ctx.sources)
    assert [s.source for s in ctx.sources] == list(embedding.SOURCES)
    assert ctx.as_of_date == "2025-01-21" and ctx.version == 1
    assert ctx.embedding_version == embedding.CONTEXT_EMBEDDING_VERSION
    # FRED (generated levels): DFF 4.33, T10Y2Y 0.30, DGS10 - T10YIE, unchanged target range
    assert ctx.fed_funds_rate == pytest.approx(4.33)
    assert ctx.yield_curve_slope == pytest.approx(0.30)
    assert ctx.real_interest_rate == pytest.approx(ctx.ten_year_yield - 2.35, abs=1e-5)
    assert ctx.fed_stance == "neutral"  # DGS2 - DFF = -0.03: inside the band
    assert ctx.unemployment_trend == pytest.approx(0.15)
    # calendar: CPI scheduled on the as-of day
    cal = {e.kind: e for e in ctx.calendar}
    assert cal["cpi"].days_until == 0 and set(cal) == set(embedding.CALENDAR_KINDS)
    # Congress: the enacted bill is not pending; pending ones ranked by likelihood
    assert ctx.pending_bills[0].startswith("119-hr-1001: National Defense")
    assert not any("Banking Regulation" in b for b in ctx.pending_bills)
    assert 0 < ctx.legislative_risk_score < 1
    # SEC: AAA buys, BBB sells; the Form 4 filed on the as-of day is not fetched
    syms = {s.symbol: s for s in ctx.symbols}
    assert syms["AAA"].insider_trading_signal == 1.0 and syms["BBB"].insider_trading_signal == -1.0
    assert syms["AAA"].days_to_earnings == 41.0 and syms["AAA"].earnings_date_estimated
    assert syms["AAA"].sector == "technology" and syms["BBB"].sector == "financials"
    assert not any(h.path.endswith("future.xml") for h in world.server.hits("/Archives/"))
    # news and options
    assert syms["AAA"].news_sentiment > 0 and syms["BBB"].news_sentiment < 0
    assert syms["AAA"].news_mentions == 1  # the duplicate item and the 2001 item are dropped
    assert syms["AAA"].options_flow_sentiment == 1.0 and syms["BBB"].options_flow_sentiment == -1.0
    assert "CCC" not in {s.symbol for s in ctx.symbols}
    # stored and published
    assert list(ctx.global_embedding) == pytest.approx(embedding.build_global(ctx).tolist())
    snap = read_snapshot(cfg.snapshot_path)
    assert snap == ctx
    with ContextDB(cfg.db_path) as db:
        stored = db.context_for(AS_OF)
        assert stored == ctx
        assert set(db.inputs_for(AS_OF)) == set(embedding.SOURCES)
        runs = {r.source: r for r in db.source_runs(1)}
        assert all(r.ok for r in runs.values()) and runs["sec"].requests > 0
    assert result.requests == len(world.server.requests)


async def test_requests_are_point_in_time(world: World, tmp_path: Path) -> None:
    await load_once(world.config(tmp_path), AS_OF)
    fred_hits = world.server.hits("/fred/series/observations")
    assert len(fred_hits) == 18
    assert {h.query["realtime_start"] for h in fred_hits} == {"2025-01-20"}
    assert {h.query["realtime_end"] for h in fred_hits} == {"2025-01-20"}
    assert all(h.query["observation_end"] == "2025-01-20" for h in fred_hits)
    bill = world.server.hits("/v3/bill")[0]
    assert bill.query["toDateTime"] == "2025-01-21T00:00:00Z"
    assert bill.query["fromDateTime"] == "2025-01-20T00:00:00Z"
    assert all("@" in h.headers["user-agent"] for h in world.server.hits("/submissions/"))


async def test_rebuild_from_stored_payloads_is_identical(world: World, tmp_path: Path) -> None:
    cfg = world.config(tmp_path)
    ctx = (await load_once(cfg, AS_OF)).context
    assert ctx is not None
    before = len(world.server.requests)
    again = rebuild(cfg, AS_OF)
    assert again == ctx
    assert len(world.server.requests) == before  # no network


async def test_partial_day_uses_stale_payload(world: World, tmp_path: Path) -> None:
    cfg = world.config(tmp_path)
    world.as_of = dt.date(2025, 1, 17)  # the world's filings are dated relative to its as-of
    first = await load_once(cfg, world.as_of)
    assert first.ok
    world.as_of = AS_OF
    world.fail = {"sec"}
    second = await load_once(cfg, AS_OF)
    ctx = second.context
    assert ctx is not None and ctx.version == 2
    src = {s.source: s for s in ctx.sources}
    assert not src["sec"].fresh
    assert "503" in src["sec"].reason and "2025-01-17" in src["sec"].reason
    assert src["sec"].age_secs > 0 and src["sec"].as_of_unix_ns > 0
    assert src["fred"].fresh and src["congress"].fresh
    # stale SEC data still gives the insider signal
    syms = {s.symbol: s for s in ctx.symbols}
    assert syms["AAA"].insider_trading_signal == 1.0
    g = embedding.build_global(ctx)
    assert g[embedding.GLOBAL_INDEX["fresh_sec"]] == 0.0
    assert g[embedding.GLOBAL_INDEX["fresh_fred"]] == 1.0
    with ContextDB(cfg.db_path) as db:
        runs = {r.source: r for r in db.source_runs(2)}
        assert not runs["sec"].ok and "503" in runs["sec"].reason
        assert "sec" not in db.inputs_for(AS_OF)  # only fresh payloads are stored for the day


async def test_source_without_anything_stays_neutral(world: World, tmp_path: Path) -> None:
    world.fail = {"sec", "fred"}
    cfg = world.config(tmp_path, news_feeds=[], options_csv="")
    result = await load_once(cfg, AS_OF)
    ctx = result.context
    assert ctx is not None
    src = {s.source: s for s in ctx.sources}
    assert src["news"].reason == "news: no news_feeds configured"
    assert src["fred"].as_of_unix_ns == 0 and src["fred"].age_secs == -1.0
    assert ctx.fed_funds_rate == 0.0 and ctx.fed_stance == ""
    assert src["congress"].fresh and src["calendar"].fresh


def test_cli_load_fails_only_when_nothing_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    monkeypatch.delenv("CONGRESS_API_KEY", raising=False)
    cfg = ContextConfig(
        db_path=str(tmp_path / "c.duckdb"),
        snapshot_path=str(tmp_path / "c.pb"),
        sec_data_base_url="http://127.0.0.1:9",
        sec_archive_base_url="http://127.0.0.1:9",
        sec_user_agent="t t@example.com",
        max_attempts=1,
        http_timeout_s=1.0,
    )
    toml = write_toml(cfg, tmp_path / "r.toml")
    code = cli_main(["context", "--config", str(toml), "load", "--date", "2025-01-21"])
    assert code == 1
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] is False and "FRED_API_KEY" in out["sources"]["fred"]
    assert not Path(cfg.snapshot_path).exists()


async def test_cli_backfill_show_and_snapshot_policy(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    cfg = world.config(tmp_path)
    toml = write_toml(cfg, tmp_path / "r.toml")
    run = asyncio.to_thread
    code = await run(
        cli_main,
        [
            "context",
            "--config",
            str(toml),
            "backfill",
            "--from",
            "2025-01-17",
            "--to",
            "2025-01-21",
        ],
    )
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [x["as_of"] for x in lines] == ["2025-01-17", "2025-01-21"]  # MLK day skipped
    snap = read_snapshot(cfg.snapshot_path)
    assert snap is not None and snap.as_of_date == "2025-01-21" and snap.version == 2
    # an older date built later gets a higher version but does not become current
    code = await run(cli_main, ["context", "--config", str(toml), "load", "--date", "2025-01-16"])
    assert code == 0
    capsys.readouterr()
    snap = read_snapshot(cfg.snapshot_path)
    assert snap is not None and snap.as_of_date == "2025-01-21"
    code = await run(
        cli_main,
        ["context", "--config", str(toml), "show", "--date", "2025-01-16", "--json", "--rebuild"],
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("# rebuild from stored payloads: identical")
    shown = json.loads(out.split("\n", 1)[1])
    assert shown["as_of_date"] == "2025-01-16" and shown["version"] == 3
    assert (
        await run(cli_main, ["context", "--config", str(toml), "show", "--date", "2024-01-02"]) == 1
    )


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown \\[context\\] keys: nope"):
        ContextConfig.from_mapping({"nope": 1})
    with pytest.raises(ValueError, match="sec_max_rps"):
        ContextConfig(sec_max_rps=20)
    with pytest.raises(ValueError, match="redis_url"):
        ContextConfig(redis_url="http://x")
    with pytest.raises(ValueError, match="schedule_time"):
        ContextConfig(schedule_time="25:00")
    cfg = ContextConfig.from_mapping({"news_feeds": ["http://a"], "sec_max_rps": 5})
    assert cfg.news_feeds == ("http://a",) and cfg.sec_max_rps == 5


def test_killed_loader_leaves_previous_context_intact(world: World, tmp_path: Path) -> None:
    import asyncio

    cfg = world.config(tmp_path)
    first = asyncio.run(load_once(cfg, dt.date(2025, 1, 17)))
    assert first.ok and first.context is not None
    before = first.context
    toml = write_toml(cfg, tmp_path / "r.toml")
    marker = tmp_path / "in_tx"
    env = {**os.environ, PAUSE_ENV: f"{marker}:60", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relentless_fast.context.cli",
         "context", "--config", str(toml), "load", "--date", "2025-01-21"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "loader never reached its write transaction"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    with ContextDB(cfg.db_path) as db:
        assert db.count_contexts() == 1
        latest = db.latest_context()
        assert latest == before
        assert set(db.inputs_for(dt.date(2025, 1, 21))) == set()
        assert db.next_version() == 2
    snap = read_snapshot(cfg.snapshot_path)
    assert snap == before
    # and the next load works on the recovered file
    again = asyncio.run(load_once(cfg, AS_OF))
    assert again.ok and again.context is not None and again.context.version == 2


async def test_load_publishes_to_redis_and_the_reader_sees_it(
    world: World, tmp_path: Path, redis_server: RedisProcess
) -> None:
    from relentless_fast.context.store import ContextStore

    cfg = world.config(tmp_path, redis_url=redis_server.url, redis_prefix="rf:e2e")
    store = ContextStore(redis_url=cfg.redis_url, prefix=cfg.redis_prefix)
    waiter = asyncio.create_task(store.wait_newer(0, timeout_s=30))
    result = await load_once(cfg, AS_OF)
    loaded = await waiter
    assert result.context is not None and loaded.context == result.context
    assert loaded.is_fresh(dt.date(2025, 1, 21)) and loaded.symbols.shape[0] == len(world.tickers)
    file_store = ContextStore(snapshot_path=cfg.snapshot_path)
    latest = file_store.latest()
    assert latest is not None and latest.version == loaded.version


async def test_keys_never_reach_the_logs(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from tests.context.world import CONGRESS_KEY, FRED_KEY

    world.fail = {"fred"}  # failures log their URLs too
    with caplog.at_level(logging.DEBUG):
        result = await load_once(world.config(tmp_path), AS_OF)
    assert result.ok
    assert "api_key=***" in caplog.text  # the request lines were logged, redacted
    assert FRED_KEY not in caplog.text and CONGRESS_KEY not in caplog.text


async def test_sec_daily_index_mode_and_warm_day(world: World, tmp_path: Path) -> None:
    cfg = world.config(tmp_path)
    world.as_of = dt.date(2025, 1, 17)
    first = await load_once(cfg, world.as_of)
    assert first.ok
    world.as_of = AS_OF
    world.server.requests.clear()
    second = await load_once(cfg, AS_OF)
    assert second.ok and second.context is not None
    with ContextDB(cfg.db_path) as db:
        payload = db.inputs_for(AS_OF)["sec"].payload
    assert payload["mode"] == "daily-index"
    assert payload["index_days"] == ["2025-01-17"]  # window 18..20: weekend and MLK day
    # warm day: only AAA (an 8-K in the window) re-reads its submissions; the rest carry over
    subs = world.server.hits("/submissions/")
    assert [h.path for h in subs] == ["/submissions/CIK0001000001.json"]
    assert payload["companies"]["BBB"]["fetched"] == "2025-01-17"
    # Form 4s come from the index; the reporting owner's copy is never fetched
    txt = [h.path for h in world.server.hits("/Archives/edgar/data/")]
    assert txt and all(p.endswith(".txt") for p in txt)
    assert not any("/9999999/" in p for p in txt)
    syms = {s.symbol: s for s in second.context.symbols}
    assert syms["AAA"].insider_trading_signal == 1.0 and syms["BBB"].insider_trading_signal == -1.0
    assert syms["BBB"].sector == "financials"  # the carried SIC


async def test_sec_falls_back_to_submissions_without_indexes(world: World, tmp_path: Path) -> None:
    world.index_status = 403
    result = await load_once(world.config(tmp_path), AS_OF)
    assert result.ok and result.context is not None
    with ContextDB(world.config(tmp_path).db_path) as db:
        payload = db.inputs_for(AS_OF)["sec"].payload
    assert payload["mode"] == "submissions" and payload["index_days"] == []
    assert set(payload["index_missing"]) == {"2025-01-17"}
    syms = {s.symbol: s for s in result.context.symbols}
    assert syms["AAA"].insider_trading_signal == 1.0 and syms["BBB"].insider_trading_signal == -1.0
    assert all(h.path.endswith(".xml") for h in world.server.hits("/Archives/edgar/data/"))


def test_cli_busy_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ContextConfig(db_path=str(tmp_path / "busy.duckdb"))
    toml = write_toml(cfg, tmp_path / "r.toml")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(60)", cfg.db_path],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert cli_main(["context", "--config", str(toml), "show"]) == 2
        assert "context database unavailable" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout:
            holder.stdout.close()
