"""Async httpx clients of the daily sources: FRED, Congress.gov, SEC EDGAR, news, options CSV.

All share :mod:`relentless_fast.context.sources.http`: per-source rate limit, timeouts, retries with
exponential backoff and jitter on 429/5xx honouring ``Retry-After``, keys never logged.
"""
