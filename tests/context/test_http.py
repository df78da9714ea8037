"""Shared HTTP layer: retries, Retry-After, timeouts, malformed bodies, rate limit, redaction."""

from __future__ import annotations

import email.utils
import itertools
import random
import time

import httpx
import pytest

from relentless_fast.context.sources.http import (
    RateLimiter,
    RetryPolicy,
    SourceError,
    SourceHttp,
    parse_retry_after,
    redact,
)
from tests.context.replay import ReplayServer, Reply, json_reply

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02)


def _http(client: httpx.AsyncClient, rps: float = 1000.0, retry: RetryPolicy = FAST) -> SourceHttp:
    return SourceHttp("test", client, max_rps=rps, retry=retry, seed=1)


async def test_429_retry_after_is_honoured(server: ReplayServer) -> None:
    server.sequence(
        "/x",
        [Reply(429, "slow down", {"Retry-After": "0.3"}), json_reply('{"ok": true}')],
    )
    async with httpx.AsyncClient() as client:
        http = _http(client)
        t0 = time.monotonic()
        body = await http.get_json(server.url + "/x")
        waited = time.monotonic() - t0
    assert body == {"ok": True}
    hits = server.hits("/x")
    assert len(hits) == 2 and http.stats.retries == 1
    assert waited >= 0.3  # a lower bound only: sleeping never ends early
    assert hits[1].at - hits[0].at >= 0.3


async def test_5xx_retried_then_fails_with_status(server: ReplayServer) -> None:
    server.route("/x", Reply(503, "unavailable"))
    async with httpx.AsyncClient() as client:
        http = _http(client)
        with pytest.raises(SourceError) as err:
            await http.get(server.url + "/x")
    assert err.value.status == 503 and "HTTP 503" in str(err.value)
    assert len(server.hits("/x")) == FAST.max_attempts
    assert http.stats.failures == 1


async def test_4xx_not_retried(server: ReplayServer) -> None:
    server.route("/x", json_reply('{"error_code":400,"error_message":"Bad Request."}', 400))
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError, match="Bad Request"):
            await _http(client).get(server.url + "/x")
    assert len(server.hits("/x")) == 1


async def test_timeout_is_retried(server: ReplayServer) -> None:
    server.sequence("/x", [Reply(200, "late", delay_s=0.5), Reply(200, "on time")])
    async with httpx.AsyncClient(timeout=0.15) as client:
        resp = await _http(client).get(server.url + "/x")
    assert resp.text == "on time"
    assert len(server.hits("/x")) == 2


async def test_timeouts_exhaust_attempts(server: ReplayServer) -> None:
    server.route("/x", Reply(200, "late", delay_s=0.4))
    async with httpx.AsyncClient(timeout=0.1) as client:
        with pytest.raises(SourceError, match="Timeout"):
            await _http(client).get(server.url + "/x")


async def test_malformed_json(server: ReplayServer) -> None:
    server.route("/x", json_reply('{"observations": [1, 2'))
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError, match="malformed JSON"):
            await _http(client).get_json(server.url + "/x")


async def test_connection_refused_is_a_source_error() -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        with pytest.raises(SourceError, match="ConnectError"):
            await _http(client).get("http://127.0.0.1:9/none")


async def test_rate_limit_spaces_requests(server: ReplayServer) -> None:
    server.route("/x", Reply(200, "ok"))
    rps = 40.0
    async with httpx.AsyncClient() as client:
        http = _http(client, rps=rps)
        import asyncio

        await asyncio.gather(*(http.get(server.url + "/x") for _ in range(12)))
    starts = sorted(http.stats.start_times)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 12
    assert min(gaps) >= 1.0 / rps - 1e-3  # a lower bound: the limiter sleeps until each slot


def test_rate_limiter_rejects_nonpositive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    got = parse_retry_after(future)
    assert got is not None and 25 <= got <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_backoff_bounds() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base_s=1.0, backoff_max_s=4.0)
    rng = random.Random(0)
    for attempt in range(1, 6):
        cap = min(4.0, 2 ** (attempt - 1))
        assert all(0 <= policy.delay_s(attempt, None, rng) <= cap for _ in range(50))
    assert policy.delay_s(1, 10.0, rng) >= 10.0
    assert policy.delay_s(1, 1e6, rng) == policy.retry_after_max_s


def test_redaction_hides_keys() -> None:
    text = "GET http://h/fred?series_id=DFF&api_key=secret123&file_type=json"
    assert "secret123" not in redact(text)
    assert "api_key=***" in redact(text) and "series_id=DFF" in redact(text)


async def test_errors_never_carry_the_key(server: ReplayServer) -> None:
    server.route("/x", Reply(500, "oops"))
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceError) as err:
            await _http(client).get(server.url + "/x", {"api_key": "supersecretvalue"})
    assert "supersecretvalue" not in str(err.value)


async def test_token_bucket_burst_then_rate() -> None:
    limiter = RateLimiter(20.0, burst=5)
    starts = [await limiter.acquire() for _ in range(9)]
    # five at once, then one per 50 ms: any k+1 starts span at least (k + 1 - 5) intervals
    assert starts[4] - starts[0] < 0.05
    for i, j in itertools.combinations(range(len(starts)), 2):
        assert starts[j] - starts[i] >= (j - i + 1 - 5) * 0.05 - 1e-6
    assert starts[8] - starts[0] >= 4 * 0.05 - 1e-6
    with pytest.raises(ValueError):
        RateLimiter(1.0, burst=0)
