"""Fetch every daily source concurrently into JSON-able payloads (the raw observations).

A payload holds exactly what the builder needs, so a stored payload rebuilds the same context
(``context show`` / ``backfill``). Each source runs in its own task; a failing source gives a
:class:`FetchResult` with ``error`` set and the others carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from relentless_fast.context import fetch_sec as sec_fetch
from relentless_fast.context.config import CONGRESS_KEY_ENV, FRED_KEY_ENV, ContextConfig, env_key
from relentless_fast.context.embedding import SOURCES
from relentless_fast.context.sources import congress, fred, news, options
from relentless_fast.context.sources.http import HttpStats, RetryPolicy, SourceError, SourceHttp
from relentless_fast.context.universe import Member

log = logging.getLogger(__name__)

Payload = dict[str, Any]


@dataclass
class FetchResult:
    """What one source gave in this run."""

    source: str
    payload: Payload | None
    error: str
    fetched_unix_ns: int
    stats: HttpStats


@dataclass
class FetchContext:
    """Shared inputs of the source fetchers."""

    cfg: ContextConfig
    as_of: dt.date
    universe: Sequence[Member]
    client: httpx.AsyncClient
    retry: RetryPolicy
    since: dt.datetime | None = None  # last successful Congress fetch (UTC)
    previous_sec: Payload | None = None  # latest stored SEC payload (entries carried forward)

    def http(
        self, source: str, max_rps: float, burst: int, headers: dict[str, str] | None = None
    ) -> SourceHttp:
        """A rate-limited, retrying requester for ``source``."""
        return SourceHttp(
            source, self.client, max_rps=max_rps, burst=burst, retry=self.retry, headers=headers
        )


async def fetch_fred(fc: FetchContext, http: SourceHttp) -> Payload:
    """Every configured series over the lookback, as known the day before ``as_of``."""
    key = env_key(FRED_KEY_ENV)
    if not key:
        raise SourceError("fred", f"no API key: set {FRED_KEY_ENV}")
    client = fred.FredClient(http, fc.cfg.fred_base_url, key)
    realtime = fc.as_of - dt.timedelta(days=1)
    # extra room so the change window and the 3-month unemployment trend have a reference
    start = fc.as_of - dt.timedelta(days=fc.cfg.zscore_lookback_days + 120)
    sem = asyncio.Semaphore(fc.cfg.http_concurrency)

    async def one(series_id: str) -> tuple[str, list[list[Any]] | str]:
        async with sem:
            try:
                obs = await client.observations(series_id, start, realtime, realtime)
            except SourceError as exc:
                return series_id, str(exc)
        return series_id, [
            [o.date.isoformat(), None if o.value != o.value else o.value] for o in obs
        ]

    got = await asyncio.gather(*(one(s) for s in fc.cfg.fred_series))
    series = {k: v for k, v in got if isinstance(v, list)}
    errors = {k: v for k, v in got if isinstance(v, str)}
    if not series:
        raise SourceError("fred", f"every series failed: {next(iter(errors.values()), '')}")
    return {"realtime": realtime.isoformat(), "series": series, "errors": errors}


async def fetch_calendar(fc: FetchContext, http: SourceHttp) -> Payload:
    """Tracked releases scheduled from ``as_of`` to ``as_of + calendar_horizon_days``."""
    key = env_key(FRED_KEY_ENV)
    if not key:
        raise SourceError("calendar", f"no API key: set {FRED_KEY_ENV}")
    client = fred.FredClient(http, fc.cfg.fred_base_url, key)
    end = fc.as_of + dt.timedelta(days=fc.cfg.calendar_horizon_days)
    rows = await client.release_dates(fc.as_of, end)
    tracked = [[rid, day.isoformat()] for rid, _n, day in rows if rid in fred.CALENDAR_RELEASES]
    return {"releases": tracked, "scanned": len(rows)}


async def fetch_congress(fc: FetchContext, http: SourceHttp) -> Payload:
    """Bills updated since the last run (or the lookback), with details of the relevant ones."""
    from relentless_fast.context import legislation

    key = env_key(CONGRESS_KEY_ENV)
    if not key:
        raise SourceError("congress", f"no API key: set {CONGRESS_KEY_ENV}")
    client = congress.CongressClient(http, fc.cfg.congress_base_url, key)
    end = dt.datetime.combine(fc.as_of, dt.time(0, 0), tzinfo=dt.UTC)
    start = end - dt.timedelta(days=fc.cfg.congress_lookback_days)
    if fc.since is not None and start < fc.since < end:
        start = fc.since
    bills = await client.bills_updated(start, end, fc.cfg.congress_max_bills)
    relevant = [b for b in bills if legislation.topics_of(b)]
    sem = asyncio.Semaphore(fc.cfg.http_concurrency)
    detail_errors: list[str] = []

    async def detail(b: congress.Bill) -> None:
        async with sem:
            try:
                await client.detail(b)
            except SourceError as exc:
                detail_errors.append(str(exc))

    await asyncio.gather(*(detail(b) for b in relevant[: fc.cfg.congress_detail_max]))
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "bills": [dataclasses.asdict(b) for b in bills],
        "detail_errors": detail_errors[:20],
    }


async def fetch_sec(fc: FetchContext, http: SourceHttp) -> Payload:
    """Filings of the universe in the lookback window and their Form 4 trades (see fetch_sec)."""
    if not fc.cfg.sec_user_agent.strip():
        raise SourceError("sec", "sec_user_agent is not configured ('<app> <contact email>')")
    client = sec_fetch.client_for(http, fc.cfg.sec_data_base_url, fc.cfg.sec_archive_base_url)
    return await sec_fetch.fetch_sec_payload(
        client,
        list(fc.universe),
        fc.as_of,
        lookback_days=fc.cfg.sec_lookback_days,
        refresh_days=fc.cfg.sec_refresh_days,
        form4_max=fc.cfg.form4_max_per_symbol,
        concurrency=fc.cfg.http_concurrency,
        previous=fc.previous_sec,
    )


async def fetch_news(fc: FetchContext, http: SourceHttp) -> Payload:
    """Headlines of every configured feed published in the 24 hours before as-of 12:00 UTC."""
    if not fc.cfg.news_feeds:
        raise SourceError("news", "no news_feeds configured")
    client = news.NewsClient(http)
    end = dt.datetime.combine(fc.as_of, dt.time(12, 0), tzinfo=dt.UTC)  # ~07:00-08:00 New York
    start = end - dt.timedelta(days=1)
    got = await asyncio.gather(
        *(client.fetch(u) for u in fc.cfg.news_feeds), return_exceptions=True
    )
    headlines: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: set[str] = set()
    for url, res in zip(fc.cfg.news_feeds, got, strict=True):
        if isinstance(res, BaseException):
            errors.append(f"{url}: {res}")
            continue
        for h in res:
            if news.in_window(h, start, end) and h.uid not in seen:
                seen.add(h.uid)
                headlines.append(
                    {
                        "uid": h.uid,
                        "title": h.title,
                        "summary": h.summary[:500],
                        "published": h.published.isoformat() if h.published else None,
                    }
                )
    if errors and len(errors) == len(fc.cfg.news_feeds):
        raise SourceError("news", "; ".join(errors)[:500])
    return {"headlines": headlines, "errors": errors}


async def fetch_options(fc: FetchContext, http: SourceHttp) -> Payload:
    """Rows of the options-flow CSV for the latest day before ``as_of``."""
    if not fc.cfg.options_csv:
        raise SourceError("options", "no options_csv configured")
    text = await options.read_source(fc.cfg.options_csv, http)
    try:
        rows, dropped = options.parse_csv(text)
    except ValueError as exc:
        raise SourceError("options", str(exc)) from exc
    days = sorted({r.date for r in rows if r.date < fc.as_of})
    if not days:
        raise SourceError("options", f"no rows dated before {fc.as_of}")
    day = days[-1]
    keep = [dataclasses.asdict(r) | {"date": r.date.isoformat()} for r in rows if r.date == day]
    return {"day": day.isoformat(), "rows": keep, "dropped": dropped}


Fetcher = Callable[[FetchContext, SourceHttp], Awaitable[Payload]]


def fetchers(cfg: ContextConfig) -> dict[str, tuple[Fetcher, float, int, dict[str, str]]]:
    """Source name -> (fetcher, max requests per second, burst, extra headers)."""
    sec_headers = {"User-Agent": cfg.sec_user_agent, "Accept-Encoding": "gzip, deflate"}
    return {
        "congress": (fetch_congress, cfg.congress_max_rps, cfg.congress_burst, {}),
        "fred": (fetch_fred, cfg.fred_max_rps, cfg.fred_burst, {}),
        "sec": (fetch_sec, cfg.sec_max_rps, 1, sec_headers),
        "calendar": (fetch_calendar, cfg.fred_max_rps, cfg.fred_burst, {}),
        "news": (fetch_news, cfg.news_max_rps, cfg.news_burst, {}),
        "options": (fetch_options, cfg.news_max_rps, cfg.news_burst, {}),
    }


async def fetch_all(
    cfg: ContextConfig,
    as_of: dt.date,
    universe: Sequence[Member],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    since: dt.datetime | None = None,
    previous_sec: Payload | None = None,
    only: Sequence[str] = SOURCES,
) -> dict[str, FetchResult]:
    """Fetch every source in ``only`` concurrently; never raises for a source's failure."""
    retry = RetryPolicy(cfg.max_attempts, cfg.backoff_base_s, cfg.backoff_max_s)
    timeout = httpx.Timeout(cfg.http_timeout_s)
    limits = httpx.Limits(max_connections=4 * cfg.http_concurrency)
    async with httpx.AsyncClient(timeout=timeout, transport=transport, limits=limits) as client:
        fc = FetchContext(cfg, as_of, universe, client, retry, since, previous_sec)
        table = fetchers(cfg)
        # FRED series and the calendar share one key: share one limiter too
        fred_http = fc.http("fred", cfg.fred_max_rps, cfg.fred_burst)
        https = {
            name: fred_http if name in ("fred", "calendar") else fc.http(name, rps, burst, headers)
            for name, (_f, rps, burst, headers) in table.items()
        }

        async def run(name: str) -> FetchResult:
            fetcher = table[name][0]
            http = https[name]
            before = http.stats.requests
            try:
                payload = await fetcher(fc, http)
                error = ""
            except SourceError as exc:
                payload, error = None, str(exc)
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                payload, error = None, f"{name}: {type(exc).__name__}: {exc}"
            if error:
                log.warning("source %s failed: %s", name, error)
            stats = HttpStats(requests=http.stats.requests - before)
            return FetchResult(name, payload, error, time.time_ns(), stats)

        results = await asyncio.gather(*(run(n) for n in only))
        for r in results:
            r.stats = https[r.source].stats  # full per-limiter stats (fred and calendar share)
    return {r.source: r for r in results}
