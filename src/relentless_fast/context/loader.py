"""One pre-market load: fetch every source, build, store in DuckDB, publish snapshot and Redis.

A source that fails in this run falls back to its latest stored payload (marked stale, with its age
and the failure as the reason); a source with nothing stored stays neutral. The load fails (exit
code 1) only when no source gave anything. Backfilled (older) dates are stored and sent to Redis
under their date but never replace the current snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from relentless_fast._proto.relentless_fast_pb2 import DailyContext
from relentless_fast.context import builder, embedding, publish
from relentless_fast.context.config import ContextConfig
from relentless_fast.context.fetch import FetchResult, fetch_all
from relentless_fast.context.storage import ContextDB, SourceRun
from relentless_fast.context.universe import Member, load_universe

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    """What a load did."""

    as_of: dt.date
    context: DailyContext | None
    results: dict[str, FetchResult]
    published: bool

    @property
    def ok(self) -> bool:
        """A usable context was built and stored."""
        return self.context is not None

    @property
    def requests(self) -> int:
        """HTTP requests issued (fred and calendar share one counter)."""
        seen: set[int] = set()
        total = 0
        for r in self.results.values():
            if id(r.stats) not in seen:
                seen.add(id(r.stats))
                total += r.stats.requests
        return total


def symbol_ids_for(cfg: ContextConfig, members: list[Member]) -> dict[str, int]:
    """Symbol -> id: from the configured symbol table, else the universe order."""
    if cfg.symbol_table_path:
        from relentless_fast.symbols import SymbolTable

        table = SymbolTable.from_file(cfg.symbol_table_path)
        return {m.ticker: sid for m in members if (sid := table.get(m.ticker)) is not None}
    return {m.ticker: i for i, m in enumerate(members)}


def _inputs(
    db: ContextDB, as_of: dt.date, results: Mapping[str, FetchResult]
) -> dict[str, builder.SourceInput]:
    same_day = db.inputs_for(as_of)
    out: dict[str, builder.SourceInput] = {}
    for source in embedding.SOURCES:
        r = results.get(source)
        if r is not None and r.payload is not None:
            out[source] = builder.SourceInput(r.payload, r.fetched_unix_ns, True, "")
            continue
        why = r.error if r is not None else "not fetched"
        stored = same_day.get(source) or db.latest_input_before(source, as_of)
        if stored is not None:
            reason = f"{why}; using data stored for {stored.as_of}"
            out[source] = builder.SourceInput(stored.payload, stored.fetched_unix_ns, False, reason)
        else:
            out[source] = builder.SourceInput(None, 0, False, why)
    return out


def _congress_since(db: ContextDB, as_of: dt.date) -> dt.datetime | None:
    stored = db.latest_input_before("congress", as_of)
    if stored is None:
        return None
    try:
        return dt.datetime.fromisoformat(str(stored.payload.get("to")))
    except ValueError:
        return None


async def load_once(
    cfg: ContextConfig,
    as_of: dt.date,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> LoadResult:
    """Fetch, build, store and publish the context for ``as_of``."""
    members = load_universe(cfg.universe_path or None)
    ids = symbol_ids_for(cfg, members)
    with ContextDB(cfg.db_path) as db:
        since = _congress_since(db, as_of)
        prev_sec = db.inputs_for(as_of).get("sec") or db.latest_input_before("sec", as_of)
    # the database is not held open while the sources are fetched (``context show`` may run)
    results = await fetch_all(
        cfg,
        as_of,
        members,
        transport=transport,
        since=since,
        previous_sec=prev_sec.payload if prev_sec else None,
    )
    with ContextDB(cfg.db_path) as db:
        inputs = _inputs(db, as_of, results)
        version = db.next_version()
        ctx = builder.build_context(
            as_of, inputs, members, ids, cfg, version=version, built_unix_ns=time.time_ns()
        )
        if not builder.usable(ctx):
            log.error("context %s: no source gave anything; nothing stored", as_of)
            return LoadResult(as_of, None, results, False)
        current = db.latest_context()
        make_current = current is None or current.as_of_date <= ctx.as_of_date
        fresh = {
            s: (r.fetched_unix_ns, r.payload) for s, r in results.items() if r.payload is not None
        }
        runs = [
            SourceRun(s, r.payload is not None, r.error, r.stats.requests)
            for s, r in results.items()
        ]
        db.save_build(as_of, fresh, ctx, runs)
    publish_context(cfg, ctx, make_current=make_current)
    _log_summary(ctx, results)
    return LoadResult(as_of, ctx, results, make_current)


def publish_context(cfg: ContextConfig, ctx: DailyContext, *, make_current: bool) -> None:
    """Snapshot (when current) and Redis (when configured)."""
    if make_current:
        publish.write_snapshot(cfg.snapshot_path, ctx)
    if cfg.redis_url:
        try:
            publish.publish_redis(cfg.redis_url, cfg.redis_prefix, ctx, make_current=make_current)
        except Exception as exc:  # Redis down must not lose the stored context
            log.error("context v%d: Redis publish failed: %s", ctx.version, exc)


def rebuild(cfg: ContextConfig, as_of: dt.date) -> DailyContext | None:
    """Rebuild ``as_of``'s context from the payloads stored for it (no network, nothing written).

    Uses the same version and build time as the stored context so the result compares equal.
    """
    members = load_universe(cfg.universe_path or None)
    ids = symbol_ids_for(cfg, members)
    with ContextDB(cfg.db_path) as db:
        stored_ctx = db.context_for(as_of)
        if stored_ctx is None:
            return None
        same_day = db.inputs_for(as_of)
        inputs: dict[str, builder.SourceInput] = {}
        for entry in stored_ctx.sources:
            stored = same_day.get(entry.source) if entry.fresh else None
            if stored is None and entry.as_of_unix_ns:
                stored = _input_fetched_at(db, entry.source, as_of, entry.as_of_unix_ns)
            payload = stored.payload if stored else None
            inputs[entry.source] = builder.SourceInput(
                payload, entry.as_of_unix_ns, entry.fresh, entry.reason
            )
    return builder.build_context(
        as_of,
        inputs,
        members,
        ids,
        cfg,
        version=stored_ctx.version,
        built_unix_ns=stored_ctx.built_unix_ns,
    )


def _input_fetched_at(db: ContextDB, source: str, as_of: dt.date, fetched_ns: int) -> Any:
    row = db.con.execute(
        "SELECT as_of, source, fetched_unix_ns, payload FROM raw_inputs "
        "WHERE source = ? AND fetched_unix_ns = ? AND as_of <= ?",
        [source, fetched_ns, as_of],
    ).fetchone()
    if row is None:
        return None
    import json

    from relentless_fast.context.storage import StoredInput

    return StoredInput(row[0], row[1], int(row[2]), json.loads(row[3]))


def _log_summary(ctx: DailyContext, results: Mapping[str, FetchResult]) -> None:
    parts = []
    for s in ctx.sources:
        state = "fresh" if s.fresh else ("stale" if s.as_of_unix_ns else "missing")
        parts.append(f"{s.source}={state}")
    log.info("context %s v%d built (%s)", ctx.as_of_date, ctx.version, ", ".join(parts))
    for r in results.values():
        if r.error:
            log.warning("  %s: %s", r.source, r.error)


def freshness_rows(ctx: DailyContext) -> list[dict[str, Any]]:
    """Per-source freshness as plain dicts (for ``context show``)."""
    return [
        {
            "source": s.source,
            "fresh": s.fresh,
            "age_secs": round(s.age_secs, 1),
            "reason": s.reason,
        }
        for s in ctx.sources
    ]
