"""Reader library for engines: the latest published context, waiting for a newer one, staleness.

Engines never open the loader's DuckDB file. They read Redis (``{prefix}:current``) when a
``redis://`` URL is given, else the atomic snapshot file. :meth:`ContextStore.wait_newer` returns
the first context whose version is above the one the caller has:

- with Redis it subscribes to ``{prefix}:updates`` and re-reads ``current`` after every
  (re)subscribe, since a message published while disconnected is lost; a dropped connection (a
  Redis restart) is retried with backoff, and ``current`` is also re-read every
  ``resync_interval_s`` as a safety net;
- without Redis it watches the snapshot file (``stat`` polling: inode, size, mtime).

Staleness is counted in trading days of an exchange calendar: ``trading_days_behind(as_of, today)``
is the number of sessions after ``as_of`` up to and including ``today``; a context is fresh when
that is at most ``max_trading_days`` (default 1), so Monday's use of Friday's context is fresh and
so is Tuesday's after a Monday holiday.

A context built with another embedding layout than this package's raises
:class:`ContextVersionError`: the engine must not feed a model a layout it was not trained on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relentless_fast._proto.relentless_fast_pb2 import DailyContext
from relentless_fast.context import embedding, sessions
from relentless_fast.context.publish import channel, read_snapshot

log = logging.getLogger(__name__)


class ContextVersionError(RuntimeError):
    """The published context uses an embedding layout this package does not speak."""


@dataclass(frozen=True)
class LoadedContext:
    """A published context with its embedding (v1 layout)."""

    context: DailyContext
    version: int
    as_of: dt.date
    global_part: embedding.Float32Array  # float32[GLOBAL_DIM]
    symbols: embedding.Float32Array  # float32[S, SYMBOL_DIM], rows by the context's symbol ids

    @classmethod
    def from_context(cls, ctx: DailyContext) -> LoadedContext:
        """Check the embedding version and encode."""
        if ctx.embedding_version != embedding.CONTEXT_EMBEDDING_VERSION:
            raise ContextVersionError(
                f"context v{ctx.version} uses embedding v{ctx.embedding_version}, "
                f"this build speaks v{embedding.CONTEXT_EMBEDDING_VERSION}"
            )
        n = max((s.symbol_id for s in ctx.symbols), default=-1) + 1
        return cls(
            context=ctx,
            version=int(ctx.version),
            as_of=dt.date.fromisoformat(ctx.as_of_date),
            global_part=embedding.build_global(ctx),
            symbols=embedding.build_symbols(ctx, n),
        )

    def symbols_for(self, symbol_ids: Mapping[str, int]) -> embedding.Float32Array:
        """Per-symbol rows following the engine's own table (symbol -> id)."""
        return embedding.build_symbols_by_name(self.context, symbol_ids)

    def trading_days_behind(self, today: dt.date, calendar: str = sessions.DEFAULT_CALENDAR) -> int:
        """Sessions after the as-of date up to and including ``today``."""
        return trading_days_behind(self.as_of, today, calendar)

    def is_fresh(self, today: dt.date, max_trading_days: int = 1) -> bool:
        """Whether the context may be used on ``today`` (see the module docstring)."""
        return self.trading_days_behind(today) <= max_trading_days


def trading_days_behind(
    as_of: dt.date, today: dt.date, calendar: str = sessions.DEFAULT_CALENDAR
) -> int:
    """Number of sessions ``s`` with ``as_of < s <= today``."""
    return sessions.sessions_after(as_of, today, calendar)


