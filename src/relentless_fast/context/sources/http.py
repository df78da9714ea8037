"""The HTTP layer every daily source shares: rate limit, timeouts, retries, secret redaction.

One :class:`SourceHttp` per source wraps an ``httpx.AsyncClient``. Requests are spaced by a
per-source minimum interval (``max_rps``) and retried on transport errors, timeouts, 429 and 5xx
with exponential backoff plus full jitter; a ``Retry-After`` header (seconds or HTTP date) is
honoured when it asks for a longer wait. API keys are passed as query parameters or headers by the
caller and never logged: URLs in errors and logs go through :func:`redact`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SECRET_PARAM = re.compile(r"(?i)(api_key|apikey|key|token)=([^&\s]+)")


def redact(text: str) -> str:
    """``text`` with the values of key-like query parameters replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1=***", text)


class _RedactFilter(logging.Filter):
    """Rewrites log records of the HTTP client so a key in a URL never reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# httpx logs every request line (with its query) at INFO: redact it at the source
logging.getLogger("httpx").addFilter(_RedactFilter())


class SourceError(Exception):
    """A request of a daily source failed for good (after retries, or not retryable)."""

    def __init__(self, source: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{source}: {redact(message)}")
        self.source = source
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter, honouring ``Retry-After``."""

    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Wait before retry number ``attempt`` (1-based)."""
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        wait = rng.uniform(0.0, cap)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.retry_after_max_s))
        return wait


class RateLimiter:
    """Token bucket: at most ``burst`` requests at once, refilled at ``max_rps`` per second.

    With ``burst == 1`` request starts are at least ``1 / max_rps`` apart, counted from the actual
    start of the previous one, so a late wake-up never lets two requests start closer than that
    (EDGAR: never more than ``max_rps`` in any second). A larger burst suits hourly or per-minute
    quotas (Congress.gov 5,000/hour, FRED 120/minute): a daily load's short burst stays far inside
    them while the sustained rate is ``max_rps``.
    """

    def __init__(self, max_rps: float, burst: int = 1) -> None:
        if max_rps <= 0 or burst < 1:
            raise ValueError(f"need max_rps > 0 and burst >= 1, got {max_rps}, {burst}")
        self.interval_s = 1.0 / max_rps
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> float:
        """Wait for this request's token; returns its start time (``time.monotonic``)."""
        async with self._lock:
            self._refill()
            if self._tokens < 1.0:
                await asyncio.sleep((1.0 - self._tokens) * self.interval_s)
                self._refill()
                if self._tokens < 1.0:  # pragma: no cover - sleep never ends early
                    await asyncio.sleep((1.0 - self._tokens) * self.interval_s)
                    self._refill()
            self._tokens -= 1.0
            return self._stamp

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) / self.interval_s)
        self._stamp = now


@dataclass
class HttpStats:
    """Counters of one source's HTTP traffic (for logs, freshness reasons and the benchmark)."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    start_times: list[float] = field(default_factory=list)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class SourceHttp:
    """Rate-limited, retrying GET for one source."""

    def __init__(
        self,
        source: str,
        client: httpx.AsyncClient,
        *,
        max_rps: float,
        burst: int = 1,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.limiter = RateLimiter(max_rps, burst)
        self.retry = retry or RetryPolicy()
        self.headers = dict(headers or {})
        self.stats = HttpStats()
        self._rng = random.Random(seed)

    async def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        ok_statuses: frozenset[int] = frozenset({200}),
    ) -> httpx.Response:
        """GET ``url``; retry what is retryable; raise :class:`SourceError` on a final failure.

        Responses whose status is in ``ok_statuses`` are returned; others raise.
        """
        merged = {**self.headers, **(headers or {})}
        last: str = ""
        status: int | None = None
        for attempt in range(1, self.retry.max_attempts + 1):
            started = await self.limiter.acquire()
            self.stats.requests += 1
            self.stats.start_times.append(started)
            retry_after: float | None = None
            try:
                resp = await self.client.get(url, params=params, headers=merged)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last, status = f"{type(exc).__name__} on {redact(url)}", None
            else:
                if resp.status_code in ok_statuses:
                    return resp
                status = resp.status_code
                last = f"HTTP {status} on {redact(str(resp.request.url))}: {_snippet(resp)}"
                if status not in RETRY_STATUSES:
                    break
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if attempt < self.retry.max_attempts:
                self.stats.retries += 1
                wait = self.retry.delay_s(attempt, retry_after, self._rng)
                log.info("%s: retry %d in %.2fs after %s", self.source, attempt, wait, last)
                await asyncio.sleep(wait)
        self.stats.failures += 1
        raise SourceError(self.source, last, status)

    async def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET and decode JSON; a malformed body is a :class:`SourceError`."""
        resp = await self.get(url, params)
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceError(self.source, f"malformed JSON from {redact(url)}: {exc}") from exc


def _snippet(resp: httpx.Response, limit: int = 200) -> str:
    try:
        text = resp.text
    except UnicodeDecodeError:  # pragma: no cover - binary error body
        return f"<{len(resp.content)} bytes>"
    return redact(" ".join(text.split())[:limit])