class ContextStore:
    """Where engines get the published context from."""

    def __init__(
        self,
        *,
        snapshot_path: str | Path | None = None,
        redis_url: str = "",
        prefix: str = "rf:context",
        poll_interval_s: float = 0.2,
        resync_interval_s: float = 30.0,
        reconnect_max_s: float = 5.0,
    ) -> None:
        if not snapshot_path and not redis_url:
            raise ValueError("ContextStore needs a snapshot path or a redis:// URL")
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        self.redis_url = redis_url
        self.prefix = prefix
        self.poll_interval_s = poll_interval_s
        self.resync_interval_s = resync_interval_s
        self.reconnect_max_s = reconnect_max_s
        self.reconnects = 0

    # -- latest ---------------------------------------------------------------------------
    def latest(self) -> LoadedContext | None:
        """The newest published context (Redis first when configured, then the snapshot)."""
        ctx: DailyContext | None = None
        if self.redis_url:
            try:
                ctx = self._read_redis_sync()
            except Exception as exc:  # redis errors of every kind: fall back to the file
                log.warning("context: Redis read failed (%s), trying the snapshot", exc)
        if ctx is None and self.snapshot_path is not None:
            ctx = read_snapshot(self.snapshot_path)
        return LoadedContext.from_context(ctx) if ctx is not None else None

    def _read_redis_sync(self) -> DailyContext | None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            blob = client.get(f"{self.prefix}:current")
        finally:
            client.close()
        return _decode(blob)

    # -- waiting --------------------------------------------------------------------------
    async def wait_newer(self, after_version: int, timeout_s: float | None = None) -> LoadedContext:
        """The first published context with ``version > after_version``.

        Raises ``TimeoutError`` when ``timeout_s`` passes first.
        """
        coro = self._wait_redis(after_version) if self.redis_url else self._wait_file(after_version)
        return await asyncio.wait_for(coro, timeout_s)

    async def updates(self, after_version: int = 0) -> AsyncIterator[LoadedContext]:
        """Every newer context as it is published (each version at most once, increasing)."""
        version = after_version
        while True:
            loaded = await self.wait_newer(version)
            version = loaded.version
            yield loaded

    async def _wait_file(self, after_version: int) -> LoadedContext:
        assert self.snapshot_path is not None
        last_sig: tuple[int, int, int] | None = None
        while True:
            try:
                st = os.stat(self.snapshot_path)
                sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                sig = None
            if sig is not None and sig != last_sig:
                last_sig = sig
                ctx = read_snapshot(self.snapshot_path)
                if ctx is not None and ctx.version > after_version:
                    return LoadedContext.from_context(ctx)
            await asyncio.sleep(self.poll_interval_s)

    async def _wait_redis(self, after_version: int) -> LoadedContext:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        backoff = 0.05
        while True:
            client: Any = aioredis.Redis.from_url(self.redis_url, socket_timeout=5)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(channel(self.prefix))
                backoff = 0.05
                # re-read after every (re)subscribe: a message sent while away is lost
                found = await self._read_newer(client, after_version)
                if found is not None:
                    return found
                last_sync = time.monotonic()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    due = time.monotonic() - last_sync >= self.resync_interval_s
                    if msg is None and not due:
                        continue
                    last_sync = time.monotonic()
                    found = await self._read_newer(client, after_version)
                    if found is not None:
                        return found
            except (RedisError, OSError) as exc:
                self.reconnects += 1
                log.info("context: Redis connection lost (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(self.reconnect_max_s, backoff * 2)
            finally:
                await _close_quietly(pubsub, client)

    async def _read_newer(self, client: Any, after_version: int) -> LoadedContext | None:
        ctx = _decode(await client.get(f"{self.prefix}:current"))
        if ctx is not None and ctx.version > after_version:
            return LoadedContext.from_context(ctx)
        return None


async def _close_quietly(pubsub: Any, client: Any) -> None:
    for closer in (pubsub.aclose, client.aclose):
        try:
            await closer()
        except Exception:  # closing a dead connection may fail in several ways; nothing to do
            log.debug("context: close failed", exc_info=True)


def _decode(blob: Any) -> DailyContext | None:
    if not blob:
        return None
    ctx = DailyContext()
    ctx.ParseFromString(bytes(blob))
    return ctx
